"""Error against training-set size: the doubling sizes, seeded subsamples and a power-law fit.

The model is ``error = 2**intercept * n**-slope``, a straight line on log-log axes:
``log2(error) = intercept - slope * log2(n)``. A positive ``slope`` means the error falls as the
training set grows; doubling ``n`` multiplies the error by ``2**-slope``.
"""

from dataclasses import dataclass

import numpy as np


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
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
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
        if not _is_int(value) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    if not _is_int(size) or not 0 <= size <= n_total:
        raise ValueError(f"size must be an integer in 0..{n_total} (n_total); got {size!r}")
    rng = np.random.default_rng([int(seed), int(repeat)])
    return np.sort(rng.permutation(int(n_total))[: int(size)]).astype(np.int64)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
