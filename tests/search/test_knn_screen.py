"""KnnIndex: exact neighbours through a screen of certified lower bounds, against naive float64 searches.

The index projects rows onto a few principal components and rules rows out by a lower bound of
their distance. Every test compares whole neighbour lists (and distances) with a search that measures
every pair in float64 and orders ties by the lower training index: on real images, on sets built to
break the bound (duplicates, ties, constant and zero rows, rows that differ only where the projection
does not look, extreme magnitudes), under a screen rounded differently, and with 1 and 2 BLAS threads.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmproto.search import knn, projection

REPO = Path(__file__).resolve().parents[2]
SCREEN_METRICS = ("euclidean", "sqeuclidean", "cosine")


def _distances(X_query, X_train, metric):
    """Naive float64 distances (squared for euclidean), one query row at a time: (n_queries, n_train).

    Each pair's sum runs along its row with einsum, as fmproto's float64 distances do: float rows
    whose distances agree to the last bit (a query far from many tiny rows) then tie alike; another
    order of summation (numpy's pairwise ``sum``) can differ there in the last bit.
    """
    a = X_query.reshape(len(X_query), -1).astype(np.float64)
    b = X_train.reshape(len(X_train), -1).astype(np.float64)
    D = np.empty((len(a), len(b)))
    for row, x in enumerate(a):
        if metric == "cosine":
            dot = np.einsum("ij,j->i", b, x)
            norms = np.sqrt(np.einsum("j,j->", x, x)) * np.sqrt(np.einsum("ij,ij->i", b, b))
            cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
            D[row] = np.clip(1.0 - cos, 0.0, 2.0)
        else:
            diff = b - x
            D[row] = np.einsum("ij,ij->i", diff, diff)
    return D


def _products(X_query, X_train):
    """Squared norms and dot products of integer pixels in float64: exact integers below 2^53, so the
    order of the sums cannot matter."""
    a = X_query.reshape(len(X_query), -1).astype(np.float64)
    b = X_train.reshape(len(X_train), -1).astype(np.float64)
    return np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b), a @ b.T


def _integer_distances(products, metric):
    """``_distances`` (squared for euclidean) of integer pixels, from their exact ``_products``."""
    a2, b2, dot = products
    if metric == "cosine":
        norms = np.sqrt(a2)[:, None] * np.sqrt(b2)[None, :]
        cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
        return np.clip(1.0 - cos, 0.0, 2.0)
    return a2[:, None] + b2[None, :] - 2 * dot


def _brute(D, k, metric="sqeuclidean"):
    """The k nearest of each row of D (squared for euclidean) by (distance, training index), and their
    distances as the metric gives them (euclidean: the root, taken after sorting)."""
    kth = np.partition(D, k - 1, axis=1)[:, k - 1]
    order = np.empty((len(D), k), dtype=np.int64)
    for row, values in enumerate(D):
        near = np.flatnonzero(values <= kth[row])  # the k nearest and every tie with the k-th
        order[row] = near[np.argsort(values[near], kind="stable")][:k]  # stable: ties keep the lower index first
    nearest = np.take_along_axis(D, order, axis=1)
    return (np.sqrt(nearest) if metric == "euclidean" else nearest), order


def _check(X_query, X_train, k, metric, D=None, components=8, chunk=1024):
    D = _distances(X_query, X_train, metric) if D is None else D
    expected_d, expected_i = _brute(D, k, metric)
    distances, indices = knn.KnnIndex(components).fit(X_train, metric).kneighbors(X_query, k, chunk=chunk)
    np.testing.assert_array_equal(indices, expected_i)
    # Rounded once to float32 (squares of 1e20 overflow to inf, of 1e-20 are subnormal, as expected).
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(distances, expected_d.astype(np.float32), rtol=1e-6, atol=1e-44)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    return distances, indices


# ------------------------------------------------------------------------------------------ real images


@pytest.fixture(scope="module")
def fashion_rows(fashion_train, fashion_test):
    """20,000 training and 1,000 test images as uint8 rows, drawn with a fixed seed."""
    rng = np.random.default_rng(11)
    train = np.sort(rng.choice(len(fashion_train[1]), 20_000, replace=False))
    test = np.sort(rng.choice(len(fashion_test[1]), 1_000, replace=False))
    return fashion_train[0][train].reshape(20_000, -1), fashion_test[0][test].reshape(1_000, -1)


@pytest.fixture(scope="module")
def fashion_products(fashion_rows):
    X_train, X_query = fashion_rows
    return _products(X_query, X_train)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_fashion_neighbours_equal_brute_force(fashion_rows, fashion_products, metric):
    X_train, X_query = fashion_rows
    D = _integer_distances(fashion_products, metric)
    expected_d, expected_i = _brute(D, 10, metric)
    index = knn.KnnIndex().fit(X_train, metric)
    distances, indices = index.kneighbors(X_query, 10)
    np.testing.assert_array_equal(indices, expected_i)  # every row, every place
    np.testing.assert_array_equal(distances, expected_d.astype(np.float32))  # the same float64 values
    if metric == "euclidean":  # squared: the same neighbours, and the squares of the same float64 values
        index.metric = "sqeuclidean"
        distances, indices = index.kneighbors(X_query, 10)
        np.testing.assert_array_equal(indices, expected_i)
        np.testing.assert_array_equal(distances, (expected_d**2).astype(np.float32))


def test_fashion_with_duplicated_and_planted_rows(fashion_rows):
    # Copies of query images in the training rows, twice each, and a training image copied 50 times:
    # ties at distance 0 and at every distance from the copied image.
    X_train, X_query = fashion_rows[0][:5000].copy(), fashion_rows[1][:200].copy()
    X_train[100:150] = X_train[7]
    X_train[[3000, 4000]] = X_query[0]
    X_train[[4500, 10]] = X_query[1]
    products = _products(X_query, X_train)
    for metric in ("euclidean", "cosine"):
        distances, indices = _check(X_query, X_train, 60, metric, D=_integer_distances(products, metric),
                                    components=128, chunk=37)
        assert indices[0, :2].tolist() == [3000, 4000] and indices[1, :2].tolist() == [10, 4500]


# ------------------------------------------------------------------------------------- adversarial sets


def _levels(n_train, n_query, n_features, levels, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, levels, size=(n_query, n_features)).astype(np.uint8),
            rng.integers(0, levels, size=(n_train, n_features)).astype(np.uint8))


def _adversarial(name):
    """(X_query, X_train) of one kind of hard set."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "duplicates":  # groups of identical training rows, queries equal to some of them
        base = rng.integers(0, 256, size=(40, 30))
        X_train = base[rng.integers(0, 40, size=2500)].astype(np.uint8)
        return np.concatenate([X_train[:20], base[:10].astype(np.uint8) + 1]), X_train
    if name == "equal_distances":  # 3 grey levels in 12 pixels: thousands of exact ties a query
        return _levels(3000, 60, 12, 3, seed=1)
    if name == "constant_rows":  # every training row the same, and queries too
        return np.full((10, 20), 7.0), np.full((2200, 20), 7.0)
    if name == "zero_rows":  # zero rows among others: cosine puts them at distance 1 from everything
        X_query, X_train = _levels(2500, 40, 16, 5, seed=2)
        X_train[::7] = 0
        X_query[::5] = 0
        return X_query, X_train
    if name == "tiny":
        return rng.normal(size=(40, 24)) * 1e-20, rng.normal(size=(2500, 24)) * 1e-20
    if name == "huge":
        return rng.normal(size=(40, 24)) * 1e20, rng.normal(size=(2500, 24)) * 1e20
    if name == "mixed_magnitudes":  # training rows at 1, 1e-20 and 1e20; queries up to 1e30
        X_train = rng.normal(size=(2500, 24))
        X_train[::3] *= 1e-20
        X_train[1::50] *= 1e20
        X_query = rng.normal(size=(40, 24)) * np.logspace(-20, 30, 40)[:, None]
        return X_query, X_train
    if name == "uniform_noise":  # no principal direction: the bound rules little out, rows go to the full screen
        return _levels(4000, 50, 64, 256, seed=3)
    raise ValueError(name)


ADVERSARIAL = ("duplicates", "equal_distances", "constant_rows", "zero_rows", "tiny", "huge", "mixed_magnitudes",
               "uniform_noise")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # squares of 1e20 in float32: inf
@pytest.mark.parametrize("name", ADVERSARIAL)
@pytest.mark.parametrize("metric", SCREEN_METRICS)
def test_adversarial_sets_equal_brute_force(name, metric):
    X_query, X_train = _adversarial(name)
    D = _distances(X_query, X_train, metric)
    for k, chunk in ((1, 1), (7, 13), (len(X_train), 17)):  # k = n_train sorts every row
        _check(X_query[:20] if k == len(X_train) else X_query, X_train, k, metric,
               D=D[:20] if k == len(X_train) else D, components=6, chunk=chunk)


@pytest.mark.parametrize("metric", SCREEN_METRICS)
def test_rows_that_differ_only_outside_the_projection(metric):
    # Rows on a 3-dimensional plane in 40 dimensions, so the top 3 components span it; planted rows
    # share a query's projection and differ from it only in directions the projection cannot see,
    # by amounts that interleave with the distances on the plane.
    rng = np.random.default_rng(12)
    plane = np.linalg.qr(rng.normal(size=(40, 3)))[0]  # (40, 3) orthonormal
    X_train = rng.normal(size=(3000, 3)) * [50.0, 30.0, 20.0] @ plane.T + 100.0
    X_query = rng.normal(size=(30, 3)) * [50.0, 30.0, 20.0] @ plane.T + 100.0
    index = knn.KnnIndex(3).fit(X_train, metric)
    basis = index.projection.basis
    for row, query in enumerate(X_query):
        away = rng.normal(size=(6, 40))
        away -= (away @ basis) @ basis.T  # orthogonal to the projection's components
        away *= (0.2 * (1 + np.arange(6)) / np.linalg.norm(away, axis=1))[:, None]
        X_train[100 * row : 100 * row + 6] = query + away
        X_train[100 * row + 6] = query + away[0]  # an exact tie with the first planted row
    D = _distances(X_query, X_train, metric)
    _, indices = _check(X_query, X_train, 8, metric, D=D, components=3, chunk=7)
    if metric != "cosine":
        assert indices[0, :3].tolist() == [0, 6, 1]


def test_few_features_keep_the_full_screen():
    X_query, X_train = _levels(2000, 50, 12, 4, seed=13)
    for metric in SCREEN_METRICS:
        _check(X_query, X_train, 9, metric, components=8, chunk=11)
    np.testing.assert_array_equal(projection.Projection(128).fit(X_train).basis, np.eye(12))  # all kept: the identity


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # squares of 1e20 in float32: inf
@pytest.mark.parametrize("metric", SCREEN_METRICS)
def test_full_screen_leaves_extreme_magnitudes_to_a_scaled_projection(metric):
    # Rows beyond 2^50 or below 2^-50 would overflow or underflow float32 squares in the full screen:
    # training rows like that are projected (every dimension, scaled) instead, and so are query rows.
    for name in ("tiny", "huge", "mixed_magnitudes"):
        X_query, X_train = _adversarial(name)
        _check(X_query, X_train, 5, metric, components=128, chunk=7)
    rng = np.random.default_rng(23)
    X_train = rng.normal(size=(500, 24))
    X_query = rng.normal(size=(10, 24)) * np.logspace(-30, 30, 10)[:, None]
    _check(X_query, X_train, 5, metric, components=128, chunk=3)


def test_float_rows_at_a_distance_from_the_origin():
    rng = np.random.default_rng(14)
    X_train = rng.normal(size=(4000, 50)) @ rng.normal(size=(50, 50)) * 10 + 1000  # correlated, float64
    X_query = rng.normal(size=(40, 50)) @ rng.normal(size=(50, 50)) * 10 + 1000
    for metric in SCREEN_METRICS:
        _check(X_query, X_train, 5, metric, components=10, chunk=9)


# ------------------------------------------------------------------ whatever the rounding of the screen


def _other_rounding(scores, seed):
    """``projection.scores`` as another BLAS might round it, and a counter of the rows whose 32 best moved.

    Each score moves by up to (m + 9) / 2 float32 units of ``|f_a|^2 + 3 max|f_b|^2``: a quarter of
    the rounding bound the screen allows for, and far more than BLAS builds and thread counts differ by.
    """
    rng = np.random.default_rng(seed)
    moved = [0]

    def screen(Q, W, out=None):
        S = scores(Q, W, out=out)
        m = Q.shape[1] - 2
        a2 = np.einsum("ij,ij->i", Q[:, :-1].astype(np.float64), Q[:, :-1].astype(np.float64))
        real = W[:, -1] < np.finfo(np.float32).max  # not padding
        scale = a2[:, None] + 3 * float(W[real, -1].max())
        ulps = (m + 9) // 2
        other = (S + rng.integers(-ulps, ulps + 1, size=S.shape) * 2.0**-24 * scale).astype(np.float32)
        other[:, ~real] = np.finfo(np.float32).max
        lowest = [np.sort(np.argpartition(block, 31, axis=1)[:, :32], axis=1) for block in (S, other)]
        moved[0] += int(np.count_nonzero((lowest[0] != lowest[1]).any(axis=1)))  # the rows measured first
        S[...] = other
        return S

    return screen, moved


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_a_screen_rounded_otherwise_changes_nothing(fashion_rows, metric, monkeypatch):
    X_train, X_query = fashion_rows[0][:6000].copy(), fashion_rows[1][:300]
    # 40 copies of each of the first 50 queries, each one grey level off in a pixel of its own: 40
    # rows at squared distance 1, tied. k = 35 puts the k-th place among them and beyond the 32 rows
    # measured first, so the bound decides which copies are measured, within its rounding allowance.
    for row in range(50):
        copies = slice(100 * row, 100 * row + 40)
        X_train[copies] = X_query[row]
        X_train[copies, 200 + 10 * np.arange(40)] ^= np.eye(40, dtype=np.uint8)
    index = knn.KnnIndex().fit(X_train, metric)
    reference = index.kneighbors(X_query, 35)
    assert reference[1][0].tolist() == list(range(35)) or metric == "cosine"
    screen, moved = _other_rounding(projection.scores, seed=15)
    monkeypatch.setattr(projection, "scores", screen)
    other = index.kneighbors(X_query, 35)
    assert moved[0] > 0  # the float32 ranking did change which rows are measured first
    np.testing.assert_array_equal(other[1], reference[1])
    np.testing.assert_array_equal(other[0], reference[0])


_THREADS_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from fmproto.search import knn
data = np.load(sys.argv[1])
out = {}
for metric in ("euclidean", "cosine"):
    d, i = knn.KnnIndex().fit(data["X_train"], metric).kneighbors(data["X_query"], 10)
    out[metric] = [hashlib.sha256(d.tobytes()).hexdigest(), hashlib.sha256(i.tobytes()).hexdigest()]
print(json.dumps(out))
"""


@pytest.mark.e2e
def test_one_and_two_blas_threads_give_the_same_neighbours(fashion_rows, tmp_path):
    X_train, X_query = fashion_rows
    arrays = tmp_path / "rows.npz"
    np.savez(arrays, X_train=X_train[:10_000], X_query=X_query[:500])
    runs = {}
    for threads in (1, 2):
        env = os.environ | dict.fromkeys(("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"), str(threads))
        done = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(arrays)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs[threads] = json.loads(done.stdout)
    assert runs[1] == runs[2]


# ------------------------------------------------------------------------ one search, whichever path


@pytest.mark.parametrize("metric", knn.KNN_METRICS)
def test_index_and_full_screen_agree_bit_for_bit(metric):
    # Float rows with no integer structure, so each path's float64 arithmetic shows in the last bits.
    rng = np.random.default_rng(16)
    X_train = rng.normal(size=(3000, 40)) @ rng.normal(size=(40, 40))
    X_train[500:520] = X_train[3]  # exact ties
    X_query = rng.normal(size=(50, 40)) @ rng.normal(size=(40, 40))
    X_query[0] = X_train[3]
    full = knn.kneighbors(X_query, X_train, 25, metric=metric)  # 50 queries: no index
    indexed = knn.KnnIndex(components=6).fit(X_train, metric).kneighbors(X_query, 25, chunk=19)
    np.testing.assert_array_equal(indexed[1], full[1])
    np.testing.assert_array_equal(indexed[0], full[0])


@pytest.mark.parametrize("n_queries", [500, 700])  # on either side of where the projection pays
def test_kneighbors_equals_both_settings_of_the_index(n_queries):
    X_query, X_train = _levels(3000, n_queries, 300, 6, seed=17)
    result = knn.kneighbors(X_query, X_train, 4, metric="cosine")
    for components in (knn.COMPONENTS, 300):
        expected = knn.KnnIndex(components).fit(X_train, "cosine").kneighbors(X_query, 4)
        np.testing.assert_array_equal(result[1], expected[1])
        np.testing.assert_array_equal(result[0], expected[0])


def test_small_chunks_bound_the_block(monkeypatch):
    X_query, X_train = _levels(3000, 80, 20, 5, seed=18)
    reference = knn.KnnIndex(5).fit(X_train).kneighbors(X_query, 6)
    blocks = []
    scores = projection.scores

    def spy(Q, W, out=None):
        blocks.append(len(Q))
        return scores(Q, W, out)

    monkeypatch.setattr(projection, "scores", spy)
    result = knn.KnnIndex(5).fit(X_train).kneighbors(X_query, 6, chunk=3)
    assert max(blocks) == 3
    np.testing.assert_array_equal(result[1], reference[1])
    np.testing.assert_array_equal(result[0], reference[0])


@pytest.mark.parametrize("chunk", [16, 1024])
def test_rows_the_bound_cannot_narrow(chunk):
    # Uniform noise: most rows have candidates everywhere, measured or handed to the full screen.
    X_query, X_train = _adversarial("uniform_noise")
    _check(X_query, X_train, 7, "euclidean", components=6, chunk=chunk)


def test_manhattan_index_screens_in_full():
    X_query, X_train = _levels(1000, 30, 10, 4, seed=19)
    result = knn.KnnIndex().fit(X_train, "manhattan").kneighbors(X_query, 5, chunk=7)
    expected = knn.kneighbors(X_query, X_train, 5, metric="manhattan")
    np.testing.assert_array_equal(result[1], expected[1])
    np.testing.assert_array_equal(result[0], expected[0])


def test_images_and_no_queries():
    X_query, X_train = _levels(2500, 12, 12, 4, seed=20)
    index = knn.KnnIndex(4).fit(X_train.reshape(2500, 3, 4))
    flat = index.kneighbors(X_query, 3)
    shaped = index.kneighbors(X_query.reshape(12, 3, 4), 3)
    np.testing.assert_array_equal(flat[1], shaped[1])
    distances, indices = index.kneighbors(X_query[:0], 3)
    assert distances.shape == (0, 3) and indices.shape == (0, 3)


# ------------------------------------------------------------------------------------------ projection


def test_the_bound_holds_for_every_pair():
    # |a - b|^2 >= (1 - orthogonality) (|f~_a - f~_b| - delta_a - delta_b)^2 for float rows of very
    # different sizes; and rows scoring above score_limits are farther than the bound given.
    rng = np.random.default_rng(21)
    X = rng.normal(size=(600, 30)) @ rng.normal(size=(30, 30)) * np.logspace(-3, 3, 600)[:, None]
    fitted = projection.Projection(5).fit(X[:400])
    emb = fitted.embed(X)
    f = emb.coords.astype(np.float64) / fitted.scale
    delta = emb.delta / fitted.scale
    D = _distances(X, X, "sqeuclidean")
    F = np.sqrt(np.maximum(_distances(f, f, "sqeuclidean"), 0))
    lower = np.maximum(F - delta[:, None] - delta[None, :], 0) ** 2 * (1 - fitted.orthogonality)
    assert np.all(lower <= D)
    assert np.mean(lower > 0.5 * D) > 0.5  # and it is not vacuous
    screen = fitted.screen(emb[:400], np.arange(400))
    query = emb[400:]
    bound = np.quantile(D[400:, :400], 0.1, axis=1)
    S = projection.scores(query.query_matrix(), screen.W)
    limits = fitted.limits(bound, query, screen)
    assert np.all(D[400:, :400][S > limits[:, None]] > bound.repeat(400).reshape(200, 400)[S > limits[:, None]])


def test_fit_is_deterministic_and_orthonormal():
    X_query, X_train = _levels(5000, 1, 50, 256, seed=22)
    first, second = projection.Projection(10).fit(X_train), projection.Projection(10).fit(X_train)
    np.testing.assert_array_equal(first.basis, second.basis)
    assert first.basis.shape == (50, 10) and first.orthogonality < 1e-10
    np.testing.assert_allclose(first.basis.T @ first.basis, np.eye(10), atol=1e-12)
    assert np.all(first.basis[np.argmax(np.abs(first.basis), axis=0), np.arange(10)] > 0)  # signs fixed


FITTED = knn.KnnIndex().fit(np.ones((3, 2)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: knn.KnnIndex(0), r"components must be an integer >= 1; got 0"),
        (lambda: knn.KnnIndex().kneighbors(np.ones((2, 3)), 1), r"the index is not fitted"),
        (lambda: knn.KnnIndex().fit(np.ones((3, 2)), "mse"), r"metric must be one of .*got 'mse'"),
        (lambda: knn.KnnIndex().fit(np.ones((0, 2))), r"X_train must have at least one row; got 0"),
        (lambda: FITTED.kneighbors(np.ones((2, 3)), 1), r"X_query has 3 features but X_train has 2"),
        (lambda: FITTED.kneighbors(np.ones((2, 2)), 4), r"k must be an integer in 1\.\.3.*got 4"),
        (lambda: FITTED.kneighbors(np.ones((2, 2)), 1, chunk=0), r"chunk must be an integer >= 1; got 0"),
        (lambda: knn.KnnIndex().fit(np.array([[np.inf, 0.0]])), r"X_train must be finite"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
