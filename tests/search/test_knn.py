"""Exact kNN against a naive float64 computation, and predictions against scikit-learn."""

import numpy as np
import pytest

from fmproto.search import knn

# Toy set: five training points on a line, hand-checked answers.
TOY_TRAIN = np.array([[0.0], [1.0], [3.0], [3.0], [10.0]])  # rows 2 and 3 are duplicates
TOY_LABELS = np.array([0, 0, 1, 2, 1])


def _naive(X_query, X_train, metric):
    """Reference: every pair measured in float64 by the definition, (n_queries, n_train)."""
    a = X_query.reshape(len(X_query), -1).astype(np.float64)[:, None, :]
    b = X_train.reshape(len(X_train), -1).astype(np.float64)[None, :, :]
    if metric == "manhattan":
        return np.abs(a - b).sum(axis=2)
    if metric == "cosine":
        dot = (a * b).sum(axis=2)
        norms = np.sqrt((a * a).sum(axis=2)) * np.sqrt((b * b).sum(axis=2))
        cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
        return np.clip(1.0 - cos, 0.0, 2.0)
    squared = ((a - b) ** 2).sum(axis=2)
    return np.sqrt(squared) if metric == "euclidean" else squared


def _naive_kneighbors(X_query, X_train, k, metric):
    D = _naive(X_query, X_train, metric)
    index = np.broadcast_to(np.arange(D.shape[1]), D.shape)
    order = np.lexsort((index, D), axis=1)[:, :k]  # by distance, then the lower index
    return np.take_along_axis(D, order, axis=1), order


def _tied_integers(n_train, n_query, n_features, levels, seed):
    """Few grey levels, so many exact distance ties; duplicate training rows planted."""
    rng = np.random.default_rng(seed)
    X_train = rng.integers(0, levels, size=(n_train, n_features)).astype(np.uint8)
    X_query = rng.integers(0, levels, size=(n_query, n_features)).astype(np.uint8)
    X_train[7] = X_train[2]
    X_train[n_train - 1] = X_train[2]
    X_query[0] = X_train[2]  # an exact match found three times: rows 2, 7, n_train - 1
    return X_query, X_train


def test_toy_neighbours_by_hand():
    distances, indices = knn.kneighbors(np.array([[2.9], [5.0]]), TOY_TRAIN, 3)
    np.testing.assert_array_equal(indices, [[2, 3, 1], [2, 3, 1]])
    np.testing.assert_allclose(distances, [[0.1, 0.1, 1.9], [2.0, 2.0, 4.0]], rtol=1e-6)
    distances, _ = knn.kneighbors(np.array([[2.9]]), TOY_TRAIN, 1, metric="sqeuclidean")
    np.testing.assert_allclose(distances, [[0.01]], rtol=1e-5)


def test_toy_predictions_by_hand():
    # 2.5: neighbours 2 (label 1), 3 (label 2), 1 (label 0) -> one vote each, the lowest label 0 wins
    assert knn.predict(np.array([[2.5]]), TOY_TRAIN, TOY_LABELS, 3, k=3).tolist() == [0]
    # distance weights: 1/0.5 for labels 1 and 2, 1/1.5 for label 0 -> tie 1 vs 2, the lower wins
    assert knn.predict(np.array([[2.5]]), TOY_TRAIN, TOY_LABELS, 3, k=3, weights="distance").tolist() == [1]
    # an exact copy of row 4 takes all the weight, however many neighbours disagree
    assert knn.predict(np.array([[10.0]]), TOY_TRAIN, TOY_LABELS, 3, k=5, weights="distance").tolist() == [1]


@pytest.mark.parametrize("metric", knn.KNN_METRICS)
@pytest.mark.parametrize("k", [1, 6, 40])
def test_matches_naive_float64_with_ties(metric, k):
    X_query, X_train = _tied_integers(n_train=300, n_query=40, n_features=12, levels=3, seed=1)
    distances, indices = knn.kneighbors(X_query, X_train, k, metric=metric, chunk=16)
    expected_d, expected_i = _naive_kneighbors(X_query, X_train, k, metric)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6, atol=1e-7)
    assert distances.dtype == np.float32 and indices.dtype == np.int64


