"""Distances to the few prototypes that change every k-means or GLVQ step (refitting a ``KnnIndex`` made k-means
3x slower): float32 blocks through BLAS, whose rounding ``exact_nearest`` and ``exact_minimum`` bound to pick
the pairs ``exact_distances`` measures in float64, so that no result depends on the BLAS."""

from typing import Literal

import numpy as np

from fmproto.search.rounding import float32_product_error

Metric = Literal["sqeuclidean", "euclidean", "mse", "cosine", "manhattan"]
METRICS: tuple[str, ...] = ("sqeuclidean", "euclidean", "mse", "cosine", "manhattan")
# Metrics exact_nearest screens; euclidean and mse rank rows as sqeuclidean does.
EXACT_METRICS: tuple[str, ...] = ("sqeuclidean", "cosine", "manhattan")

_MANHATTAN_BLOCK_ELEMENTS = 1 << 24  # of the (n_x, block, n_features) difference manhattan builds: 64 MB
_EXACT_BLOCK_ELEMENTS = 1 << 16  # float64 elements exact_distances measures at once: L2-sized (4 MB: 40% slower)
_GROUP_MIN = 16  # exact_distances broadcasts a row of Y against its pairs when it has this many on average


def check_metric(metric: str, allowed: tuple[str, ...] = METRICS) -> None:
    if metric not in allowed:
        raise ValueError(f"metric must be one of {', '.join(map(repr, allowed))}; got {metric!r}")


def as_rows(images: np.ndarray) -> np.ndarray:
    """Flatten ``(n, H, W)`` (or any ``(n, ...)``) images to float32 rows ``(n, H*W)``."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32, copy=False)


def squared_norms(X: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 norms, shape ``(n,)``, in the dtype of ``X``."""
    return np.einsum("ij,ij->i", X, X)


