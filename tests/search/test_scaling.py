"""Power-law fit, doubling sizes and seeded subsamples for the kNN scaling curve."""

import numpy as np
import pytest

from fmproto.search.scaling import (PowerLawFit, error_curve, fit_power_law, predict_error, sample_indices,
                             summarize_curve, training_sizes)


def test_fit_recovers_an_exact_power_law():
    n = np.array([200, 400, 800, 1600, 3200, 6400])
    error = 2.0**1.5 * n**-0.35  # log2(error) = 1.5 - 0.35 log2(n)
    fit = fit_power_law(n, error)
    assert fit.slope == pytest.approx(0.35, abs=1e-12)
    assert fit.intercept == pytest.approx(1.5, abs=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(predict_error(fit, n), error, rtol=1e-12)
    assert float(predict_error(fit, 12800)) == pytest.approx(2.0**1.5 * 12800**-0.35, rel=1e-12)


def test_fit_with_repeats_and_noise():
    n = np.repeat([200, 400, 800, 1600], 3)
    noise = np.tile([0.9, 1.0, 1.1], 4)
    fit = fit_power_law(n, 0.5 * n**-0.2 * noise)
    # the noise is the same at every size, so it moves the intercept only, not the slope
    assert fit.slope == pytest.approx(0.2, abs=1e-12)
    assert 0 < fit.r2 < 1
    assert isinstance(fit, PowerLawFit) and isinstance(fit.slope, float)


def test_flat_errors_fit_exactly():
    fit = fit_power_law([100, 200], [0.1, 0.1])
    assert fit.slope == pytest.approx(0.0, abs=1e-12) and fit.r2 == 1.0


def test_training_sizes():
    assert training_sizes(48000) == [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 48000]
    assert training_sizes(51200) == [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200]
    assert training_sizes(1000, start=250) == [250, 500, 1000]
    assert training_sizes(150) == [150]


def test_sample_indices_are_seeded_sorted_and_nested():
    a = sample_indices(1000, 200, seed=3, repeat=1)
    np.testing.assert_array_equal(a, sample_indices(1000, 200, seed=3, repeat=1))
    assert a.dtype == np.int64 and len(np.unique(a)) == 200 and np.all(np.diff(a) > 0)
    assert set(a) <= set(sample_indices(1000, 400, seed=3, repeat=1))  # nested across sizes
    assert not np.array_equal(a, sample_indices(1000, 200, seed=3, repeat=2))
    assert not np.array_equal(a, sample_indices(1000, 200, seed=4, repeat=1))
    np.testing.assert_array_equal(sample_indices(50, 50, seed=0), np.arange(50))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fit_power_law([100, 200], [0.1, 0.0]), r"error must be finite and > 0 .*got \[0\.0\]"),
        (lambda: fit_power_law([100, 200], [0.1, -0.2]), r"error must be finite and > 0"),
        (lambda: fit_power_law([100, 100, 100], [0.1, 0.2, 0.3]), r"at least 2 distinct sizes n.*got \[100\.0\]"),
        (lambda: fit_power_law([0, 100], [0.1, 0.2]), r"n must be finite and > 0; got \[0\.0\]"),
        (lambda: fit_power_law([100, 200, 400], [0.1, 0.2]), r"same length; got shapes \(3,\) and \(2,\)"),
        (lambda: predict_error(PowerLawFit(0.3, 1.0, 1.0), 0), r"n must be finite and > 0"),
        (lambda: training_sizes(0), r"n_total must be an integer >= 1; got 0"),
        (lambda: training_sizes(1000, start=2.5), r"start must be an integer >= 1; got 2\.5"),
        (lambda: sample_indices(100, 101, seed=0), r"size must be an integer in 0\.\.100 \(n_total\); got 101"),
        (lambda: sample_indices(100, 10, seed=-1), r"seed must be an integer >= 0; got -1"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _naive_knn_error(X_train, y_train, X_valid, y_valid, k):
    """Reference: float64 distances, neighbours by (distance, index), majority vote, lowest label on ties."""
    d = ((X_valid[:, None, :].astype(np.float64) - X_train[None, :, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(X_train)), d.shape), d), axis=1)[:, :k]
    votes = np.array([np.bincount(y_train[row], minlength=3) for row in order])
    return float(np.mean(votes.argmax(axis=1) != y_valid))


