"""k-means, prototypes per class and GLVQ: hand-built cases, invariants, and scikit-learn as a reference."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from fmproto.evaluation.scores import accuracy
from fmproto.prototypes.kmeans import fit_class_prototypes, kmeans, kmeans_per_class, n_prototypes_per_class
from fmproto.prototypes.lvq import glvq
from fmproto.prototypes.centroids import nearest_prototype

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# Three tight, far-apart blobs of 40 points each around these centres.
BLOB_CENTRES = np.array([[0, 0], [50, 0], [0, 50]], dtype=np.float32)
_rng = np.random.default_rng(0)
BLOB_Y = np.repeat(np.arange(3), 40)
BLOBS = (BLOB_CENTRES[BLOB_Y] + _rng.normal(0, 1, size=(120, 2))).astype(np.float32)
# Uniform noise: no cluster structure, so Lloyd takes many small steps.
NOISE = np.random.default_rng(1).random((1500, 6), dtype=np.float32)


def test_recovers_well_separated_blobs():
    result = kmeans(BLOBS, 3, seed=0)
    # The partition matches the blobs up to renaming: each blob lands in one cluster of its own.
    mapping = {int(b): int(result.assignments[BLOB_Y == b][0]) for b in range(3)}
    assert sorted(mapping.values()) == [0, 1, 2]
    np.testing.assert_array_equal(result.assignments, [mapping[b] for b in BLOB_Y])
    order = [mapping[b] for b in range(3)]
    np.testing.assert_allclose(result.centers[order], BLOB_CENTRES, atol=0.5)
    assert result.centers.dtype == np.float32 and result.assignments.dtype == np.int64


def test_inertia_never_increases_and_is_consistent():
    result = kmeans(NOISE, 12, seed=0, max_iter=300, tol=0)
    assert result.n_iter == len(result.history) > 10
    assert np.all(np.diff(result.history) <= 0)
    assert result.inertia == pytest.approx(result.history[-1] * len(NOISE))
    # Each row sits with its nearest centre, and the inertia is the sum of those squared distances.
    d2 = ((NOISE[:, None, :].astype(np.float64) - result.centers[None].astype(np.float64)) ** 2).sum(axis=2)
    np.testing.assert_allclose(d2[np.arange(len(NOISE)), result.assignments], d2.min(axis=1), rtol=1e-5, atol=1e-6)
    assert result.inertia == pytest.approx(d2.min(axis=1).sum(), rel=1e-5)


def test_stops_at_fixed_point_with_centres_at_means():
    result = kmeans(NOISE, 5, seed=3, max_iter=500, tol=0)
    assert result.n_iter < 500  # stopped because the assignments stopped changing
    for j in range(5):
        np.testing.assert_allclose(result.centers[j], NOISE[result.assignments == j].mean(axis=0), atol=1e-6)


def test_same_seed_same_result_other_seed_differs():
    a, b = kmeans(NOISE, 8, seed=7), kmeans(NOISE, 8, seed=7)
    np.testing.assert_array_equal(a.centers, b.centers)
    np.testing.assert_array_equal(a.assignments, b.assignments)
    np.testing.assert_array_equal(a.history, b.history)
    assert a.inertia == b.inertia
    assert not np.array_equal(a.centers, kmeans(NOISE, 8, seed=8).centers)


def test_tol_stops_earlier():
    loose, tight = kmeans(NOISE, 12, seed=0, tol=1e-2), kmeans(NOISE, 12, seed=0, tol=0, max_iter=300)
    assert loose.n_iter < tight.n_iter
    np.testing.assert_array_equal(loose.history, tight.history[: loose.n_iter])  # same path, cut short


def test_empty_cluster_reseeded_with_furthest_point():
    X = np.array([[0, 0], [1, 0], [0, 2], [10, 10], [11, 10]], dtype=np.float32)
    init = np.array([[0, 0], [10, 10], [100, 100]], dtype=np.float32)  # nothing is nearest (100, 100)
    # First assignment: [0, 0, 0, 1, 1], squared distances to own centre [0, 1, 4, 0, 1]. Cluster 2 is
    # empty and takes the furthest row, (0, 2); the others move to their means.
    step = kmeans(X, 3, seed=0, init=init, max_iter=2)
    np.testing.assert_allclose(step.centers, [[1 / 3, 2 / 3], [10.5, 10], [0, 2]], rtol=1e-6, atol=1e-6)
    assert step.assignments.tolist() == [0, 0, 2, 1, 1]
    np.testing.assert_allclose(step.history * 5, [6, 8 / 9 + 5 / 9 + 0.5], rtol=1e-5)
    final = kmeans(X, 3, seed=0, init=init)
    assert np.bincount(final.assignments, minlength=3).min() >= 1


def test_several_empty_clusters_take_distinct_rows():
    X = np.array([[0, 0], [3, 0], [0, 1], [0, 2]], dtype=np.float32)
    init = np.array([[0, 0], [50, 50], [60, 60]], dtype=np.float32)
    # All rows go to (0, 0), squared distances [0, 9, 1, 4]: the two empty clusters take rows 1 and 3.
    step = kmeans(X, 3, seed=0, init=init, max_iter=2)
    np.testing.assert_allclose(step.centers[1:], [[3, 0], [0, 2]], atol=1e-6)
    assert step.assignments.tolist() == [0, 1, 0, 2]


def test_duplicate_rows_fewer_distinct_than_clusters():
    X = np.repeat(np.array([[0, 0], [5, 5]], dtype=np.float32), 10, axis=0)
    result = kmeans(X, 3, seed=0)
    assert result.inertia == 0
    assert np.isfinite(result.centers).all()


def test_kmeans_validation():
    with pytest.raises(ValueError, match=r"n_clusters must be in 1\.\.120"):
        kmeans(BLOBS, 121, seed=0)
    with pytest.raises(ValueError, match="n_clusters must be in"):
        kmeans(BLOBS, 0, seed=0)
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1; got 0"):
        kmeans(BLOBS, 2, seed=0, max_iter=0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        kmeans(BLOBS, 2, seed=0, tol=-1)
    with pytest.raises(ValueError, match=r"init must have shape \(3, 2\)"):
        kmeans(BLOBS, 3, seed=0, init=np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tol": np.inf}, r"tol must be >= 0 and finite; got inf"),
        ({"tol": np.nan}, r"tol must be >= 0 and finite; got nan"),
        ({"tol": "0.1"}, r"tol must be >= 0 and finite; got '0\.1'"),
        ({"tol": True}, r"tol must be >= 0 and finite; got True"),
        ({"max_iter": 2.5}, r"max_iter must be an integer >= 1; got 2\.5"),
        ({"max_iter": True}, r"max_iter must be an integer >= 1; got True"),
        ({"n_clusters": 2.5}, r"n_clusters must be in 1\.\.120 \(the number of rows\); got 2\.5"),
        ({"X": np.where(np.arange(240).reshape(120, 2) == 7, np.nan, BLOBS)}, r"X must be finite; it holds NaN or inf"),
        ({"n_clusters": 3, "init": np.full((3, 2), np.inf)}, r"init must be finite"),
    ],
)
def test_kmeans_rejects_bad_arguments(kwargs, match):
    args = {"X": BLOBS, "n_clusters": 2, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        kmeans(args.pop("X"), args.pop("n_clusters"), **args)


def test_kmeans_accepts_numpy_scalars():
    result = kmeans(BLOBS, np.int64(3), seed=0, max_iter=np.int32(5), tol=np.float32(0.0))
    assert result.n_iter <= 5


def _near_tie_centres(seed=0, n_features=784):
    """Integer images, and 12 starting centres in 6 pairs equal but for one pixel ``p``.

    Each image copies a pair's base (plus noise) with pixel ``p`` at ``v``; the pair's pixels are
    ``v - 0.5, v + 0.504`` (the lower index nearer by 0.004) or ``v - 0.504, v + 0.5`` (the higher
    one nearer), out of squared distances near 4,000 and centred ``|x|^2`` near 3e6: far below the
    resolution of a float32 product, easy for float64.
    """
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 236, size=(6, n_features))
    pixel, value = rng.integers(n_features, size=6), rng.integers(30, 220, size=6)
    centres = np.repeat(base, 2, axis=0).astype(np.float64)
    for k in range(6):
        low, high = (-0.5, 0.504) if k % 2 == 0 else (-0.504, 0.5)
        centres[2 * k, pixel[k]], centres[2 * k + 1, pixel[k]] = value[k] + low, value[k] + high
    pair = np.repeat(np.arange(6), 10)
    X = base[pair] + rng.integers(-3, 4, size=(len(pair), n_features))
    X[np.arange(len(pair)), pixel[pair]] = value[pair]
    return X.astype(np.float32), centres.astype(np.float32)


def test_assignment_step_matches_float64_brute_force_at_near_ties():
    X, centres = _near_tie_centres()
    result = kmeans(X, 12, seed=0, init=centres, max_iter=1)
    # kmeans measures in coordinates shifted by the float32 mean; so does the reference.
    offset = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    Xc, Cc = (X - offset).astype(np.float64), (centres - offset).astype(np.float64)
    d2 = ((Xc[:, None, :] - Cc[None, :, :]) ** 2).sum(axis=2)
    expected = d2.argmin(axis=1)
    assert set(expected % 2) == {0, 1}  # both members of a pair win somewhere
    np.testing.assert_array_equal(result.assignments, expected)
    assert result.inertia == pytest.approx(d2.min(axis=1).sum(), rel=1e-13)
    np.testing.assert_array_equal(result.history, [result.inertia / len(X)])


@pytest.mark.slow
def test_inertia_close_to_sklearn(fashion_train):
    images, labels = fashion_train
    X = images[labels == 5][:1500].reshape(1500, -1).astype(np.float32)  # sandals: varied shapes
    ours = np.mean([kmeans(X, 10, seed=s).inertia for s in range(3)])
    reference = KMeans(n_clusters=10, n_init=3, random_state=0).fit(X).inertia_  # best of 3
    assert ours <= 1.03 * reference


# --- prototypes per class ----------------------------------------------------------------------------


def test_kmeans_per_class_layout_and_labels():
    X = np.concatenate([BLOBS, BLOBS + 200])
    y = np.concatenate([np.zeros(120, np.int64), np.ones(120, np.int64)])
    prototypes, prototype_labels, results = kmeans_per_class(X, y, np.array([3, 2]), seed=0)
    assert prototypes.shape == (5, 2) and prototypes.dtype == np.float32
    assert prototype_labels.tolist() == [0, 0, 0, 1, 1]
    assert [len(r.centers) for r in results] == [3, 2]
    np.testing.assert_array_equal(prototypes[:3], results[0].centers)
    assert (prototypes[3:] > 150).all()  # class 1's prototypes came from class 1's rows


def test_kmeans_per_class_seeds_are_per_class():
    X = np.concatenate([NOISE[:500], NOISE[500:1000] + 2])
    y = np.repeat([0, 1], 500)
    a, _, _ = kmeans_per_class(X, y, np.array([4, 3]), seed=5)
    b, _, _ = kmeans_per_class(X, y, np.array([4, 6]), seed=5)  # only class 1's count changed
    c, _, _ = kmeans_per_class(X, y, np.array([4, 3]), seed=6)
    np.testing.assert_array_equal(a[:4], b[:4])
    np.testing.assert_array_equal(a, kmeans_per_class(X, y, np.array([4, 3]), seed=5)[0])
    assert not np.array_equal(a, c)


def test_kmeans_per_class_too_many_prototypes():
    y = np.array([0, 0, 0, 1, 1])
    X = np.arange(10, dtype=np.float32).reshape(5, 2)
    with pytest.raises(ValueError, match=r"class 1 needs 1\.\.2 prototypes \(it has 2 images\); got 3"):
        kmeans_per_class(X, y, np.array([1, 3]), seed=0)
    with pytest.raises(ValueError, match=r"y must lie in 0\.\.0"):
        kmeans_per_class(X, y, np.array([1]), seed=0)


def test_n_prototypes_per_class_int_and_mapping():
    assert n_prototypes_per_class(4, CLASSES).tolist() == [4] * 10
    assert n_prototypes_per_class({"Sandal": 3}, CLASSES).tolist() == [1, 1, 1, 1, 1, 3, 1, 1, 1, 1]
    counts = n_prototypes_per_class({"Shirt": 20, "Bag": 2}, CLASSES, default=5)
    assert counts.tolist() == [5, 5, 5, 5, 5, 5, 20, 5, 2, 5] and counts.dtype == np.int64
    assert n_prototypes_per_class(np.int64(2), CLASSES).tolist() == [2] * 10


@pytest.mark.parametrize(
    ("spec", "default", "match"),
    [
        ({"Sandle": 3}, 1,
         r"unknown class name 'Sandle' in n_prototypes; allowed: 'T-shirt/top', 'Trouser', .*'Ankle boot'"),
        (0, 1, r"n_prototypes must be an int >= 1; got 0"),
        ({"Sandal": 0}, 1, r"n_prototypes\['Sandal'\] must be an int >= 1; got 0"),
        ({"Sandal": 2.5}, 1, r"n_prototypes\['Sandal'\] must be an int >= 1; got 2\.5"),
        (True, 1, r"n_prototypes must be an int or a mapping"),
        ("10", 1, r"n_prototypes must be an int or a mapping"),
        (3.0, 1, r"n_prototypes must be an int or a mapping"),
        (3, 0, r"default must be an int >= 1; got 0"),
    ],
)
def test_n_prototypes_per_class_errors(spec, default, match):
    with pytest.raises(ValueError, match=match):
        n_prototypes_per_class(spec, CLASSES, default=default)


def test_n_prototypes_per_class_against_the_images_of_each_class():
    sizes = np.array([23, 40, 40, 40, 40, 3, 40, 40, 40, 40])
    assert n_prototypes_per_class({"Sandal": 3}, CLASSES, sizes=sizes).tolist() == [1] * 5 + [3] + [1] * 4
    assert n_prototypes_per_class(23, CLASSES, sizes=np.maximum(sizes, 23)).tolist() == [23] * 10
    with pytest.raises(ValueError, match=r"^class 'T-shirt/top' needs 1\.\.23 prototypes \(it has 23 training "
                                         r"images\); got 50$"):
        n_prototypes_per_class(50, CLASSES, sizes=sizes)
    with pytest.raises(ValueError, match=r"^class 'Sandal' needs 1\.\.3 prototypes \(it has 3 training images\); got 4$"):
        n_prototypes_per_class({"Sandal": 4}, CLASSES, sizes=sizes)
    with pytest.raises(ValueError, match=r"^class 'Dress' \(label 3\) has no training images for its prototypes$"):
        n_prototypes_per_class(1, CLASSES, sizes=np.where(np.arange(10) == 3, 0, 5))
    with pytest.raises(ValueError, match=r"sizes must have one count per class, shape \(10,\); got \(3,\)"):
        n_prototypes_per_class(1, CLASSES, sizes=np.ones(3, int))


# --- GLVQ --------------------------------------------------------------------------------------------


def test_glvq_zero_epochs_returns_input():
    prototypes = BLOB_CENTRES + 1
    out = glvq(prototypes, np.arange(3), BLOBS, BLOB_Y, epochs=0, seed=0)
    np.testing.assert_array_equal(out, prototypes)
    assert out.dtype == np.float32 and out is not prototypes


def test_glvq_fixes_a_misplaced_prototype_deterministically():
    # Two classes along x; the class-1 prototype starts inside class 0, so class 1 is mostly misread.
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 200)
    X = np.stack([np.where(y == 0, 0.0, 4.0) + rng.normal(0, 1, 400), rng.normal(0, 1, 400)], axis=1)
    start = np.array([[-1.0, 0.0], [0.5, 0.0]], dtype=np.float32)
    before = accuracy(y, nearest_prototype(X, start, np.arange(2), 2).labels)
    def run():
        return glvq(start, np.arange(2), X, y, epochs=10, learning_rate=0.3, batch_size=32, seed=0)

    out = run()
    after = accuracy(y, nearest_prototype(X, out, np.arange(2), 2).labels)
    assert before < 0.75 and after > 0.95
    np.testing.assert_array_equal(out, run())


def test_glvq_is_scale_free():
    prototypes = (BLOB_CENTRES + 5).astype(np.float32)
    raw = glvq(prototypes, np.arange(3), BLOBS, BLOB_Y, epochs=2, batch_size=16, seed=0)
    scaled = glvq(prototypes / 255, np.arange(3), BLOBS / 255, BLOB_Y, epochs=2, batch_size=16, seed=0)
    assert not np.allclose(raw, prototypes)
    np.testing.assert_allclose(scaled * 255, raw, rtol=1e-4, atol=1e-3)


def test_glvq_validation():
    with pytest.raises(ValueError, match="class 2 has images but no prototype"):
        glvq(BLOB_CENTRES[:2], np.arange(2), BLOBS, BLOB_Y, epochs=1, seed=0)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        glvq(BLOB_CENTRES, np.arange(3), BLOBS, BLOB_Y, epochs=1, learning_rate=0, seed=0)
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        glvq(BLOB_CENTRES, np.arange(3), BLOBS, BLOB_Y, epochs=-1, seed=0)
    with pytest.raises(ValueError, match="epochs must be >= 0 and an integer; got 1.5"):
        glvq(BLOB_CENTRES, np.arange(3), BLOBS, BLOB_Y, epochs=1.5, seed=0)
    with pytest.raises(ValueError, match="learning_rate must be > 0 and finite; got inf"):
        glvq(BLOB_CENTRES, np.arange(3), BLOBS, BLOB_Y, epochs=1, learning_rate=np.inf, seed=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        glvq(BLOB_CENTRES, np.arange(3), BLOBS, BLOB_Y, epochs=1, batch_size=0, seed=0)
    with pytest.raises(ValueError, match="X must be finite; it holds NaN or inf"):
        glvq(BLOB_CENTRES, np.arange(3), np.where(BLOBS > 49, np.nan, BLOBS), BLOB_Y, epochs=1, seed=0)
    with pytest.raises(ValueError, match="prototypes must be finite; it holds NaN or inf"):
        glvq(np.full_like(BLOB_CENTRES, np.inf), np.arange(3), BLOBS, BLOB_Y, epochs=1, seed=0)


@pytest.mark.parametrize("learning_rate", [1e3, 1e20, 1e38])
def test_glvq_divergence_raises_instead_of_returning_nan(learning_rate):
    # A huge rate overshoots further each step until a prototype overflows float32: that used to
    # come back as NaN prototypes that predict one class. Now it is an error naming the step.
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 200)
    X = np.stack([np.where(y == 0, 0.0, 4.0) + rng.normal(0, 1, 400), rng.normal(0, 1, 400)], axis=1)
    start = np.array([[-1.0, 0.0], [0.5, 0.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"GLVQ diverged: epoch \d, step \d+ of 39 made a prototype NaN or inf "
                                         r"\(learning_rate=.+\); use a smaller learning_rate"):
        glvq(start, np.arange(2), X, y, epochs=3, learning_rate=learning_rate, batch_size=32, seed=0)


def _glvq_reference(prototypes, labels, X, y, epochs, learning_rate, batch_size, seed):
    """GLVQ as ``glvq``'s docstring states it, image by image in float64 (prototypes kept in float32)."""
    W = np.asarray(prototypes, dtype=np.float32).copy()
    X = np.asarray(X, dtype=np.float32).astype(np.float64)
    rng = np.random.default_rng(seed)
    total, step = epochs * -(-len(X) // batch_size), 0
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            batch = order[start : start + batch_size]
            rate = learning_rate * (1 - step / total)
            W64 = W.astype(np.float64)
            found = []
            for i in batch:
                d = ((X[i] - W64) ** 2).sum(axis=1)
                own = np.flatnonzero(labels == y[i])
                other = np.flatnonzero(labels != y[i])
                plus, minus = own[d[own].argmin()], other[d[other].argmin()]
                found.append((i, plus, minus, d[plus], d[minus]))
            denoms = [dp + dm if dp + dm > 0 else 1.0 for _, _, _, dp, dm in found]
            scale = rate * np.mean(denoms) / len(batch)
            update = np.zeros_like(W64)
            for (i, plus, minus, dp, dm), denom in zip(found, denoms):
                update[plus] += 4 * scale * dm / denom**2 * (X[i] - W64[plus])
                update[minus] -= 4 * scale * dp / denom**2 * (X[i] - W64[minus])
            W = (W64 + update).astype(np.float32)
            step += 1
    return W


def test_glvq_matches_an_image_by_image_reference():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    X = (BLOB_CENTRES[y] + rng.normal(0, 15, size=(300, 2))).astype(np.float32)  # overlapping classes
    start = (BLOB_CENTRES[[0, 0, 1, 1, 2, 2]] + rng.normal(0, 5, size=(6, 2))).astype(np.float32)
    labels = np.repeat(np.arange(3), 2)
    ours = glvq(start, labels, X, y, epochs=2, learning_rate=0.3, batch_size=25, seed=4)
    reference = _glvq_reference(start, labels, X, y, 2, 0.3, 25, 4)
    assert not np.allclose(ours, start, atol=0.5)  # it moved
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_kmeans_then_glvq_on_real_data(fashion_train):
    images, labels = fashion_train
    pick = np.random.default_rng(0).choice(len(images), 6000, replace=False)
    X, y = images[pick].reshape(len(pick), -1).astype(np.float32), labels[pick]
    X_train, y_train, X_valid, y_valid = X[:5000], y[:5000], X[5000:], y[5000:]
    prototypes, prototype_labels, _ = kmeans_per_class(X_train, y_train, np.full(10, 5), seed=0)
    train_before = accuracy(y_train, nearest_prototype(X_train, prototypes, prototype_labels, 10).labels)
    valid_before = accuracy(y_valid, nearest_prototype(X_valid, prototypes, prototype_labels, 10).labels)
    refined = glvq(prototypes, prototype_labels, X_train, y_train, epochs=3, seed=0)
    train_after = accuracy(y_train, nearest_prototype(X_train, refined, prototype_labels, 10).labels)
    valid_after = accuracy(y_valid, nearest_prototype(X_valid, refined, prototype_labels, 10).labels)
    assert valid_before > 0.72  # more prototypes beat the class means (about 0.68)
    assert train_after >= train_before + 0.005
    assert valid_after >= valid_before - 0.005


def test_fit_class_prototypes_reports_each_class_and_refines_with_glvq():
    counts, names = np.array([2, 1, 3]), ["a", "b", "c"]
    prototypes, labels, fits = kmeans_per_class(BLOBS, BLOB_Y, counts, seed=4)
    km = fit_class_prototypes(BLOBS, BLOB_Y, counts, names, seed=4)
    assert km.prototypes.tobytes() == prototypes.tobytes() and km.prototype_labels.tolist() == labels.tolist()
    assert km.summary == {"metric": "mse", "n_prototypes": 6, "classes": {
        name: {"n_prototypes": int(k), "inertia": round(fit.inertia, 2), "iterations": fit.n_iter}
        for name, k, fit in zip(names, counts, fits)}}
    rows = km.history_rows(names)
    assert len(rows) == sum(fit.n_iter for fit in fits)
    assert rows[0] == {"series": "a", "iteration": 1, "mean_distance": round(float(fits[0].history[0]), 4)}

    refined = fit_class_prototypes(BLOBS, BLOB_Y, counts, names, seed=4, lvq_epochs=2, lvq_learning_rate=0.1,
                                   X_valid=BLOBS[::3], y_valid=BLOB_Y[::3])
    expected = glvq(prototypes, labels, BLOBS, BLOB_Y, epochs=2, learning_rate=0.1, seed=4)
    assert refined.prototypes.tobytes() == expected.tobytes()
    assert refined.summary["lvq"] == {"epochs": 2, "valid_accuracy_before": 1.0}
    with pytest.raises(ValueError, match="pass X_valid and y_valid"):
        fit_class_prototypes(BLOBS, BLOB_Y, counts, names, seed=4, lvq_epochs=1)