@pytest.mark.parametrize("metric", knn.KNN_METRICS)
def test_duplicates_come_lowest_index_first(metric):
    X_query, X_train = _tied_integers(n_train=300, n_query=5, n_features=12, levels=3, seed=2)
    distances, indices = knn.kneighbors(X_query, X_train, 3, metric=metric)
    assert indices[0].tolist() == [2, 7, 299]
    assert np.all(distances[0] == 0)


@pytest.mark.parametrize("metric", knn.KNN_METRICS)
def test_grouped_screening_and_rescreening_are_exact(metric):
    # 6,000 training rows take the grouped screening path; 300 copies of one row at the same
    # distance as the k-th neighbour defeat the k + margin candidates and force re-screening.
    X_query, X_train = _tied_integers(n_train=6000, n_query=30, n_features=16, levels=4, seed=3)
    X_train[1000:1300] = X_train[2]
    X_train[50] = 0  # zero rows: cosine puts them at distance 1 from everything
    X_query[1] = 0
    distances, indices = knn.kneighbors(X_query, X_train, 5, metric=metric, chunk=8)
    expected_d, expected_i = _naive_kneighbors(X_query, X_train, 5, metric)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6, atol=1e-7)
    assert indices[0].tolist() == [2, 7, 1000, 1001, 1002]


@pytest.mark.parametrize("metric", knn.KNN_METRICS)
def test_float_inputs_match_naive(metric):
    rng = np.random.default_rng(4)
    X_train = rng.normal(size=(5000, 9)) * 100 + 1000  # float64, far from the origin
    X_query = rng.normal(size=(20, 9)) * 100 + 1000
    distances, indices = knn.kneighbors(X_query, X_train, 4, metric=metric)
    expected_d, expected_i = _naive_kneighbors(X_query, X_train, 4, metric)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6)


@pytest.mark.parametrize("metric", knn.KNN_METRICS)
@pytest.mark.parametrize("chunk", [1, 3, 64, 1000])
def test_chunk_changes_nothing(metric, chunk):
    X_query, X_train = _tied_integers(n_train=5000, n_query=70, n_features=10, levels=5, seed=5)
    reference = knn.kneighbors(X_query, X_train, 7, metric=metric, chunk=70)
    result = knn.kneighbors(X_query, X_train, 7, metric=metric, chunk=chunk)
    np.testing.assert_array_equal(result[0], reference[0])
    np.testing.assert_array_equal(result[1], reference[1])


def test_cosine_zero_rows_are_at_distance_one():
    X_train = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    distances, indices = knn.kneighbors(np.array([[0.0, 0.0], [3.0, 0.0]]), X_train, 3, metric="cosine")
    np.testing.assert_array_equal(indices, [[0, 1, 2], [1, 0, 2]])  # 0 and 3 tie at 1 with row 2
    np.testing.assert_allclose(distances, [[1, 1, 1], [0, 1, 1]])


def test_images_give_the_neighbours_of_their_rows():
    X_query, X_train = _tied_integers(n_train=200, n_query=10, n_features=12, levels=4, seed=6)
    flat = knn.kneighbors(X_query, X_train, 3)
    shaped = knn.kneighbors(X_query.reshape(10, 3, 4), X_train.reshape(200, 3, 4), 3)
    np.testing.assert_array_equal(flat[1], shaped[1])
    np.testing.assert_array_equal(flat[0], shaped[0])


def test_k_equal_to_n_train_sorts_everything():
    distances, indices = knn.kneighbors(np.array([[4.0]]), TOY_TRAIN, 5)
    assert indices.tolist() == [[2, 3, 1, 0, 4]]


