"""Error against training-set size: the doubling sizes, seeded subsamples and a power-law fit.

The model is ``error = 2**intercept * n**-slope``, a straight line on log-log axes:
``log2(error) = intercept - slope * log2(n)``. A positive ``slope`` means the error falls as the
training set grows; doubling ``n`` multiplies the error by ``2**-slope``.
"""

import time
from dataclasses import dataclass

import numpy as np

from fmproto.pipeline.checks import check_int, is_int
from fmproto.search.knn import kneighbors, predict_for_ks


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares line ``log2(error) = intercept - slope * log2(n)``.

    ``r2`` is the coefficient of determination of that line on the log2 errors (1.0 when the
    points lie on it exactly, including the flat case where every error is the same).
    """

    slope: float
    intercept: float
    r2: float


def fit_power_law(n: np.ndarray, error: np.ndarray) -> PowerLawFit:
    """Fit ``log2(error) = intercept - slope * log2(n)`` by ordinary least squares.

    Parameters
    ----------
    n : array-like of shape (n_points,)
        Training-set sizes, > 0. Repeated sizes (several random samples of one size) are fine.
    error : array-like of shape (n_points,)
        Error rates, > 0 and finite (an error of 0 has no logarithm).

    Returns
    -------
    PowerLawFit
        With at least 2 distinct sizes the line is unique.
    """
    n = np.asarray(n, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    if n.ndim != 1 or n.shape != error.shape:
        raise ValueError(f"n and error must be 1-D of the same length; got shapes {n.shape} and {error.shape}")
    if not np.all(np.isfinite(n) & (n > 0)):
        raise ValueError(f"n must be finite and > 0; got {n[~(np.isfinite(n) & (n > 0))][:3].tolist()}")
    if not np.all(np.isfinite(error) & (error > 0)):
        raise ValueError(f"error must be finite and > 0 (log2 of it is fitted); got "
                         f"{error[~(np.isfinite(error) & (error > 0))][:3].tolist()}")
    if len(np.unique(n)) < 2:
        raise ValueError(f"need at least 2 distinct sizes n to fit a line; got {np.unique(n).tolist()}")

    x, y = np.log2(n), np.log2(error)
    x_mean, y_mean = x.mean(), y.mean()
    gradient = np.sum((x - x_mean) * (y - y_mean)) / np.sum((x - x_mean) ** 2)
    intercept = y_mean - gradient * x_mean
    residual = np.sum((y - (intercept + gradient * x)) ** 2)
    total = np.sum((y - y_mean) ** 2)
    r2 = 1.0 - residual / total if total > 0 else 1.0  # flat errors: the flat line fits exactly
    return PowerLawFit(slope=float(-gradient), intercept=float(intercept), r2=float(r2))


def predict_error(fit: PowerLawFit, n) -> np.ndarray:
    """Error the fit predicts at size ``n`` (scalar or array, > 0): ``2**(intercept - slope*log2(n))``.

    Returns a float64 array of the shape of ``n`` (0-d for a scalar; ``float()`` takes it).
    """
    n = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(n) & (n > 0)):
        raise ValueError(f"n must be finite and > 0; got {n.ravel()[:3].tolist()}")
    return np.exp2(fit.intercept - fit.slope * np.log2(n))


def training_sizes(n_total: int, start: int = 200) -> list[int]:
    """Sizes ``start, 2*start, 4*start, ...`` up to ``n_total``, then ``n_total`` itself.

    ``n_total`` ends the list once, whether or not it is a power-of-two multiple of ``start``:
    ``training_sizes(48000) == [200, 400, ..., 25600, 48000]`` and
    ``training_sizes(51200) == [200, ..., 25600, 51200]``. With ``n_total <= start`` the list is
    ``[n_total]``.
    """
    for name, value in (("n_total", n_total), ("start", start)):
        check_int(value, name, low=1)
    sizes = []
    size = int(start)
    while size < n_total:
        sizes.append(size)
        size *= 2
    return sizes + [int(n_total)]


def sample_indices(n_total: int, size: int, seed: int, repeat: int = 0) -> np.ndarray:
    """Sorted random rows ``(size,)`` int64 out of ``range(n_total)``, without replacement.

    Sample ``repeat`` of a size is the first ``size`` entries of one permutation drawn from
    ``numpy.random.default_rng([seed, repeat])``, sorted. So the same ``(seed, repeat)`` gives the
    same rows on every run, the samples of one repeat are nested (the 200 rows lie inside the 400),
    and ``size == n_total`` gives every row. Sorting keeps the rows in their original order, so
    index tie rules downstream (the lower training index first) do not depend on the draw.
    """
    for name, value in (("n_total", n_total), ("seed", seed), ("repeat", repeat)):
        check_int(value, name, low=0)
    if not is_int(size) or not 0 <= size <= n_total:
        raise ValueError(f"size must be an integer in 0..{n_total} (n_total); got {size!r}")
    rng = np.random.default_rng([int(seed), int(repeat)])
    return np.sort(rng.permutation(int(n_total))[: int(size)]).astype(np.int64)


def error_curve(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    n_classes: int,
    sizes: list[int],
    ks: list[int],
    *,
    repeats: int,
    metric: str,
    weights: str,
    seed: int,
) -> tuple[list[dict], list[dict]]:
    """Validation error of exact kNN fitted on random training samples of each size.

    Each size below ``len(X_train)`` is drawn ``repeats`` times (``sample_indices``); the full
    training set is one fixed sample. One neighbour search of the largest k that the sample holds
    serves every k; a k larger than a sample is not measured on it (its rows start at the first
    size of at least k).

    Returns
    -------
    rows : list of dict
        One per (size, repeat, k with k <= size): ``n``, ``k``, ``repeat``, ``error``; deterministic.
    timings : list of dict
        One per (size, repeat): ``n``, ``repeat``, ``seconds`` of the search and votes.

    Raises
    ------
    ValueError
        If a k is not an integer in ``1..len(X_train)``, or a size is below every k (nothing to measure).
    """
    n_full = len(X_train)
    bad = [n for n in sizes if not is_int(n) or not 1 <= n <= n_full]
    if not sizes or bad:
        raise ValueError(f"sizes must be integers in 1..{n_full} (the training rows); got {bad[:3] or sizes!r}")
    bad = [k for k in ks if not is_int(k) or not 1 <= k <= n_full]
    if not ks or bad:
        raise ValueError(f"ks must be integers in 1..{n_full} (the training rows); got {bad[:3] or ks!r}")
    if min(sizes) < min(ks):
        raise ValueError(f"size {min(sizes)} is below every k (the smallest is {min(ks)}): nothing to measure")
    rows, timings = [], []
    for n in sorted(sizes):
        usable = [k for k in sorted(ks) if k <= n]
        for repeat in range(repeats if n < n_full else 1):
            sample = sample_indices(n_full, n, seed=seed, repeat=repeat)
            start = time.perf_counter()
            distances, indices = kneighbors(X_valid, X_train[sample], usable[-1], metric=metric)
            predictions = predict_for_ks(indices, distances, y_train[sample], n_classes, usable, weights=weights)
            timings.append({"n": n, "repeat": repeat, "seconds": time.perf_counter() - start})
            rows += [{"n": n, "k": k, "repeat": repeat, "error": float(np.mean(pred != y_valid))}
                     for k, pred in predictions.items()]
    return rows, timings


def summarize_curve(rows: list[dict], ks: list[int], n_full: int) -> tuple[dict, dict]:
    """Fit each k on its mean errors below ``n_full``; the metrics and the curves to draw.

    The full-size figures (``measured_error_full``, ``best_k``, the prediction at ``n_full``) exist
    only when the rows reach ``n_full``; otherwise they are left out, never NaN. A k whose errors
    include 0 below full size (toy data) has no fit: its fit figures are None.

    Returns
    -------
    metrics : dict
        ``n_full``, ``by_k`` (per k: ``measured_error_full`` when measured, ``slope``, ``intercept``,
        ``r2``, ``predicted_error_full``), and when the full size was measured ``best_k`` (lowest
        full-size error, then the smaller k), ``measured_error_full`` and ``fit`` of that k.
    series : dict
        ``{"k=K": (n, mean error)}`` and ``{"fit k=K": (n, predicted error)}`` for the picture.
    """
    by_k, series = {}, {}
    for k in ks:
        n = np.array(sorted({r["n"] for r in rows if r["k"] == k}), dtype=np.int64)
        if not len(n):
            continue
        error = np.array([np.mean([r["error"] for r in rows if r["k"] == k and r["n"] == size]) for size in n])
        below = n < n_full
        # log2(0) has no fit: a perfect small sample (toy data) leaves that k unfitted.
        fit = fit_power_law(n[below], error[below]) if below.sum() >= 2 and np.all(error[below] > 0) else None
        figures = {
            "predicted_error_full": round(float(predict_error(fit, n_full)), 5) if fit else None,
            "slope": round(fit.slope, 5) if fit else None,
            "intercept": round(fit.intercept, 5) if fit else None,
            "r2": round(fit.r2, 5) if fit else None,
        }
        if n[-1] == n_full:
            figures["measured_error_full"] = round(float(error[-1]), 5)
        by_k[str(k)] = figures
        series[f"k={k}"] = (n, error)
        if fit:
            grid = np.array([n[0], n_full])
            series[f"fit k={k}"] = (grid, predict_error(fit, grid))
    metrics = {"n_full": int(n_full), "by_k": by_k}
    measured = [k for k in ks if "measured_error_full" in by_k.get(str(k), {})]
    if measured:
        best = min(measured, key=lambda k: (by_k[str(k)]["measured_error_full"], k))
        chosen = by_k[str(best)]
        metrics.update(best_k=best, measured_error_full=chosen["measured_error_full"],
                       fit={key: chosen[key] for key in ("slope", "intercept", "r2", "predicted_error_full")})
    return metrics, series
