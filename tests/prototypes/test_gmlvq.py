"""fmproto.prototypes.gmlvq: the gradients against finite differences of an independent cost, a metric learned where
the euclidean one fails, and the same bytes whatever the BLAS does."""

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fmproto.evaluation import estimators
from fmproto.prototypes import gmlvq as G


def stripes(n: int, seed: int):
    """Two classes told apart by feature 0 alone (at +-1), with feature 1 noise of scale 20 that a euclidean
    nearest-prototype rule, started from k-means, mostly listens to."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = np.column_stack([2.0 * y - 1 + rng.normal(scale=0.3, size=n), rng.normal(scale=20, size=n),
                         rng.normal(scale=1, size=n)]).astype(np.float32)
    return X, y


def batch_cost(W, omega, labels, X, y, steepness):
    """The summed cost, written out independently: every distance by an explicit difference, in float64."""
    diff = X[:, None, :] - W[None, :, :]  # (b, p, n_features)
    projected = np.einsum("rf,bpf->bpr", omega, diff)
    D = (projected**2).sum(-1)
    same = labels[None] == y[:, None]
    d_plus, d_minus = np.where(same, D, np.inf).min(1), np.where(same, np.inf, D).min(1)
    mu = (d_plus - d_minus) / (d_plus + d_minus)
    return float((1 / (1 + np.exp(-steepness * mu))).sum())


def test_the_gradients_are_those_of_the_cost():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 5)), np.arange(40) % 3
    W, labels = rng.normal(size=(6, 5)), np.arange(6) % 3
    omega = rng.normal(size=(4, 5))
    W_grad, omega_grad = G._gradients(W, omega, labels, X, y, 3.0)
    h = 1e-6
    for array, grad in ((W, W_grad), (omega, omega_grad)):
        for index in [(0, 0), (2, 3), (3, 4), (1, 1)]:
            saved = array[index]
            array[index] = saved + h
            up = batch_cost(W, omega, labels, X, y, 3.0)
            array[index] = saved - h
            down = batch_cost(W, omega, labels, X, y, 3.0)
            array[index] = saved
            assert grad[index] == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-6)


def test_exp_and_the_sigmoid_agree_with_the_math_library():
    t = np.concatenate([np.linspace(-700, 700, 20001), [0.0, 1e-300, -1e-300, 0.5, -0.5]])
    expected = np.array([math.exp(v) for v in t])
    assert np.all(np.abs(G._exp(t) - expected) <= 4e-16 * expected)
    s = np.linspace(-50, 50, 1001)
    assert np.allclose(G._sigmoid(s), [1 / (1 + math.exp(-v)) for v in s], rtol=1e-15, atol=0)
    low, high = G._sigmoid(np.array([-1e6, 1e6]))  # clipped where exp would overflow
    assert 0 < low < 1e-300 and high == 1.0


def test_learns_the_metric_where_the_euclidean_one_fails():
    X, y = stripes(400, seed=1)
    X_new, y_new = stripes(400, seed=2)
    start = estimators.make("kmeans", {"kmeans": {"n_prototypes": np.array([2, 2]), "metric": "sqeuclidean"}})
    start.fit(X, y, 2)
    model = estimators.make("gmlvq", {"gmlvq": {"n_prototypes": np.array([2, 2]), "epochs": 40,
                                                "learning_rate": 0.03}}).fit(X, y, 2)
    euclidean, learned = (np.mean(m.predict(X_new) == y_new) for m in (start, model))
    assert euclidean < 0.8 and learned > 0.97
    relevance = model.omega_.T.astype(np.float64) @ model.omega_  # Lambda: how much each feature counts
    assert relevance[0, 0] > 4 * max(relevance[1, 1], relevance[2, 2])  # the identity started them equal


def test_the_model_decides_by_the_nearest_prototype_after_the_projection():
    X, y = stripes(200, seed=3)
    model = estimators.make("gmlvq", {"gmlvq": {"n_prototypes": np.array([3, 3]), "rank": 2, "epochs": 5}}).fit(X, y, 2)
    assert model.omega_.shape == (2, 3) and model.prototypes_.shape == (6, 3)
    omega, W = model.omega_.astype(np.float64), model.prototypes_.astype(np.float64)
    D = (np.einsum("rf,npf->npr", omega, X[:, None].astype(np.float64) - W[None]) ** 2).sum(-1)  # brute force
    np.testing.assert_array_equal(model.predict(X), model.prototype_labels_[np.argmin(D, axis=1)])
    assert np.allclose(model.transform(X), X @ model.omega_.T, rtol=1e-5, atol=1e-5)


def test_the_same_bytes_on_one_or_two_blas_threads_and_a_rerun():
    """One and two BLAS threads split the products differently: on the integer grid the sums are exact."""
    X, y = stripes(300, seed=4)
    start = np.array([[-1, 0, 0], [-1, 5, 0], [1, 0, 0], [1, -5, 0]], np.float32)

    def fit(threads):
        with threadpool_limits(threads, user_api="blas"):
            return G.gmlvq(start, np.array([0, 0, 1, 1]), X, y, epochs=3, rank=2, batch_size=64, seed=7)

    one, two, again = fit(1), fit(2), fit(1)
    for a, b, c in zip(one, two, again):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    other_seed = G.gmlvq(start, np.array([0, 0, 1, 1]), X, y, epochs=3, rank=2, batch_size=64, seed=8)
    assert other_seed[1].tobytes() != one[1].tobytes()


def test_no_epochs_leaves_the_prototypes_and_starts_from_the_identity():
    X, y = stripes(50, seed=5)
    start = np.array([[-1, 0, 0], [1, 0, 0]], np.float32)
    W, omega = G.gmlvq(start, np.array([0, 1]), X, y, epochs=0, seed=0)
    assert W.tobytes() == start.tobytes() and np.array_equal(omega, np.eye(3))
    assert G.gmlvq(start, np.array([0, 1]), X, y, epochs=0, rank=2, seed=0)[1].shape == (2, 3)


def test_units_do_not_matter():
    """Rows scaled by a power of two give the same prototypes scaled alike and the same projection."""
    X, y = stripes(200, seed=6)
    start = np.array([[-1, 0, 0], [1, 0, 0]], np.float32)
    W, omega = G.gmlvq(start, np.array([0, 1]), X, y, epochs=2, seed=0)
    W_big, omega_big = G.gmlvq(start * 256, np.array([0, 1]), X * 256, y, epochs=2, seed=0)
    assert (W * 256).tobytes() == W_big.tobytes() and omega.tobytes() == omega_big.tobytes()


@pytest.mark.parametrize("change, match", [
    ({"rank": 4}, "rank must be"),
    ({"steepness": float("nan")}, "steepness must be > 0 and finite"),
    ({"learning_rate": 0}, "learning_rate must be > 0"),
    ({"epochs": -1}, "epochs must be"),
    ({"prototype_labels": np.array([0, 0])}, "class 1 has images but no prototype"),
    ({"prototype_labels": np.array([0])}, "do not match"),
])
def test_bad_arguments_are_refused(change, match):
    X, y = stripes(20, seed=0)
    arguments = {"prototypes": np.array([[-1, 0, 0], [1, 0, 0]], np.float32), "prototype_labels": np.array([0, 1]),
                 "X": X, "y": y, "epochs": 1, "seed": 0, **change}
    with pytest.raises(ValueError, match=match):
        G.gmlvq(**arguments)


def test_one_class_is_refused():
    X, y = stripes(20, seed=0)
    with pytest.raises(ValueError, match="at least two classes"):
        G.gmlvq(np.zeros((2, 3), np.float32), np.array([0, 0]), X, np.zeros(20, np.int64), epochs=1, seed=0)