def pairwise_distances(X: np.ndarray, Y: np.ndarray, metric: Metric = "euclidean", *,
                       Y_sq_norms: np.ndarray | None = None, X_sq_norms: np.ndarray | None = None) -> np.ndarray:
    """Float32 distances ``(n_x, n_y)`` between the rows of ``X (n_x, d)`` and ``Y (n_y, d)``: ``mse`` is squared
    euclidean over ``d``, ``cosine`` is ``1 - cos`` (zero rows: 1); ``*_sq_norms``: precomputed ``squared_norms``."""
    check_metric(metric)
    X, Y = _row_pair(X, Y)
    if metric == "manhattan":  # no product form: blocks of Y bound the 3-D difference
        out = np.empty((len(X), len(Y)), dtype=np.float32)
        block = max(1, _MANHATTAN_BLOCK_ELEMENTS // max(1, len(X) * X.shape[1]))
        for start in range(0, len(Y), block):
            out[:, start : start + block] = np.abs(X[:, None, :] - Y[None, start : start + block, :]).sum(axis=2)
        return out
    gram = X @ Y.T  # (n_x, n_y), the BLAS part
    if metric == "cosine":
        x_norm = np.sqrt(squared_norms(X))
        y_norm = np.sqrt(Y_sq_norms if Y_sq_norms is not None else squared_norms(Y))
        x_norm[x_norm == 0] = np.inf  # zero rows: cosine similarity 0, distance 1
        y_norm[y_norm == 0] = np.inf
        gram /= x_norm[:, None]
        gram /= y_norm[None, :]
        np.subtract(1.0, gram, out=gram)
        return np.clip(gram, 0.0, 2.0, out=gram)
    # d2 = |x|^2 - 2 x.y + |y|^2 in place; float32 rounding can dip below 0.
    gram *= -2.0
    gram += (X_sq_norms if X_sq_norms is not None else squared_norms(X))[:, None]
    gram += (Y_sq_norms if Y_sq_norms is not None else squared_norms(Y))[None, :]
    np.maximum(gram, 0.0, out=gram)
    if metric == "euclidean":
        np.sqrt(gram, out=gram)
    elif metric == "mse":
        gram /= np.float32(X.shape[1])
    return gram


def _row_pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X, Y = as_rows(X), as_rows(Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but Y has {Y.shape[1]}")
    return X, Y


def exact_distances(X: np.ndarray, Y: np.ndarray, metric: Metric = "sqeuclidean", *,
                    rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
    """Float64 distances ``(n_pairs,)`` of the pairs ``X[rows[k]], Y[cols[k]]`` (without them: row ``i`` of ``X``
    with row ``i`` of ``Y``, or with the one row of ``Y``), by ``exact_pairs`` on the float32 rows: no BLAS, so a
    pair's value depends on its two rows alone (exact on integer pixels)."""
    check_metric(metric)
    X, Y = _row_pair(X, Y)
    if (rows is None) != (cols is None):
        raise ValueError("give both rows and cols, or neither")
    n_features = X.shape[1]
    block = max(1, _EXACT_BLOCK_ELEMENTS // max(1, n_features))  # pairs measured at once
    if rows is None:
        if len(Y) not in (1, len(X)):
            raise ValueError(f"without rows and cols, Y must have 1 row or as many as X ({len(X)}); got {len(Y)}")
        rows = np.arange(len(X))
        cols = rows if len(Y) > 1 else np.zeros(len(X), dtype=np.intp)
    rows, cols = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
    if rows.ndim != 1 or rows.shape != cols.shape:
        raise ValueError(f"rows and cols must be 1-D and of one length; got shapes {rows.shape} and {cols.shape}")
    out = np.empty(len(rows), dtype=np.float64)
    sorted_cols = np.sort(cols)
    n_distinct = int(np.count_nonzero(sorted_cols[1:] != sorted_cols[:-1])) + 1 if len(cols) else 0
    if n_distinct and len(cols) >= _GROUP_MIN * n_distinct:
        # Many pairs a row of Y: each row of Y is broadcast against its rows of X, not copied.
        order = np.argsort(cols, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(cols[order])) + 1):
            y = Y[cols[group[0]]][None, :]
            for start in range(0, len(group), block):
                pairs = group[start : start + block]
                out[pairs] = exact_pairs(X[rows[pairs]], y, metric)
    else:
        for start in range(0, len(rows), block):
            pairs = slice(start, start + block)
            out[pairs] = exact_pairs(X[rows[pairs]], Y[cols[pairs]], metric)
    if metric == "euclidean":
        np.sqrt(out, out=out)
    elif metric == "mse":
        out /= n_features
    return out


def exact_pairs(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """The naive float64 distances (euclidean family: squared) of rows ``a`` and ``b`` (``len(a)`` rows or one),
    which ``KnnIndex`` and ``exact_distances`` both measure with."""
    if metric == "cosine":
        a64, b64 = a.astype(np.float64), np.broadcast_to(b.astype(np.float64), a.shape)
        dot = np.einsum("ij,ij->i", a64, b64)
        norms = np.sqrt(np.einsum("ij,ij->i", a64, a64)) * np.sqrt(np.einsum("ij,ij->i", b64, b64))
        cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)  # zero rows: distance 1
        return np.clip(1.0 - cos, 0.0, 2.0)
    # The difference form: no cancellation, and exact for float32 rows of similar scale.
    diff = a.astype(np.float64)
    diff -= b if len(b) > 1 else b.astype(np.float64)  # (a cast of one row beats casting it for every row)
    if metric == "manhattan":
        return np.abs(diff, out=diff).sum(axis=1)
    return np.einsum("ij,ij->i", diff, diff)


def exact_nearest(X: np.ndarray, Y: np.ndarray, D: np.ndarray, metric: str = "sqeuclidean", *,
                  allowed: np.ndarray | None = None, X_sq_norms: np.ndarray | None = None,
                  Y_sq_norms: np.ndarray | None = None, return_distance: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The row of ``Y (n_y, d)`` nearest each row of ``X (n_x, d)`` by ``exact_distances``, screened by ``D``.

    ``D (n_x, n_y)``: ``pairwise_distances(X, Y, metric)``; a row whose best entry beats the rest by over
    ``screening_error`` is settled by it, others measure their possible winners (all, after a NaN or inf).
    ``allowed (n_x, n_y)``: the columns a row may choose. Returns int64 ``index (n_x,)``, lowest on ties, -1
    with none allowed, and float64 ``distance`` (inf where -1; None without ``return_distance``)."""
    check_metric(metric, EXACT_METRICS)
    X, Y = as_rows(X), as_rows(Y)
    D = np.asarray(D)
    n_x, n_y = len(X), len(Y)
    if D.shape != (n_x, n_y):
        raise ValueError(f"D must have shape {(n_x, n_y)} (rows of X by rows of Y); got {D.shape}")
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != D.shape:
            raise ValueError(f"allowed must have the shape of D {D.shape}; got {allowed.shape}")
    index = np.full(n_x, -1, dtype=np.int64)
    distance = np.full(n_x, np.inf) if return_distance else None
    if n_x == 0 or n_y == 0:
        return index, distance
    screened = D if allowed is None else np.where(allowed, D, np.float32(np.inf))
    best = np.argmin(screened, axis=1)
    absolute, relative = screening_error(metric, X, Y, X_sq_norms, Y_sq_norms)
    # Largest exact distance the best entry can stand for, then every column that can be below it.
    best_score = screened[np.arange(n_x), best].astype(np.float64)
    upper = (best_score + absolute) / (1.0 - relative)
    limit = upper * (1.0 + relative) + absolute  # lower bound of column j <= upper  <=>  D_j <= limit
    candidates = screened <= limit[:, None]  # (n_x, n_y), compared in float64
    # NaN or inf (float32 overflow) where a column may be chosen: no bound holds, measure them all.
    bad = ~np.isfinite(D) if allowed is None else ~np.isfinite(D) & allowed
    suspect = ~np.isfinite(limit) | bad.any(axis=1)
    if suspect.any():
        candidates[suspect] = True if allowed is None else allowed[suspect]
    n_candidates = candidates.sum(axis=1)
    single = np.flatnonzero(n_candidates == 1)
    if len(single):
        cols = np.argmax(candidates[single], axis=1)  # the one candidate (the best, unless suspect)
        index[single] = cols
        if return_distance:
            distance[single] = exact_distances(X, Y, metric, rows=single, cols=cols)
    several = np.flatnonzero(n_candidates > 1)
    if len(several):
        r, c = np.nonzero(candidates[several])  # r ascending, c ascending within each r
        d = exact_distances(X, Y, metric, rows=several[r], cols=c)
        order = np.lexsort((c, d, r))  # by row, then distance, then column: the first of a row wins
        first = order[np.searchsorted(r[order], np.arange(len(several)))]
        index[several] = c[first]
        if return_distance:
            distance[several] = d[first]
    return index, distance


def exact_minimum(X: np.ndarray, Y: np.ndarray, D: np.ndarray, cap: np.ndarray, metric: str = "sqeuclidean", *,
                  X_sq_norms: np.ndarray | None = None, Y_sq_norms: np.ndarray | None = None) -> np.ndarray:
    """``minimum(cap[i], exact_distances(X[i], Y[j]))`` ``(n_x, n_y)`` float64, measuring only the pairs that ``D``
    (as in ``exact_nearest``) cannot place above ``cap (n_x,)``."""
    check_metric(metric, EXACT_METRICS)
    X, Y = as_rows(X), as_rows(Y)
    D, cap = np.asarray(D), np.asarray(cap, dtype=np.float64)
    if D.shape != (len(X), len(Y)) or cap.shape != (len(X),):
        raise ValueError(f"D must have shape {(len(X), len(Y))} and cap {(len(X),)}; got {D.shape} and {cap.shape}")
    absolute, relative = screening_error(metric, X, Y, X_sq_norms, Y_sq_norms)
    limit = cap * (1.0 + relative) + absolute  # D_ij above it: exact distance above cap[i]
    capped = np.repeat(cap[:, None], len(Y), axis=1)
    r, c = np.nonzero(~(D > limit[:, None]) | ~np.isfinite(D))  # NaN or inf (overflow): measured
    capped[r, c] = np.minimum(cap[r], exact_distances(X, Y, metric, rows=r, cols=c))
    return capped


def screening_error(metric: str, X: np.ndarray, Y: np.ndarray, X_sq_norms: np.ndarray | None = None,
                    Y_sq_norms: np.ndarray | None = None) -> tuple[np.ndarray | float, float]:
    """``(absolute, relative)`` with ``|D - exact| <= absolute + relative * exact`` for ``D = pairwise_distances``:
    with ``g = float32_product_error(d)``, ``absolute = g (|x|^2 + max |y|^2) (n_x,)`` for sqeuclidean, ``g`` for
    cosine; manhattan's ``relative = g``."""
    check_metric(metric, EXACT_METRICS)
    g = float32_product_error(X.shape[1])
    if metric == "sqeuclidean":
        x_sq = squared_norms(X) if X_sq_norms is None else np.asarray(X_sq_norms)
        y_sq = squared_norms(Y) if Y_sq_norms is None else np.asarray(Y_sq_norms)
        return g * (x_sq.astype(np.float64) + float(np.max(y_sq, initial=0.0))), 0.0
    if metric == "cosine":
        return g, 0.0
    return 0.0, g
