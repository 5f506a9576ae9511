"""Nearest-prototype classification and the scores: toy sets by hand, scikit-learn and scipy as references."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn import metrics as skm
from sklearn.neighbors import NearestCentroid

from fmproto.evaluation import scores
from fmproto.search.distances import (METRICS, exact_distances, exact_minimum, exact_nearest, pairwise_distances,
                               squared_norms)
from fmproto.prototypes.centroids import class_means, nearest_prototype, prototype_distances

# Three classes of two points each; class means (1, 0), (10, 1), (1, 10).
TOY_X = np.array([[0, 0], [2, 0], [10, 0], [10, 2], [0, 10], [2, 10]], dtype=np.float32)
TOY_Y = np.array([0, 0, 1, 1, 2, 2])
TOY_MEANS = np.array([[1, 0], [10, 1], [1, 10]], dtype=np.float32)


def test_class_means_toy():
    means = class_means(TOY_X, TOY_Y, 3)
    assert means.dtype == np.float32 and means.shape == (3, 2)
    np.testing.assert_array_equal(means, TOY_MEANS)


def test_class_means_flattens_images():
    images = np.arange(24, dtype=np.uint8).reshape(4, 2, 3)
    np.testing.assert_array_equal(class_means(images, np.array([0, 1, 0, 1]), 2),
                                  [[6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17]])


def test_class_means_empty_class():
    with pytest.raises(ValueError, match="class 3 has no images"):
        class_means(TOY_X, TOY_Y, 4)


@pytest.mark.parametrize("bad", [[0, 0, 1, 1, 2, 3], [0, 0, 1, 1, 2, -1]])
def test_class_means_label_out_of_range(bad):
    with pytest.raises(ValueError, match=r"y must lie in 0\.\.2"):
        class_means(TOY_X, np.array(bad), 3)


def test_nearest_prototype_toy():
    queries = np.array([[1, 1], [9, 1], [1, 8], [6, 5]], dtype=np.float32)
    result = nearest_prototype(queries, TOY_MEANS, np.arange(3), 3, metric="sqeuclidean")
    # Squared distances to (1, 0), (10, 1), (1, 10), worked by hand.
    expected = np.array([[1, 81, 81], [65, 1, 145], [64, 130, 4], [50, 32, 50]], dtype=np.float32)
    np.testing.assert_array_equal(result.class_distances, expected)
    assert result.labels.tolist() == [0, 1, 2, 1]
    np.testing.assert_array_equal(result.distances, [1, 1, 4, 32])
    mse = nearest_prototype(queries, TOY_MEANS, np.arange(3), 3)  # default metric: mse = sqeuclidean / 2 here
    np.testing.assert_array_equal(mse.class_distances, expected / 2)
    assert mse.labels.tolist() == [0, 1, 2, 1]


def test_nearest_prototype_several_per_class():
    prototypes = np.array([[0, 0], [4, 0], [0, 4]], dtype=np.float32)
    result = nearest_prototype(np.array([[3, 0], [0, 3]]), prototypes, np.array([0, 0, 1]), 2, metric="sqeuclidean")
    np.testing.assert_array_equal(result.class_distances, [[1, 25], [9, 1]])
    assert result.labels.tolist() == [0, 1]


def test_ties_go_to_lowest_class():
    # (1, 0) is 1 from the class-2 prototype (0, 0) and from the class-1 prototype (2, 0).
    prototypes = np.array([[0, 0], [2, 0], [9, 9]], dtype=np.float32)
    result = nearest_prototype(np.array([[1, 0], [1, 0]]), prototypes, np.array([2, 1, 0]), 3, metric="sqeuclidean")
    assert result.labels.tolist() == [1, 1]
    np.testing.assert_array_equal(result.distances, [1, 1])


def test_class_without_prototype_is_never_predicted():
    result = nearest_prototype(TOY_X, TOY_MEANS[:2], np.array([0, 2]), 3)
    assert np.isinf(result.class_distances[:, 1]).all()
    assert set(result.labels.tolist()) <= {0, 2}


@pytest.mark.parametrize("chunk", [1, 4, 5000])
def test_chunking_does_not_change_results(chunk):
    rng = np.random.default_rng(0)
    X, P = rng.random((50, 8), dtype=np.float32), rng.random((7, 8), dtype=np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    whole = nearest_prototype(X, P, labels, 3, chunk=100)
    part = nearest_prototype(X, P, labels, 3, chunk=chunk)
    np.testing.assert_array_equal(part.labels, whole.labels)
    # BLAS may sum a single row in another order than a block of rows: last-bit differences only.
    np.testing.assert_allclose(part.class_distances, whole.class_distances, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(prototype_distances(X, P, chunk=chunk), prototype_distances(X, P, chunk=100),
                               rtol=1e-6, atol=1e-6)


def test_nearest_prototype_validation():
    with pytest.raises(ValueError, match=r"prototype_labels must lie in 0\.\.2; got 3"):
        nearest_prototype(TOY_X, TOY_MEANS, np.array([0, 1, 3]), 3)
    with pytest.raises(ValueError, match=r"prototype_labels must be 1-D integer labels of length 3"):
        nearest_prototype(TOY_X, TOY_MEANS, np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="metric must be one of"):
        nearest_prototype(TOY_X, TOY_MEANS, np.arange(3), 3, metric="chebyshev")
    with pytest.raises(ValueError, match="chunk must be a positive"):
        prototype_distances(TOY_X, TOY_MEANS, chunk=0)


@pytest.mark.parametrize("metric", METRICS)
def test_prototype_distances_match_scipy(metric):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(40, 30)).astype(np.float32)
    P = rng.integers(0, 256, size=(6, 30)).astype(np.float32)
    X[0] = P[2]  # a zero distance, where the |x|^2 - 2x.p + |p|^2 form cancels hardest
    scipy_name = {"mse": "sqeuclidean", "manhattan": "cityblock"}.get(metric, metric)
    expected = cdist(X.astype(np.float64), P.astype(np.float64), scipy_name)
    if metric == "mse":
        expected /= X.shape[1]
    D = prototype_distances(X, P, metric=metric, chunk=16)
    assert D.dtype == np.float32 and D.shape == (40, 6)
    # float32 cancellation leaves an absolute error of a few ulps of |x|^2 (up to ~2e6 here).
    atol = {"sqeuclidean": 2.0, "euclidean": 2e-2, "mse": 2.0 / 30, "cosine": 1e-5, "manhattan": 0}[metric]
    np.testing.assert_allclose(D, expected, rtol=1e-5, atol=atol)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_")  # always-blank border pixels
def test_nearest_centroid_matches_sklearn(fashion_train):
    images, labels = fashion_train
    rng = np.random.default_rng(0)
    pick = rng.choice(len(images), 7000, replace=False)
    train, test = pick[:5000], pick[5000:]
    X = images.reshape(len(images), -1).astype(np.float32)
    means = class_means(X[train], labels[train], 10)
    reference = NearestCentroid().fit(X[train], labels[train])  # euclidean: ranks like mse
    np.testing.assert_allclose(means, reference.centroids_, rtol=1e-6, atol=1e-4)
    result = nearest_prototype(X[test], means, np.arange(10), 10, metric="mse")
    np.testing.assert_array_equal(result.labels, reference.predict(X[test]))
    assert scores.accuracy(labels[test], result.labels) > 0.65  # about 0.68 on the full split


# --- evaluation -------------------------------------------------------------------------------------


def test_confusion_matrix_and_scores_toy():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = scores.confusion_matrix(y_true, y_pred, 4)
    np.testing.assert_array_equal(cm, [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert cm.dtype == np.int64
    precision, recall, f1 = scores.precision_recall_f1(cm)
    np.testing.assert_allclose(precision, [1, 1 / 2, 1 / 2, 0])  # class 3 never predicted: 0
    np.testing.assert_allclose(recall, [2 / 3, 1 / 2, 1, 0])  # class 3 never true: 0
    np.testing.assert_allclose(f1, [0.8, 0.5, 2 / 3, 0])
    assert scores.macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # class 3 has no true images: left out
    np.testing.assert_allclose(scores.per_class_accuracy(cm), recall)
    assert scores.accuracy(y_true, y_pred) == pytest.approx(4 / 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 6
    y_true = rng.integers(0, n_classes - 1, size=500)  # class 5 never true
    y_pred = np.where(rng.random(500) < 0.5, y_true, rng.integers(0, n_classes, size=500))
    y_pred[y_pred == 4] = 3  # class 4 never predicted
    labels = np.arange(n_classes)
    cm = scores.confusion_matrix(y_true, y_pred, n_classes)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=labels))
    precision, recall, f1 = scores.precision_recall_f1(cm)
    ref = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    np.testing.assert_allclose(precision, ref[0])
    np.testing.assert_allclose(recall, ref[1])
    np.testing.assert_allclose(f1, ref[2])
    assert scores.macro_f1(cm) == pytest.approx(  # over the classes present in y_true (not class 5)
        skm.f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))
    assert scores.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))


def test_evaluation_validation():
    with pytest.raises(ValueError, match=r"y_pred must lie in 0\.\.2; got 3"):
        scores.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="two 1-D arrays of one length"):
        scores.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="accuracy of 0 images"):
        scores.accuracy([], [])
    with pytest.raises(ValueError, match="must be square"):
        scores.precision_recall_f1(np.zeros((2, 3)))


# Distances to the nearest prototype of each of 3 classes, for 6 images.
CLASS_DISTANCES = np.array(
    [[1.0, 5.0, 6.0], [4.0, 2.0, 9.0], [7.0, 3.0, 1.0], [2.0, 8.0, 2.5], [9.0, 1.0, 4.0], [5.0, 6.0, 0.5]],
    dtype=np.float32)
CD_TRUE = np.array([0, 0, 2, 2, 0, 0])
CD_PRED = CLASS_DISTANCES.argmin(axis=1)  # [0, 1, 2, 0, 1, 2]


def test_furthest_from_own_prototype():
    # Own distances [1, 4, 1, 2.5, 9, 5]; the two 1s tie and keep index order.
    assert scores.furthest_from_own_prototype(CLASS_DISTANCES, CD_TRUE, 3).tolist() == [4, 5, 1]
    assert scores.furthest_from_own_prototype(CLASS_DISTANCES, CD_TRUE, 10).tolist() == [4, 5, 1, 3, 0, 2]
    assert scores.furthest_from_own_prototype(CLASS_DISTANCES, CD_TRUE, 0).tolist() == []


def test_confidently_wrong_by_margin():
    # Wrong: image 1 (margin 4 - 2 = 2), 3 (2.5 - 2 = 0.5), 4 (9 - 1 = 8), 5 (5 - 0.5 = 4.5).
    assert scores.confidently_wrong(CLASS_DISTANCES, CD_TRUE, CD_PRED, 3).tolist() == [4, 5, 1]
    assert scores.confidently_wrong(CLASS_DISTANCES, CD_TRUE, CD_PRED, 10).tolist() == [4, 5, 1, 3]
    assert scores.confidently_wrong(CLASS_DISTANCES, CD_PRED, CD_PRED, 5).tolist() == []


def test_confidently_wrong_ties_keep_index_order():
    cd = np.array([[3.0, 1.0], [1.0, 3.0], [3.0, 1.0]], dtype=np.float32)
    assert scores.confidently_wrong(cd, np.array([0, 1, 0]), np.array([1, 0, 1]), 3).tolist() == [0, 1, 2]


# --- exact float64 distances behind the float32 screening ---------------------------------------------

N_PIX = 784
_G = 2 * (N_PIX + 8) * 2.0**-24 / (1 - (N_PIX + 8) * 2.0**-24)  # the documented float32 error factor


def _planted_near_ties(seed=0):
    """Integer 'images' (784 pixels) and rows with planted exact ties and near-ties next to them.

    ``Y`` holds 8 pairs of rows equal but for one pixel ``p``; each query copies its pair's base
    (plus noise of a few grey levels) and puts pixel ``p`` at an integer ``v``. The pair's two pixel
    values sit at ``v - 0.5, v + 0.5`` (an exact tie: the lower index must win), ``v - 0.5, v + 0.504``
    (the lower index nearer by 0.004) or ``v - 0.504, v + 0.5`` (the higher index nearer). Squared
    distances are about 4,000 and ``|x|^2`` about 2e7, so a float32 product (rounding bound about
    3,000) cannot tell these apart; float64 sums of these squares are exact in any order.
    """
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 236, size=(8, N_PIX))
    pixel, value = rng.integers(N_PIX, size=8), rng.integers(30, 220, size=8)
    offsets = [(-0.5, 0.5), (-0.5, 0.504), (-0.504, 0.5)]
    Y = np.repeat(base, 2, axis=0).astype(np.float64)
    for k in range(8):
        low, high = offsets[k % 3]
        Y[2 * k, pixel[k]], Y[2 * k + 1, pixel[k]] = value[k] + low, value[k] + high
    pair = np.repeat(np.arange(8), 4)  # four queries a pair
    X = base[pair] + rng.integers(-3, 4, size=(len(pair), N_PIX))
    X[np.arange(len(pair)), pixel[pair]] = value[pair]
    X = np.vstack([X, rng.integers(0, 256, size=(4, N_PIX))])  # and a few unrelated rows
    return X.astype(np.float32), Y.astype(np.float32)


def _brute_sqeuclidean(X, Y):
    """Squared distances in float64 the plain way; exact on these rows."""
    return ((X.astype(np.float64)[:, None, :] - Y.astype(np.float64)[None, :, :]) ** 2).sum(axis=2)


def _adversarial(exact, winner, absolute, relative=0.0):
    """A float32 block as wrong as the documented bound allows, against the true winner of each row."""
    sign = np.where(np.arange(exact.shape[1])[None, :] == winner[:, None], 1.0, -1.0)
    return (exact + 0.99 * sign * (np.asarray(absolute)[..., None] + relative * exact)).astype(np.float32)


def test_planted_near_ties_are_below_float32_resolution():
    X, Y = _planted_near_ties()
    exact = _brute_sqeuclidean(X, Y)
    winner = exact.argmin(axis=1)
    absolute = _G * (squared_norms(X).astype(np.float64) + squared_norms(Y).max())
    # The set is what it claims: for the planted rows a screening error within the bound flips the
    # float32 argmin, and the rows hold exact ties.
    assert (_adversarial(exact, winner, absolute).argmin(axis=1) != winner).sum() >= 30
    assert sum(np.sum(row == row.min()) > 1 for row in exact) >= 8


def test_exact_nearest_matches_brute_force_sqeuclidean():
    X, Y = _planted_near_ties()
    exact = _brute_sqeuclidean(X, Y)
    winner = exact.argmin(axis=1)  # first minimum: the lowest index on ties
    D = pairwise_distances(X, Y, "sqeuclidean")
    index, distance = exact_nearest(X, Y, D)
    np.testing.assert_array_equal(index, winner)
    np.testing.assert_array_equal(distance, exact.min(axis=1))
    # Any float32 block within the bound gives the same answer, however the BLAS rounds.
    absolute = _G * (squared_norms(X).astype(np.float64) + squared_norms(Y).max())
    for D_other in (_adversarial(exact, winner, absolute), (exact + 0.99 * absolute[:, None]).astype(np.float32)):
        again, again_distance = exact_nearest(X, Y, D_other)
        np.testing.assert_array_equal(again, winner)
        np.testing.assert_array_equal(again_distance, distance)
    only_index, none = exact_nearest(X, Y, D, return_distance=False)
    assert none is None
    np.testing.assert_array_equal(only_index, winner)


def test_exact_nearest_allowed_columns():
    X, Y = _planted_near_ties(1)
    exact = _brute_sqeuclidean(X, Y)
    allowed = np.random.default_rng(1).random(exact.shape) < 0.6
    allowed[:, 1::2] |= allowed[:, ::2]  # keep many planted pairs whole
    allowed[3] = False  # a row with nothing to choose from
    masked = np.where(allowed, exact, np.inf)
    index, distance = exact_nearest(X, Y, pairwise_distances(X, Y, "sqeuclidean"), allowed=allowed)
    expected = masked.argmin(axis=1)
    expected[3] = -1
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_array_equal(distance, masked.min(axis=1))
    assert distance[3] == np.inf


def test_exact_nearest_rows_with_nan_or_overflow_are_measured():
    X, Y = _planted_near_ties(2)
    exact = _brute_sqeuclidean(X, Y)
    D = pairwise_distances(X, Y, "sqeuclidean")
    D[0, :] = np.nan
    D[1, 5] = np.nan
    D[2, :] = np.inf
    index, distance = exact_nearest(X, Y, D)
    np.testing.assert_array_equal(index, exact.argmin(axis=1))
    np.testing.assert_array_equal(distance, exact.min(axis=1))


@pytest.mark.parametrize("metric", ["cosine", "manhattan"])
def test_exact_nearest_other_metrics(metric):
    X, Y = _planted_near_ties(3)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    if metric == "cosine":
        exact = 1 - (X64 @ Y64.T) / np.outer(np.linalg.norm(X64, axis=1), np.linalg.norm(Y64, axis=1))
        absolute, relative = np.full(len(X), _G), 0.0
    else:
        exact = np.abs(X64[:, None, :] - Y64[None, :, :]).sum(axis=2)  # exact: one fractional pixel at most
        absolute, relative = np.zeros(len(X)), _G
    winner = exact.argmin(axis=1)
    gaps = np.sort(exact, axis=1)[:, 1] - exact.min(axis=1)
    assert gaps[gaps > 0].min() > 1e-12  # no reference near-tie finer than its own rounding
    for D in (pairwise_distances(X, Y, metric), _adversarial(exact, winner, absolute, relative)):
        index, distance = exact_nearest(X, Y, D, metric)
        np.testing.assert_array_equal(index, winner)
        np.testing.assert_allclose(distance, exact.min(axis=1), rtol=1e-13, atol=1e-15)


def test_exact_minimum_matches_brute_force():
    X, Y = _planted_near_ties(4)
    exact = _brute_sqeuclidean(X, Y)
    rng = np.random.default_rng(4)
    cap = exact[np.arange(len(X)), rng.integers(len(Y), size=len(X))] + rng.integers(-3, 4, size=len(X))
    absolute = _G * (squared_norms(X).astype(np.float64) + squared_norms(Y).max())
    expected = np.minimum(cap[:, None], exact)
    low = (exact - 0.99 * absolute[:, None]).astype(np.float32)  # every pair looks nearer than it is
    high = (exact + 0.99 * absolute[:, None]).astype(np.float32)
    for D in (pairwise_distances(X, Y, "sqeuclidean"), low, high):
        np.testing.assert_array_equal(exact_minimum(X, Y, D, cap), expected)


@pytest.mark.parametrize("metric", METRICS)
def test_exact_distances_match_brute_force(metric):
    X, Y = _planted_near_ties(5)
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(len(X), size=300), rng.integers(len(Y), size=300)
    X64, Y64 = X[rows].astype(np.float64), Y[cols].astype(np.float64)
    sq = ((X64 - Y64) ** 2).sum(axis=1)  # exact: one fractional pixel at most
    expected = {"sqeuclidean": sq, "euclidean": np.sqrt(sq), "mse": sq / N_PIX,
                "manhattan": np.abs(X64 - Y64).sum(axis=1),
                "cosine": 1 - (X64 * Y64).sum(axis=1) / np.linalg.norm(X64, axis=1) / np.linalg.norm(Y64, axis=1)}[metric]
    d = exact_distances(X, Y, metric, rows=rows, cols=cols)
    assert d.dtype == np.float64
    if metric == "cosine":  # 1 - cos: float64 rounding of cos, about 1e-16 absolute
        np.testing.assert_allclose(d, expected, rtol=1e-13, atol=1e-15)
    else:
        np.testing.assert_array_equal(d, expected)


@pytest.mark.parametrize("metric", METRICS)
def test_exact_distances_do_not_depend_on_how_pairs_are_given(metric):
    # Non-integer rows, where the order of every float64 sum shows in the last bits.
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(700, 50)).astype(np.float32), rng.normal(size=(3, 50)).astype(np.float32)
    one = [exact_distances(X[i : i + 1], Y[c : c + 1], metric)[0] for i, c in [(0, 0), (5, 2), (699, 0)]]
    many = exact_distances(X, Y, metric, rows=np.arange(700), cols=np.arange(700) % 3)  # grouped by row of Y
    few = exact_distances(X, Y, metric, rows=[0, 5, 699], cols=[0, 2, 0])  # pairs gathered
    np.testing.assert_array_equal(few, one)
    np.testing.assert_array_equal(many[[0, 5, 699]], one)
    np.testing.assert_array_equal(exact_distances(X, Y[:1], metric),  # every row with one row
                                  exact_distances(X, Y, metric, rows=np.arange(700), cols=np.zeros(700, int)))
    np.testing.assert_array_equal(exact_distances(X[:3], Y, metric), many[:3])  # row i with row i


def test_exact_validation():
    X, Y = TOY_X, TOY_MEANS
    with pytest.raises(ValueError, match="metric must be one of 'sqeuclidean', 'cosine', 'manhattan'; got 'mse'"):
        exact_nearest(X, Y, prototype_distances(X, Y), "mse")
    with pytest.raises(ValueError, match=r"D must have shape \(6, 3\)"):
        exact_nearest(X, Y, np.zeros((6, 2), np.float32))
    with pytest.raises(ValueError, match=r"allowed must have the shape of D \(6, 3\)"):
        exact_nearest(X, Y, prototype_distances(X, Y), allowed=np.ones((6, 2), bool))
    with pytest.raises(ValueError, match="give both rows and cols"):
        exact_distances(X, Y, rows=[0])
    with pytest.raises(ValueError, match=r"Y must have 1 row or as many as X \(6\); got 3"):
        exact_distances(X, Y)
    with pytest.raises(ValueError, match="X has 2 features but Y has 3"):
        exact_distances(X, np.zeros((1, 3)))


@pytest.mark.parametrize("pairs", ["across classes", "within a class"])
@pytest.mark.parametrize("metric", ["sqeuclidean", "mse", "euclidean", "cosine", "manhattan"])
def test_nearest_prototype_planted_ties_match_brute_force(metric, pairs):
    X, Y = _planted_near_ties(7)
    k = np.arange(8)
    if pairs == "across classes":
        # Pair k's prototypes have classes (k + 1) % 3 and k % 3: the exact ties (pairs 0, 3, 6) go to
        # the lower class, the higher prototype index; the near-ties to the nearer one, lower class or not.
        labels = np.stack([(k + 1) % 3, k % 3], axis=1).ravel()
    else:  # both in class k % 3: the class's distance is the nearer of the pair's
        labels = np.repeat(k % 3, 2)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    exact = {"sqeuclidean": _brute_sqeuclidean(X, Y), "mse": _brute_sqeuclidean(X, Y) / N_PIX,
             "euclidean": np.sqrt(_brute_sqeuclidean(X, Y)),
             "manhattan": np.abs(X64[:, None, :] - Y64[None, :, :]).sum(axis=2),
             "cosine": 1 - (X64 @ Y64.T) / np.outer(np.linalg.norm(X64, axis=1), np.linalg.norm(Y64, axis=1))}[metric]
    per_class = np.stack([exact[:, labels == c].min(axis=1) for c in range(3)], axis=1)
    expected_labels = per_class.argmin(axis=1)
    result = nearest_prototype(X, Y, labels, 3, metric=metric, chunk=7)
    np.testing.assert_array_equal(result.labels, expected_labels)
    if metric == "cosine":  # float64 roundings of 1 - cos apart, so at most a float32 ulp
        np.testing.assert_allclose(result.class_distances, per_class, rtol=1e-6)
    else:
        np.testing.assert_array_equal(result.class_distances, per_class.astype(np.float32))
    np.testing.assert_array_equal(result.distances, result.class_distances[np.arange(len(X)), result.labels])