def test_error_curve_against_a_naive_search():
    rng = np.random.default_rng(5)
    X_train, y_train = rng.normal(size=(120, 6)), rng.integers(0, 3, 120)
    X_valid, y_valid = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    rows, timings = error_curve(X_train, y_train, X_valid, y_valid, 3, [30, 60, 120], [1, 3], repeats=2,
                                metric="euclidean", weights="uniform", seed=4)
    assert [(r["n"], r["k"], r["repeat"]) for r in rows] == [
        (30, 1, 0), (30, 3, 0), (30, 1, 1), (30, 3, 1), (60, 1, 0), (60, 3, 0), (60, 1, 1), (60, 3, 1),
        (120, 1, 0), (120, 3, 0)]  # the full set is one sample
    assert [(t["n"], t["repeat"]) for t in timings] == [(30, 0), (30, 1), (60, 0), (60, 1), (120, 0)]
    for r in rows:
        sample = sample_indices(120, r["n"], seed=4, repeat=r["repeat"])
        assert r["error"] == _naive_knn_error(X_train[sample], y_train[sample], X_valid, y_valid, r["k"])


def test_error_curve_measures_each_k_from_the_first_size_that_holds_it():
    rng = np.random.default_rng(6)
    X_train, y_train = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    X_valid, y_valid = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    rows, timings = error_curve(X_train, y_train, X_valid, y_valid, 3, [10, 30, 60], [1, 20], repeats=1,
                                metric="euclidean", weights="uniform", seed=0)
    assert [(r["n"], r["k"]) for r in rows] == [(10, 1), (30, 1), (30, 20), (60, 1), (60, 20)]
    assert [t["n"] for t in timings] == [10, 30, 60]  # every size is timed: no empty mean later
    for r in rows:
        sample = sample_indices(60, r["n"], seed=0, repeat=0)
        assert r["error"] == _naive_knn_error(X_train[sample], y_train[sample], X_valid, y_valid, r["k"])


@pytest.mark.parametrize(("sizes", "ks", "match"), [
    ([10, 60], [1, 61], r"ks must be integers in 1\.\.60 \(the training rows\); got \[61\]"),
    ([10, 60], [0, 5], r"ks must be integers in 1\.\.60 \(the training rows\); got \[0\]"),
    ([10, 60], [], r"ks must be integers in 1\.\.60"),
    ([10, 60], [20, 30], r"size 10 is below every k \(the smallest is 20\): nothing to measure"),
])
def test_error_curve_refuses_ks_it_cannot_measure(sizes, ks, match):
    X, y = np.zeros((60, 2)), np.zeros(60, int)
    with pytest.raises(ValueError, match=match):
        error_curve(X, y, X[:5], y[:5], 2, sizes, ks, repeats=1, metric="euclidean", weights="uniform", seed=0)


def test_summarize_curve_fits_each_k_and_picks_the_best():
    rows = [{"n": n, "k": k, "repeat": 0, "error": e} for n, k, e in [
        (100, 1, 0.4), (200, 1, 0.2), (400, 1, 0.15), (100, 5, 0.3), (200, 5, 0.3), (400, 5, 0.15)]]
    metrics, series = summarize_curve(rows, [1, 5], 400)
    fit = fit_power_law(np.array([100, 200]), np.array([0.4, 0.2]))
    assert metrics["by_k"]["1"]["slope"] == round(fit.slope, 5) == 1.0
    assert metrics["by_k"]["1"]["predicted_error_full"] == 0.1
    assert metrics["best_k"] == 1 and metrics["measured_error_full"] == 0.15  # a tie goes to the smaller k
    assert set(series) == {"k=1", "k=5", "fit k=1", "fit k=5"}


def test_summarize_curve_below_the_full_size_has_no_full_figures():
    rows = [{"n": n, "k": 1, "repeat": 0, "error": e} for n, e in [(100, 0.4), (200, 0.2)]]
    metrics, _ = summarize_curve(rows, [1], 400)
    assert set(metrics) == {"n_full", "by_k"} and "measured_error_full" not in metrics["by_k"]["1"]
    assert metrics["by_k"]["1"]["predicted_error_full"] == 0.1
