"""Helpers of ``fmproto.search.engine``: query rows as measured, leaf order, column selection, kept pairs."""

from dataclasses import dataclass

import numpy as np

from fmproto.pipeline.checks import check_int, is_int, rows as checked_rows

_MEASURE_ELEMENTS = 1 << 21  # float64 elements checked at once for integer entries: 16 MB


@dataclass
class Queries:
    """Query rows as ``KnnIndex`` measures them: ``A (n, d)`` float64, ``A32`` float32 (None if a float32 product
    could overflow), ``sq`` float64 squared norms; ``exact``: integer rows, float64 products below 2^53."""

    A: np.ndarray
    A32: np.ndarray | None
    sq: np.ndarray
    exact: bool

    @classmethod
    def of(cls, Xc: np.ndarray, index) -> "Queries":
        A = Xc.astype(np.float64)
        integral, largest = integers(A)
        exact = (index.metric != "cosine" and index.integral and integral
                 and A.shape[1] * (index.largest + largest) ** 2 < 2.0**53)
        small = A.shape[1] * max(largest, 1.0) * max(index.largest, 1.0) < 2.0**100  # float32 max: 2^128
        return cls(A=A, A32=A.astype(np.float32) if small else None, sq=np.einsum("ij,ij->i", A, A), exact=exact)


def leaf_order(F: np.ndarray, size: int) -> np.ndarray:
    """Rows of ``F (n, width)`` ordered so that each run of ``size`` holds near rows: a k-d split, level by level,
    of every node of ``size * c`` rows at ``size * (c // 2)`` along the 8 widest coordinates in turn; ties by row."""
    n = len(F)
    order = np.arange(n)
    if size <= 1 or n <= size:
        return order
    widest = np.argsort(-F.var(axis=0), kind="stable")[:8]
    start, length = np.zeros(n, dtype=np.int64), np.full(n, n, dtype=np.int64)  # each position's node
    level = 0
    while length.max() > size:
        values = F[order, widest[level % len(widest)]].astype(np.float64)
        low, high = float(values.min()), float(values.max())
        # One stable sort by (node, value): nodes are runs of positions, so node + value in [0, 1).
        key = start + (values - low) / (high - low + 1.0) if high > low else start.astype(np.float64)
        order = order[np.argsort(key, kind="stable")]
        half = size * (-(-length // size) // 2)
        right = (np.arange(n) - start >= half) & (length > size)
        start = np.where(right, start + half, start)
        length = np.where(length > size, np.where(right, length - half, half), length)
        level += 1
    return order


def integers(X: np.ndarray) -> tuple[bool, float]:
    """Whether every entry of rows ``X`` is an integer, and the largest absolute entry."""
    largest = max(abs(float(X.max())), abs(float(X.min()))) if X.size else 0.0
    if np.issubdtype(X.dtype, np.integer):
        return True, largest
    step = max(1, _MEASURE_ELEMENTS // max(1, X.shape[1]))
    chunks = (X[start : start + step] for start in range(0, len(X), step))
    return all(np.array_equal(Y, np.rint(Y)) for Y in chunks), largest


def best_columns(S: np.ndarray, n_candidates: int, group: int, minima: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``n_candidates`` lowest scores of each row of ``S``, and the highest among them, through the
    group minima ``(n_rows, width // group)``."""
    n_rows, width = S.shape
    n_groups = width // group
    if n_groups <= n_candidates or group == 1:
        cols = np.argpartition(S, n_candidates - 1, axis=1)[:, :n_candidates] if n_candidates < width else \
            np.broadcast_to(np.arange(width), (n_rows, width))
        return cols, np.take_along_axis(S, cols, axis=1).max(axis=1)
    # The n_candidates lowest of a row lie in the n_candidates groups with the lowest minima: the
    # chosen groups hold n_candidates entries <= the n_candidates-th lowest minimum, others none below.
    groups = np.argpartition(minima, n_candidates - 1, axis=1)[:, :n_candidates]
    cols = (groups[:, :, None] + n_groups * np.arange(group)).reshape(n_rows, -1)  # (n_rows, n_candidates * group)
    values = np.take_along_axis(S, cols, axis=1)
    best = np.argpartition(values, n_candidates - 1, axis=1)[:, :n_candidates]
    return np.take_along_axis(cols, best, axis=1), np.take_along_axis(values, best, axis=1).max(axis=1)


def kept_bound(kept, k: int, limit: float) -> float:
    """The naive distance a new pair must not exceed: ``limit``, or the k-th kept (ties may enter)."""
    return limit if len(kept[0]) < k else min(limit, float(kept[2][k - 1]))


def closest(kept, new, k: int):
    """The ``k`` closest of two ``(i, j, d)`` sets, sorted by ``(d, i, j)``."""
    i, j, d = (np.concatenate([a, b]) for a, b in zip(kept, new))
    order = np.lexsort((j, i, d))[:k]
    return i[order], j[order], d[order]


def checked_query(X_query, train_shape: tuple[int, int], k, chunk) -> np.ndarray:
    """``X_query`` as rows that fit training rows of ``train_shape``, with ``k`` and ``chunk`` checked."""
    X_query = checked_rows(X_query, "X_query")
    n_train, n_features = train_shape
    if X_query.shape[1] != n_features:
        raise ValueError(f"X_query has {X_query.shape[1]} features but X_train has {n_features}")
    if k is not None and (not is_int(k) or not 1 <= k <= n_train):
        raise ValueError(f"k must be an integer in 1..{n_train} (the training rows); got {k!r}")
    check_int(chunk, "chunk", low=1)
    return X_query
