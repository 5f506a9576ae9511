"""Error against training-set size: doubling sizes, seeded subsamples and a power-law fit
``error = 2**intercept * n**-slope`` (a positive slope: the error falls as ``n`` grows)."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fmproto.evaluation import plots
from fmproto.pipeline.checks import check_int, is_int
from fmproto.search.engine import KnnIndex
from fmproto.search.knn import kneighbors, predict_for_ks


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares ``log2(error) = intercept - slope * log2(n)``; ``r2`` of it on the log2 errors (flat: 1)."""

    slope: float
    intercept: float
    r2: float


def fit_power_law(n: np.ndarray, error: np.ndarray) -> PowerLawFit:
    """``PowerLawFit`` of finite ``n > 0`` (2 distinct at least) and ``error > 0``."""
    n, error = np.asarray(n, dtype=np.float64), np.asarray(error, dtype=np.float64)
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
    """``2**(intercept - slope*log2(n))``, float64 of the shape of ``n`` (> 0; 0-d for a scalar)."""
    n = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(n) & (n > 0)):
        raise ValueError(f"n must be finite and > 0; got {n.ravel()[:3].tolist()}")
    return np.exp2(fit.intercept - fit.slope * np.log2(n))


def training_sizes(n_total: int, start: int = 200) -> list[int]:
    """Sizes ``start, 2*start, ...`` below ``n_total``, then ``n_total``: ``[200, ..., 25600, 48000]``; ``[n_total]`` if small."""
    n_total = check_int(n_total, "n_total", low=1)
    sizes, size = [], check_int(start, "start", low=1)
    while size < n_total:
        sizes.append(size)
        size *= 2
    return sizes + [n_total]


def sample_indices(n_total: int, size: int, seed: int, repeat: int = 0) -> np.ndarray:
    """The first ``size`` of a permutation of ``range(n_total)`` by ``default_rng([seed, repeat])``, sorted (so
    index tie rules downstream do not depend on the draw) int64: samples of one repeat are nested."""
    for name, value in (("n_total", n_total), ("seed", seed), ("repeat", repeat)):
        check_int(value, name, low=0)
    if not is_int(size) or not 0 <= size <= n_total:
        raise ValueError(f"size must be an integer in 0..{n_total} (n_total); got {size!r}")
    rng = np.random.default_rng([int(seed), int(repeat)])
    return np.sort(rng.permutation(int(n_total))[: int(size)]).astype(np.int64)


def error_curve(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray, y_valid: np.ndarray, n_classes: int,
                sizes: list[int], ks: list[int], *, repeats: int, metric: str, weights: str, seed: int,
                on_search: Callable[[int, int], None] | None = None,
                engine: Callable[[int], KnnIndex] = KnnIndex) -> tuple[list[dict], list[dict]]:
    """Validation error of exact kNN on random training samples, ``(rows, timings)``: sizes below ``len(X_train)``
    drawn ``repeats`` times, the full set once, one search a sample. ``rows``: ``n, k, repeat, error``; ``timings``:
    ``n, repeat, seconds``. ``ValueError`` for a k or size outside ``1..len(X_train)``, or a size below every k.
    ``on_search(done, total)``: called after each search, with the searches done and all of them. ``engine``:
    ``knn.kneighbors``'s."""
    n_full = len(X_train)
    for name, values in (("sizes", sizes), ("ks", ks)):
        bad = [v for v in values if not is_int(v) or not 1 <= v <= n_full]
        if not values or bad:
            raise ValueError(f"{name} must be integers in 1..{n_full} (the training rows); got {bad[:3] or values!r}")
    if min(sizes) < min(ks):
        raise ValueError(f"size {min(sizes)} is below every k (the smallest is {min(ks)}): nothing to measure")
    rows, timings = [], []
    total = sum(repeats if n < n_full else 1 for n in sizes)
    for n in sorted(sizes):
        usable = [k for k in sorted(ks) if k <= n]
        for repeat in range(repeats if n < n_full else 1):
            sample = sample_indices(n_full, n, seed=seed, repeat=repeat)
            start = time.perf_counter()
            distances, indices = kneighbors(X_valid, X_train[sample], usable[-1], metric=metric, engine=engine)
            predictions = predict_for_ks(indices, distances, y_train[sample], n_classes, usable, weights=weights)
            timings.append({"n": n, "repeat": repeat, "seconds": time.perf_counter() - start})
            rows += [{"n": n, "k": k, "repeat": repeat, "error": float(np.mean(pred != y_valid))}
                     for k, pred in predictions.items()]
            if on_search is not None:
                on_search(len(timings), total)
    return rows, timings


def summarize_curve(rows: list[dict], ks: list[int], n_full: int) -> tuple[dict, dict]:
    """Fit each k on its mean errors below ``n_full``: ``(metrics, series)``. ``metrics``: ``n_full``, ``by_k``
    (``slope``, ``intercept``, ``r2``, ``predicted_error_full``: None after an error of 0; ``measured_error_full``),
    and if the full size was measured ``best_k`` (ties: the smaller k), its ``measured_error_full`` and ``fit``.
    ``series``: ``{"k=K": (n, mean error), "fit k=K": (n, predicted)}`` to draw."""
    by_k, series = {}, {}
    for k in ks:
        n = np.array(sorted({r["n"] for r in rows if r["k"] == k}), dtype=np.int64)
        if not len(n):
            continue
        error = np.array([np.mean([r["error"] for r in rows if r["k"] == k and r["n"] == size]) for size in n])
        below = n < n_full
        # log2(0) has no fit: a perfect small sample (toy data) leaves that k unfitted.
        fit = fit_power_law(n[below], error[below]) if below.sum() >= 2 and np.all(error[below] > 0) else None
        figures = {"predicted_error_full": round(float(predict_error(fit, n_full)), 5) if fit else None}
        figures.update({key: round(getattr(fit, key), 5) if fit else None for key in ("slope", "intercept", "r2")})
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


def seconds_by_n(timings: list[dict]) -> dict[str, float]:
    """Mean ``seconds`` of ``error_curve``'s timings by size, ``{str(n): seconds}`` rounded to 4 places."""
    sizes = sorted({t["n"] for t in timings})
    return {str(n): round(float(np.mean([t["seconds"] for t in timings if t["n"] == n])), 4) for n in sizes}


def summary(metrics: dict, timings: list[dict]) -> str:
    """Two lines on ``summarize_curve``'s metrics and ``error_curve``'s timings."""
    sizes = [t["n"] for t in timings]
    if "best_k" in metrics:
        fit = metrics["fit"]
        predicted = (f"predicted {fit['predicted_error_full']:.4f} (slope {fit['slope']:.3f})"
                     if fit["slope"] is not None else "no fit (an error of 0 below full size)")
        first = f"best k {metrics['best_k']}: measured full-size error {metrics['measured_error_full']:.4f}, {predicted}"
    else:
        first = f"sizes stop at {sizes[-1]:,} below the full split ({metrics['n_full']:,}): no full-size figures"
    return f"{first}\n{len(timings)} runs over sizes {sizes[0]:,}..{sizes[-1]:,}; largest search {timings[-1]['seconds']:.1f} s"


def curve_figure(series: dict, metric: str):
    """``summarize_curve``'s series drawn on log-log axes, fits dashed in their k's colour."""
    return plots.lines(series, xlabel="training images", ylabel="validation error", loglog=True,
                       title=f"kNN ({metric}) error against training size; dashed: fit",
                       dashed=[name for name in series if name.startswith("fit")],
                       colour_of={name: name.removeprefix("fit ") for name in series})
