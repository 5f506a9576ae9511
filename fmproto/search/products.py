"""Matrix products whose bytes do not depend on the BLAS kernel, the thread count or the CPU.

BLAS sums a product's terms in an order its kernel chooses (by the CPU's vector width, by the threads),
and float rounding makes each order give other last bits. On an integer grid every partial sum is an
exact float64 integer, so every order gives the same sum: the one rounding left is the grid's.
"""

import math

import numpy as np


def exact_product64(X: np.ndarray, W: np.ndarray, rows_per_item: int = 1) -> np.ndarray:
    """``X (n_items * rows_per_item, K) @ W (K, m)`` in float64, the exact product of the two grids.

    Each item's rows (``rows_per_item`` of them: one image's, say) go on an integer grid scaled to the item's
    largest magnitude, ``W`` on one scaled to its own, with ``b`` bits each where ``K 2**(2b) <= 2**53``: every
    partial sum is an exact float64 integer. The grid costs ``2**-b`` of the largest magnitude (``b >= 21``
    for ``K <= 2048``); scales are powers of two, so scaling back is exact."""
    n_inner = X.shape[1]
    if W.shape[0] != n_inner or len(X) % max(rows_per_item, 1):
        raise ValueError(f"cannot multiply {X.shape} by {W.shape} in items of {rows_per_item} rows")
    bits = (53 - math.ceil(math.log2(max(n_inner, 2)))) // 2
    w_peak = float(np.abs(W).max(initial=0))
    w_scale = math.ldexp(1.0, bits - math.frexp(w_peak)[1])  # |W| * w_scale <= 2**bits
    W_grid = np.rint(W.astype(np.float64) * w_scale)
    items = X.reshape(-1, rows_per_item, n_inner)
    peak = np.abs(items).max(axis=(1, 2), initial=0).astype(np.float64)
    scale = np.ldexp(1.0, bits - np.frexp(peak)[1])[:, None, None]
    X_grid = np.rint(items * scale).reshape(-1, n_inner)
    product = (X_grid @ W_grid).reshape(len(items), rows_per_item, -1)
    return (product / (scale * w_scale)).reshape(len(X), -1)


def exact_product(X: np.ndarray, W: np.ndarray, rows_per_item: int = 1) -> np.ndarray:
    """``exact_product64`` rounded once to float32."""
    return exact_product64(X, W, rows_per_item).astype(np.float32)
