"""Pairwise distances between the rows of two matrices, through BLAS matrix products where possible.

Every function takes images flattened to rows, ``X : ndarray of shape (n_x, n_features)`` and
``Y : ndarray of shape (n_y, n_features)``, and returns a float32 ``(n_x, n_y)`` block. Callers
bound memory by passing a chunk of rows of ``X`` at a time.
"""

from typing import Literal

import numpy as np

Metric = Literal["sqeuclidean", "euclidean", "mse", "cosine", "manhattan"]
METRICS: tuple[str, ...] = ("sqeuclidean", "euclidean", "mse", "cosine", "manhattan")

# Elements of the (n_x, block, n_features) difference tensor that manhattan builds at once: 64 MB.
_MANHATTAN_BLOCK_ELEMENTS = 1 << 24


def check_metric(metric: str, allowed: tuple[str, ...] = METRICS) -> None:
    """Raise ``ValueError`` naming the allowed set when ``metric`` is not in it."""
    if metric not in allowed:
        raise ValueError(f"metric must be one of {', '.join(map(repr, allowed))}; got {metric!r}")


def as_rows(images: np.ndarray) -> np.ndarray:
    """Flatten ``(n, H, W)`` (or any ``(n, ...)``) images to float32 rows ``(n, H*W)``."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32, copy=False)


def squared_norms(X: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 norms, shape ``(n,)``, in the dtype of ``X``."""
    return np.einsum("ij,ij->i", X, X)


def pairwise_distances(
    X: np.ndarray,
    Y: np.ndarray,
    metric: Metric = "euclidean",
    *,
    Y_sq_norms: np.ndarray | None = None,
) -> np.ndarray:
    """Distances from every row of ``X`` to every row of ``Y``.

    Parameters
    ----------
    X : ndarray of shape (n_x, n_features)
    Y : ndarray of shape (n_y, n_features)
    metric : {'sqeuclidean', 'euclidean', 'mse', 'cosine', 'manhattan'}
        ``mse`` is the squared euclidean distance divided by ``n_features`` (the mean squared pixel
        difference). ``cosine`` is ``1 - cos(angle)``; a row of zeros is at distance 1 from
        everything (its direction is undefined).
    Y_sq_norms : ndarray of shape (n_y,), optional
        Precomputed ``squared_norms(Y)`` (float32), so a caller looping over chunks of ``X`` does
        not recompute them.

    Returns
    -------
    D : ndarray of shape (n_x, n_y), float32
    """
    check_metric(metric)
    X = as_rows(X)
    Y = as_rows(Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but Y has {Y.shape[1]}")

    if metric == "manhattan":
        return _manhattan(X, Y)

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

    y2 = Y_sq_norms if Y_sq_norms is not None else squared_norms(Y)
    # d2 = |x|^2 - 2 x.y + |y|^2, built in place on the gram matrix; float32 rounding can dip below 0.
    gram *= -2.0
    gram += squared_norms(X)[:, None]
    gram += y2[None, :]
    np.maximum(gram, 0.0, out=gram)
    if metric == "euclidean":
        np.sqrt(gram, out=gram)
    elif metric == "mse":
        gram /= np.float32(X.shape[1])
    return gram


def _manhattan(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """L1 distances; no matrix-product form exists, so blocks of ``Y`` bound the 3-D difference."""
    out = np.empty((len(X), len(Y)), dtype=np.float32)
    block = max(1, _MANHATTAN_BLOCK_ELEMENTS // max(1, len(X) * X.shape[1]))
    for start in range(0, len(Y), block):
        Y_block = Y[start : start + block]
        out[:, start : start + len(Y_block)] = np.abs(X[:, None, :] - Y_block[None, :, :]).sum(axis=2)
    return out