def test_no_queries():
    distances, indices = knn.kneighbors(np.empty((0, 1)), TOY_TRAIN, 2)
    assert distances.shape == (0, 2) and indices.shape == (0, 2)


def test_vote_tie_rules_by_hand():
    labels = np.array([[2, 1, 1, 2, 0], [3, 3, 0, 0, 1], [4, 4, 4, 0, 0]])
    distances = np.ones((3, 5))
    assert knn.vote(labels, distances, 5).tolist() == [1, 0, 4]  # ties: the lowest label
    # distance: 1/1 + 1/4 for label 2 against 1/2 + 1/2 for label 1
    labels = np.array([[2, 1, 1, 2]])
    assert knn.vote(labels, np.array([[1.0, 2.0, 2.0, 4.0]]), 3, weights="distance").tolist() == [2]
    # two exact copies with labels 3 and 1 share all the weight: a tie, the lower label 1 wins
    labels = np.array([[3, 1, 0, 0, 0]])
    assert knn.vote(labels, np.array([[0.0, 0.0, 0.5, 0.5, 0.5]]), 4, weights="distance").tolist() == [1]
    # missing neighbours (-1, as fmproto.search.ann pads) get no vote; a row with none gets -1
    labels = np.array([[1, -1, -1], [-1, -1, -1]])
    assert knn.vote(labels, np.array([[3.0, np.inf, np.inf]] * 2), 2, weights="distance").tolist() == [1, -1]
    assert knn.vote(labels, np.zeros((2, 3)), 2).tolist() == [1, -1]


@pytest.mark.parametrize("weights", knn.WEIGHTS)
def test_vote_matches_scikit_learn_rules(weights):
    from sklearn.utils.extmath import weighted_mode

    rng = np.random.default_rng(8)
    labels = rng.integers(0, 4, size=(400, 6))
    distances = rng.choice([0.0, 1.0, 2.0, 4.0], size=(400, 6), p=[0.05, 0.35, 0.3, 0.3])
    if weights == "uniform":
        w = np.ones_like(distances)
    else:  # scikit-learn 1.9, neighbors._base._get_weights
        with np.errstate(divide="ignore"):
            w = 1.0 / distances
        inf_mask = np.isinf(w)
        inf_row = np.any(inf_mask, axis=1)
        w[inf_row] = inf_mask[inf_row]
    expected = weighted_mode(labels, w, axis=1)[0].ravel().astype(np.int64)
    np.testing.assert_array_equal(knn.vote(labels, distances, 4, weights=weights), expected)


