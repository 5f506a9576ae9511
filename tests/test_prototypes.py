"""Nearest-prototype classification and the scores: toy sets by hand, scikit-learn and scipy as references."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn import metrics as skm
from sklearn.neighbors import NearestCentroid

from fmproto import evaluation
from fmproto.distances import METRICS
from fmproto.prototypes import class_means, nearest_prototype, prototype_distances

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
    with pytest.raises(ValueError, match="3 prototypes but 2 prototype_labels"):
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
    assert evaluation.accuracy(labels[test], result.labels) > 0.65  # about 0.68 on the full split


# --- evaluation -------------------------------------------------------------------------------------


def test_confusion_matrix_and_scores_toy():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = evaluation.confusion_matrix(y_true, y_pred, 4)
    np.testing.assert_array_equal(cm, [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert cm.dtype == np.int64
    precision, recall, f1 = evaluation.precision_recall_f1(cm)
    np.testing.assert_allclose(precision, [1, 1 / 2, 1 / 2, 0])  # class 3 never predicted: 0
    np.testing.assert_allclose(recall, [2 / 3, 1 / 2, 1, 0])  # class 3 never true: 0
    np.testing.assert_allclose(f1, [0.8, 0.5, 2 / 3, 0])
    assert evaluation.macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 4)
    np.testing.assert_allclose(evaluation.per_class_accuracy(cm), recall)
    assert evaluation.accuracy(y_true, y_pred) == pytest.approx(4 / 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 6
    y_true = rng.integers(0, n_classes - 1, size=500)  # class 5 never true
    y_pred = np.where(rng.random(500) < 0.5, y_true, rng.integers(0, n_classes, size=500))
    y_pred[y_pred == 4] = 3  # class 4 never predicted
    labels = np.arange(n_classes)
    cm = evaluation.confusion_matrix(y_true, y_pred, n_classes)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=labels))
    precision, recall, f1 = evaluation.precision_recall_f1(cm)
    ref = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    np.testing.assert_allclose(precision, ref[0])
    np.testing.assert_allclose(recall, ref[1])
    np.testing.assert_allclose(f1, ref[2])
    assert evaluation.macro_f1(cm) == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    assert evaluation.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))


def test_evaluation_validation():
    with pytest.raises(ValueError, match=r"y_pred must lie in 0\.\.2; got 3"):
        evaluation.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="two 1-D arrays of one length"):
        evaluation.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="accuracy of 0 images"):
        evaluation.accuracy([], [])
    with pytest.raises(ValueError, match="must be square"):
        evaluation.precision_recall_f1(np.zeros((2, 3)))


# Distances to the nearest prototype of each of 3 classes, for 6 images.
CLASS_DISTANCES = np.array(
    [[1.0, 5.0, 6.0], [4.0, 2.0, 9.0], [7.0, 3.0, 1.0], [2.0, 8.0, 2.5], [9.0, 1.0, 4.0], [5.0, 6.0, 0.5]],
    dtype=np.float32)
CD_TRUE = np.array([0, 0, 2, 2, 0, 0])
CD_PRED = CLASS_DISTANCES.argmin(axis=1)  # [0, 1, 2, 0, 1, 2]


def test_furthest_from_own_prototype():
    # Own distances [1, 4, 1, 2.5, 9, 5]; the two 1s tie and keep index order.
    assert evaluation.furthest_from_own_prototype(CLASS_DISTANCES, CD_TRUE, 3).tolist() == [4, 5, 1]
    assert evaluation.furthest_from_own_prototype(CLASS_DISTANCES, CD_TRUE, 10).tolist() == [4, 5, 1, 3, 0, 2]
    assert evaluation.furthest_from_own_prototype(CLASS_DISTANCES, CD_TRUE, 0).tolist() == []


def test_confidently_wrong_by_margin():
    # Wrong: image 1 (margin 4 - 2 = 2), 3 (2.5 - 2 = 0.5), 4 (9 - 1 = 8), 5 (5 - 0.5 = 4.5).
    assert evaluation.confidently_wrong(CLASS_DISTANCES, CD_TRUE, CD_PRED, 3).tolist() == [4, 5, 1]
    assert evaluation.confidently_wrong(CLASS_DISTANCES, CD_TRUE, CD_PRED, 10).tolist() == [4, 5, 1, 3]
    assert evaluation.confidently_wrong(CLASS_DISTANCES, CD_PRED, CD_PRED, 5).tolist() == []


def test_confidently_wrong_ties_keep_index_order():
    cd = np.array([[3.0, 1.0], [1.0, 3.0], [3.0, 1.0]], dtype=np.float32)
    assert evaluation.confidently_wrong(cd, np.array([0, 1, 0]), np.array([1, 0, 1]), 3).tolist() == [0, 1, 2]
