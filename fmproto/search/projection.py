"""Certified lower bounds of euclidean distances, from a projection onto principal components.

``f(x) = (V^T (x - mean), |R (x - mean)|)``, ``R = I - V V^T``, ``V`` the top ``m`` components, has
``|a - b| >= |f(a) - f(b)|``: one float32 product of ``m + 2`` columns bounds every pair. ``limits``
keeps the bound rigorous through the basis's departure from orthonormal and every rounding."""

import math
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from fmproto.pipeline.checks import check_int
from fmproto.search.rounding import U32, U64, float32_product_error, gamma, round_up32

_PCA_ROWS = 8192  # rows, evenly spaced, whose covariance gives the basis
_BLOCK = 4096  # rows embedded at once: 25 MB of float64 at 784 features
_TINY = 2.0**-140  # absolute slack for subnormals, far below any distance of unit-scaled rows
TOO_LARGE = 2.0**40  # scaled query rows up to this norm make no product entry overflow; larger get no limit


@dataclass
class Embedding:
    """Embedded rows: ``coords (n, m + 1)`` float32 within ``delta (n,)`` of ``f``; float64 ``sq_norms``
    of ``coords`` and ``row_sq_norms`` of the rows as given."""

    coords: np.ndarray
    delta: np.ndarray
    sq_norms: np.ndarray
    row_sq_norms: np.ndarray

    def __getitem__(self, rows: slice) -> "Embedding":
        return Embedding(self.coords[rows], self.delta[rows], self.sq_norms[rows], self.row_sq_norms[rows])

    def query_matrix(self) -> np.ndarray:
        """Rows ``[f_a, 1]`` (n, m + 2) float32; a row over ``TOO_LARGE`` gets zeros (finite scores)."""
        n, width = self.coords.shape
        Q = np.ones((n, width + 1), dtype=np.float32)
        Q[:, :width] = self.coords
        Q[~(np.sqrt(self.sq_norms) <= TOO_LARGE), :width] = 0
        return Q


@dataclass
class Screen:
    """``W (n_padded, m + 2)`` float32 rows ``[-2 f_b, |f_b|^2]``: ``[f_a, 1] @ W.T = |f_a - f_b|^2 - |f_a|^2``."""

    W: np.ndarray
    delta_max: float  # largest delta of the training rows
    norm_max: float  # largest |f_b|