def test_predict_for_ks_equals_separate_predicts():
    X_query, X_train = _tied_integers(n_train=400, n_query=60, n_features=12, levels=4, seed=9)
    y_train = np.random.default_rng(9).integers(0, 3, size=400)
    distances, indices = knn.kneighbors(X_query, X_train, 9)
    for weights in knn.WEIGHTS:
        together = knn.predict_for_ks(indices, distances, y_train, 3, [9, 1, 4], weights=weights)
        assert list(together) == [9, 1, 4]
        for k, labels in together.items():
            np.testing.assert_array_equal(labels, knn.predict(X_query, X_train, y_train, 3, k=k, weights=weights))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: knn.kneighbors(TOY_TRAIN, TOY_TRAIN, 1, metric="mse"), r"metric must be one of .*'cosine'.*got 'mse'"),
        (lambda: knn.kneighbors(TOY_TRAIN, TOY_TRAIN, 0), r"k must be an integer in 1\.\.5.*got 0"),
        (lambda: knn.kneighbors(TOY_TRAIN, TOY_TRAIN, 6), r"k must be an integer in 1\.\.5.*got 6"),
        (lambda: knn.kneighbors(TOY_TRAIN, TOY_TRAIN, 2.0), r"k must be an integer.*got 2\.0"),
        (lambda: knn.kneighbors(TOY_TRAIN, TOY_TRAIN, 1, chunk=0), r"chunk must be an integer >= 1; got 0"),
        (lambda: knn.kneighbors(np.zeros((2, 3)), TOY_TRAIN, 1), r"X_query has 3 features but X_train has 1"),
        (lambda: knn.kneighbors(np.array([[np.nan]]), TOY_TRAIN, 1), r"X_query must be finite"),
        (lambda: knn.kneighbors(TOY_TRAIN.ravel(), TOY_TRAIN, 1), r"X_query must have shape \(n, n_features\)"),
        (lambda: knn.kneighbors(TOY_TRAIN, TOY_TRAIN.astype(str), 1), r"X_train must hold integers or floats; got dtype <U"),
        (lambda: knn.vote(TOY_LABELS[None], np.ones((1, 5)), 3, weights="gaussian"), r"weights must be one of 'uniform', 'distance'; got 'gaussian'"),
        (lambda: knn.vote(TOY_LABELS[None], np.ones((1, 5)), 2), r"neighbor_labels must lie in 0\.\.1 \(or -1 for missing\); got values in 0\.\.2"),
        (lambda: knn.vote(TOY_LABELS, np.ones(5), 3), r"neighbor_labels must be a 2-D integer array"),
        (lambda: knn.vote(TOY_LABELS[None], np.ones((1, 5)), 0), r"n_classes must be an integer >= 1; got 0"),
        (lambda: knn.vote(TOY_LABELS[None], np.ones((1, 4)), 3, weights="distance"), r"must have the shape of neighbor_labels \(1, 5\); got \(1, 4\)"),
        (lambda: knn.vote(TOY_LABELS[None], -np.ones((1, 5)), 3, weights="distance"), r"neighbor_distances must be >= 0"),
        (lambda: knn.predict(TOY_TRAIN, TOY_TRAIN, TOY_LABELS[:4], 3), r"y_train must be 1-D integer labels of length 5"),
        (lambda: knn.predict_for_ks(np.zeros((2, 3), int), np.ones((2, 3)), TOY_LABELS, 3, [1, 4]), r"ks must be .* in 1\.\.3 .*got \[1, 4\]"),
        (lambda: knn.predict_for_ks(np.zeros((2, 3), int), np.ones((2, 3)), TOY_LABELS, 3, []), r"ks must be a non-empty list"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.fixture(scope="module")
def fashion_sample(fashion_train, fashion_test):
    """10,000 training and 2,000 test images, drawn with a fixed seed."""
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(len(fashion_train[1]), 10_000, replace=False))
    test = np.sort(rng.choice(len(fashion_test[1]), 2_000, replace=False))
    return fashion_train[0][train], fashion_train[1][train], fashion_test[0][test], fashion_test[1][test]


@pytest.mark.slow
def test_predictions_equal_scikit_learn_on_fashion(fashion_sample):
    from sklearn.neighbors import KNeighborsClassifier

    X_train, y_train, X_test, y_test = fashion_sample
    distances, indices = knn.kneighbors(X_test, X_train, 10)
    classifier = KNeighborsClassifier(algorithm="brute").fit(X_train.reshape(len(X_train), -1).astype(np.float32), y_train)
    X_test_rows = X_test.reshape(len(X_test), -1).astype(np.float32)
    _, sk_indices = classifier.kneighbors(X_test_rows, n_neighbors=10)
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.sort(sk_indices, axis=1))  # same neighbour sets
    for weights in knn.WEIGHTS:
        ours = knn.predict_for_ks(indices, distances, y_train, 10, (1, 5, 10), weights=weights)
        for k, labels in ours.items():
            expected = classifier.set_params(n_neighbors=k, weights=weights).predict(X_test_rows)
            np.testing.assert_array_equal(labels, expected, err_msg=f"k={k}, weights={weights}")
    assert np.mean(ours[5] == y_test) > 0.80  # floor: 10,000 training images give about 0.83
