"""Rigorous bounds on floating-point rounding, the one place the exact searches take them from: Higham's
``gamma_n = n u / (1 - n u)`` bounds a sum of ``n`` products in any order (any BLAS blocking, FMA, threads)."""

import numpy as np

U32 = 2.0**-24  # float32 unit round-off
U64 = 2.0**-53  # float64 unit round-off
# Float32 subnormal spacing: the absolute error one float32 operation can add beyond the relative one.
TINY32 = 2.0**-149


def gamma(n: int, unit: float = U64) -> float:
    """Higham's gamma_n for the unit round-off ``unit``; inf when ``n * unit >= 1``."""
    return n * unit / (1 - n * unit) if n * unit < 1 else np.inf


def float32_product_error(n_features: int) -> float:
    """Relative bound on a float32 matrix product over ``n_features`` with its float32 norms: ``2 gamma_(n+8)``,
    the extra terms covering the norms added, a division by them (cosine) and float64 inputs rounded."""
    return 2.0 * gamma(n_features + 8, U32)


def round_up32(value) -> np.ndarray:
    """``value`` as float32, rounded up, so float32 comparisons keep all that float64 would."""
    return np.nextafter(np.asarray(value, dtype=np.float64).astype(np.float32), np.float32(np.inf))