def scores(Q: np.ndarray, W: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Q @ W.T`` (n_queries, n_padded) float32: the BLAS part, rounded as the BLAS likes."""
    return np.matmul(Q, W.T, out=out)


class Projection:
    """``f(x) = scale * (V^T (x - mean), |R (x - mean)|)`` with ``components`` columns (all: ``V = I``);
    ``normalize``: rows divided by their norms first (cosine), zero rows left zero."""

    def __init__(self, components: int, normalize: bool = False):
        self.components = check_int(components, "components", low=1)
        self.normalize = normalize

    @property
    def n_components(self) -> int:
        return self.basis.shape[1]

    def fit(self, X: np.ndarray) -> "Projection":
        """Fit on rows ``X (n, d)``, deterministically; ``LinAlgError`` if the basis is 1e-6 off orthonormal (it
        decides how tight the bounds are, never whether they hold)."""
        n, n_features = X.shape
        m = min(self.components, n_features)
        sample = X[:: max(1, -(-n // _PCA_ROWS))].astype(np.float64)
        if self.normalize:  # unit rows; zero rows stay zero
            norms = np.sqrt(np.einsum("ij,ij->i", sample, sample))
            np.divide(sample, norms[:, None], out=sample, where=norms[:, None] > 0)
        mean = sample.mean(axis=0) if len(sample) else np.zeros(n_features)
        centred = sample - mean
        peak = max(float(centred.max()), -float(centred.min())) if centred.size else 0.0
        centred *= _power_of_two_below(1.0 / peak) if peak > 0 else 1.0  # float32 squares cannot overflow
        c32 = centred.astype(np.float32)
        covariance = (c32.T @ c32).astype(np.float64)
        basis = _top_subspace((covariance + covariance.T) / 2, m)
        largest = np.argmax(np.abs(basis), axis=0)
        basis *= np.where(basis[largest, np.arange(m)] < 0, -1.0, 1.0)
        # |E|_2 <= |E|_F, E = V^T V - I, plus the rounding of its float64 product.
        defect = basis.T @ basis - np.eye(m)
        self.orthogonality = float(np.sqrt(np.sum(defect * defect))) * (1 + 1e-6) + 1.01 * m * gamma(n_features)
        if self.orthogonality > 1e-6:
            raise np.linalg.LinAlgError(f"the projection's basis is {self.orthogonality:.1e} from orthonormal")
        # Scale: |x - mean| <= sqrt(n_features) * max|x| + |mean| for every training row.
        mean_norm = float(np.sqrt(np.sum(mean * mean)))
        top = max(abs(float(X.max())), abs(float(X.min()))) if X.size else 0.0
        largest_row = 1.0 + mean_norm if self.normalize else math.sqrt(n_features) * top + mean_norm
        self.scale = _power_of_two_below(1.0 / largest_row) if largest_row > 0 else 1.0
        self.abs_norm = float(np.sqrt(np.sum(basis * basis))) * (1 + 1e-6)  # >= the spectral norm of |basis|
        self.mean, self.basis = mean, basis
        return self

    def embed(self, X: np.ndarray) -> Embedding:
        """The float32 embedding of rows ``X (n, d)``, with a rigorous bound ``delta`` on its error; in float64
        blocks, without a centred copy: ``p = V^T x - V^T mean``, ``|R y|^2 = |y|^2 - |p|^2``."""
        n, n_features = X.shape
        m = self.n_components
        scale, mean = self.scale, self.mean
        mean_coords = self.basis.T @ mean
        basis_and_mean = np.column_stack([self.basis, mean])  # one product gives x V and x.mean
        mean_norm = float(np.sqrt(np.sum(mean * mean)))
        gamma_d, gamma_m = gamma(n_features + 3), gamma(m)
        coords = np.empty((n, m + 1), dtype=np.float32)
        delta, sq_norms, row_sq_norms = (np.empty(n, dtype=np.float64) for _ in range(3))
        for start in range(0, n, _BLOCK):
            rows = slice(start, start + _BLOCK)
            x = X[rows].astype(np.float64)
            row_sq_norms[rows] = x2 = np.einsum("ij,ij->i", x, x)
            if self.normalize:
                norms = np.sqrt(x2)
                np.divide(x, norms[:, None], out=x, where=norms[:, None] > 0)
                x2 = np.einsum("ij,ij->i", x, x)
            spread = (np.sqrt(x2) + mean_norm) * (1 + gamma_d)  # >= |x| + |mean|
            if m == n_features:  # every dimension kept: nothing is left out
                P = x - mean
                y_up = np.sqrt(np.einsum("ij,ij->i", P, P)) * (1 + gamma_d)  # >= |y|
                error, r = 2 * U64 * y_up, 0.0
            else:
                product = x @ basis_and_mean
                P = product[:, :m]
                P -= mean_coords
                y2 = x2 - 2 * product[:, m] + mean_norm**2
                y_error = gamma_d * spread**2  # |y2 - |y|^2|
                y_up = np.sqrt(np.maximum(y2, 0) + y_error)  # >= |y|
                p_error = gamma(n_features + 1) * self.abs_norm * spread + 2 * U64 * y_up
                p2 = np.einsum("ij,ij->i", P, P)
                r2_error = (y_error + gamma_m * p2 + (2.02 * y_up + p_error) * p_error
                            + 1.02 * self.orthogonality * y_up**2 + 2 * U64 * (np.abs(y2) + p2))
                r = np.sqrt(np.maximum(y2 - p2, 0.0))
                error = p_error + np.sqrt(r2_error) + U64 * r
            if self.normalize:  # the float64 unit rows against the exact ones
                error += 1.5 * gamma(n_features + 6)
            P *= scale  # exact: a power of two
            block = coords[rows]
            with np.errstate(over="ignore"):  # a huge query row: inf, and limits gives it none
                block[:, :m] = P
                block[:, m] = r * scale
            f_norm = np.sqrt(np.einsum("ij,ij->i", P, P) + (r * scale) ** 2)
            delta[rows] = scale * error + 1.01 * U32 * f_norm + _TINY
            c64 = block.astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                sq_norms[rows] = np.einsum("ij,ij->i", c64, c64)
        return Embedding(coords=coords, delta=delta, sq_norms=sq_norms, row_sq_norms=row_sq_norms)

    def screen(self, embedding: Embedding, rows: np.ndarray) -> Screen:
        """``Screen`` whose row ``i`` holds embedded row ``rows[i]`` (n_padded,), -1 for padding."""
        width = embedding.coords.shape[1]
        real = rows >= 0
        W = np.zeros((len(rows), width + 1), dtype=np.float32)
        for start in range(0, len(rows), _BLOCK):  # in blocks: no second gathered copy of the rows
            part = rows[start : start + _BLOCK]
            block = W[start : start + len(part)]
            block[part >= 0, :width] = embedding.coords[part[part >= 0]]
            block[:, :width] *= np.float32(-2.0)  # exact
        W[real, width] = embedding.sq_norms[rows[real]]  # rounded once: inside the product's bound
        W[~real, width] = np.finfo(np.float32).max
        norm_max = math.sqrt(float(embedding.sq_norms.max(initial=0.0))) * (1 + 1e-6)
        return Screen(W=W, delta_max=float(embedding.delta.max(initial=0.0)), norm_max=norm_max)

    def limits(self, bound_sq: np.ndarray, query: Embedding, screen: Screen) -> np.ndarray:
        """Per query row, the largest float32 score of a training row within squared distance ``bound_sq (n,)``
        (in the rows' units, unit rows for ``normalize``); inf for a row too large for the product."""
        m = self.n_components
        bound_sq = np.asarray(bound_sq, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            t = np.sqrt(bound_sq * self.scale**2 / (1 - self.orthogonality)) * (1 + 1e-12)
            T = ((t + query.delta + screen.delta_max) * (1 + 1e-12)) ** 2
            g = float32_product_error(m + 1)
            tau = (m + 12) * 2.0**-148
            a2 = query.sq_norms
            limit32 = round_up32(T - a2 + 2 * g * a2 + 4 * g * screen.norm_max**2 + 2 * tau)
        limit32[~(np.sqrt(a2) <= TOO_LARGE) | ~np.isfinite(limit32)] = np.inf
        return limit32


def _top_subspace(C: np.ndarray, m: int) -> np.ndarray:
    """Orthonormal ``(n, m)`` spanning about the top-``m`` eigenvectors of PSD ``C``: five seeded subspace
    iterations, Cholesky QR (LAPACK ``eigh`` took seconds when its threads waited on a busy core)."""
    n = len(C)
    if m >= n:
        return np.eye(n)  # exactly orthonormal
    trace = float(np.trace(C))
    shift = 1e-4 * trace if trace > 0 else 1.0  # C + shift is positive definite: cond <= 1e4 + 1
    Q = _orthonormal(np.random.default_rng(0).standard_normal((n, m)), passes=1)
    for step in range(5):
        Q = _orthonormal(C @ Q + shift * Q, passes=2 if step == 4 else 1)
    return Q


def _orthonormal(Z: np.ndarray, passes: int) -> np.ndarray:
    """Cholesky QR of ``Z (n, w)``; a second pass restores orthogonality to ``u``."""
    with threadpool_limits(1, user_api="blas"):  # a small factor: threads only wait on each other
        for _ in range(passes):
            L = np.linalg.cholesky(Z.T @ Z)
            Z = Z @ np.linalg.inv(L).T  # Z L^-T
    return Z


def _power_of_two_below(x: float) -> float:
    """The largest power of two <= ``x`` (> 0), so that scaling by it is exact."""
    return math.ldexp(1.0, math.frexp(x)[1] - 1)
