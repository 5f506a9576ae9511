"""Certified lower bounds of euclidean distances, from a projection onto principal components.

A row ``x`` of ``n_features`` numbers is embedded as ``m + 1`` numbers: its coordinates on the top
``m`` principal components ``V`` of a set of rows, and the norm of what they leave out,

    f(x) = (V^T (x - mean), |R (x - mean)|),    R = I - V V^T.

For any two rows ``|a - b|^2 = |V^T (a - b)|^2 + |R (a - b)|^2`` (V orthonormal) and
``|R a - R b| >= | |R a| - |R b| |``, so ``|a - b|^2 >= |f(a) - f(b)|^2``: one float32 matrix
product of ``m + 2`` columns scores every pair of rows with a lower bound of its squared distance,
several times cheaper than the full product when ``m`` is well below ``n_features``. On
Fashion-MNIST, 128 of 784 components leave about 1 training image in 500 that a query's bound
cannot rule out from its 5 nearest.

The bound stays a bound through every rounding. ``score_limits`` turns a squared distance ``B`` into
the largest float32 score that a row within ``B`` can get, allowing for: the basis being orthonormal
only to float64 precision (``orthogonality``), the float64 projection and its rounding to the stored
float32 coordinates (``delta`` a row, a rigorous bound), and the float32 product's own rounding
(Higham's gamma_n on the magnitudes summed, blocked BLAS and FMA included, with subnormals). A
row whose score is above its limit is farther than ``B``, whatever the BLAS or the thread count.

Rows are scaled by a power of two (exact) fitted to the largest training row, so that no float32
square overflows; a query row too large for the product to hold (``TOO_LARGE``) gets an infinite
limit, so nothing is ruled out for it.
"""

import math
from dataclasses import dataclass

import numpy as np

from fmproto.pipeline.checks import check_int

# Rows whose covariance gives the basis: evenly spaced through the training rows, so the fit costs
# about as much as projecting 8,192 rows whatever the training size.
_PCA_ROWS = 8192
# Rows embedded at once: a (rows, n_features) float64 block, 25 MB at 784 features.
_BLOCK = 4096
_U64 = 2.0**-53  # float64 unit round-off
_U32 = 2.0**-24  # float32 unit round-off
# Absolute slack for float32 and float64 subnormals, far below any distance of unit-scaled rows.
_TINY = 2.0**-140
# Scaled query rows up to this norm make no product entry overflow (2 * 2^40 * |f_b|, |f_b| <= 2, is
# far below the largest float32); larger ones get zeros in the product and no limit.
TOO_LARGE = 2.0**40


@dataclass(frozen=True)
class Projection:
    """A fitted embedding: ``f(x) = scale * (basis^T (x - mean), |R (x - mean)|)``.

    ``normalize`` rows are divided by their norms first (cosine); zero rows stay zero.
    """

    mean: np.ndarray  # (n_features,) float64
    basis: np.ndarray  # (n_features, m) float64, orthonormal columns up to ``orthogonality``
    scale: float  # a power of two: scaled training rows have norm <= 1
    orthogonality: float  # bound on the spectral norm of basis^T basis - I
    abs_norm: float  # bound on the spectral norm of |basis| (its Frobenius norm)
    normalize: bool = False

    @property
    def n_components(self) -> int:
        return self.basis.shape[1]


@dataclass
class Embedding:
    """Embedded rows: ``coords`` (n, m + 1) float32, ``delta`` (n,) float64 with ``|coords - f| <= delta``.

    ``sq_norms`` (n,) float64 are ``|coords|^2`` computed from the float32 values; ``row_sq_norms``
    (n,) float64 the squared norms of the rows as given (exact for integer rows whose squared norms
    stay below 2^53).
    """

    coords: np.ndarray
    delta: np.ndarray
    sq_norms: np.ndarray
    row_sq_norms: np.ndarray

    def __getitem__(self, rows: slice) -> "Embedding":
        return Embedding(self.coords[rows], self.delta[rows], self.sq_norms[rows], self.row_sq_norms[rows])


def fit(X: np.ndarray, components: int, *, normalize: bool = False) -> Projection:
    """An orthonormal basis of the top ``min(components, n_features)`` principal components of ``X (n, n_features)``.

    The covariance comes from at most 8,192 evenly spaced rows, and the basis from a seeded subspace
    iteration (``_top_subspace``): deterministic, and the basis only decides how tight the bounds are,
    never whether they hold. Each column's sign is fixed so that its largest entry (the first, on
    ties) is positive.
    """
    components = check_int(components, "components", low=1)
    n, n_features = X.shape
    m = min(components, n_features)
    sample = _float64(X[:: max(1, -(-n // _PCA_ROWS))], normalize)
    mean = sample.mean(axis=0) if len(sample) else np.zeros(n_features)
    centred = sample - mean
    peak = max(float(centred.max()), -float(centred.min())) if centred.size else 0.0
    centred *= _power_of_two_below(1.0 / peak) if peak > 0 else 1.0  # float32 squares cannot overflow
    c32 = centred.astype(np.float32)
    covariance = (c32.T @ c32).astype(np.float64)
    basis = _top_subspace((covariance + covariance.T) / 2, m)
    largest = np.argmax(np.abs(basis), axis=0)
    basis *= np.where(basis[largest, np.arange(m)] < 0, -1.0, 1.0)

    # |E|_2 <= |E|_F, E = V^T V - I, plus the rounding of its float64 product (gamma_d per entry).
    defect = basis.T @ basis - np.eye(m)
    orthogonality = float(np.sqrt(np.sum(defect * defect))) * (1 + 1e-6) + 1.01 * m * _gamma(n_features)
    if orthogonality > 1e-6:
        raise AssertionError(f"the basis is {orthogonality:.1e} from orthonormal")

    # Scale: |x - mean| <= sqrt(n_features) * max|x| + |mean| for every training row.
    if normalize:
        largest_row = 1.0 + float(np.sqrt(np.sum(mean * mean)))
    else:
        top = max(abs(float(X.max())), abs(float(X.min()))) if X.size else 0.0
        largest_row = math.sqrt(n_features) * top + float(np.sqrt(np.sum(mean * mean)))
    scale = _power_of_two_below(1.0 / largest_row) if largest_row > 0 else 1.0
    abs_norm = float(np.sqrt(np.sum(basis * basis))) * (1 + 1e-6)  # >= the spectral norm of |basis|
    return Projection(mean=mean, basis=basis, scale=scale, orthogonality=orthogonality, abs_norm=abs_norm,
                      normalize=normalize)


def embed(projection: Projection, X: np.ndarray) -> Embedding:
    """The float32 embedding of rows ``X (n, n_features)`` and a rigorous bound on its error.

    Rows are worked through in blocks of 4,096, so memory beyond the result is a few float64
    blocks whatever ``n``. With ``x`` a row (a unit row for ``normalize``), ``y = x - mean``:
    ``p = V^T x - V^T mean`` and ``|R y|^2 = |y|^2 - |p|^2 + p^T E p`` with
    ``|y|^2 = |x|^2 - 2 x.mean + |mean|^2``, all in float64 without a centred copy of the rows.
    ``delta`` bounds, row by row: the float64 rounding of ``p`` (gamma_d on ``|V|^T |x|`` and
    ``|V|^T |mean|``) and of ``|y|^2`` (gamma_(d+3) on ``(|x| + |mean|)^2``), the cancellation in
    ``|R y|^2`` and the basis's departure from orthonormal (``orthogonality``), the square root, the
    float64 unit rows of ``normalize`` against exact ones, and the rounding to float32 with subnormals.
    """
    n, n_features = X.shape
    m = projection.n_components
    identity = m == n_features
    scale, mean = projection.scale, projection.mean
    mean_coords = projection.basis.T @ mean  # (m,) float64: its rounding is inside the p error below
    # One product gives both x V and x.mean: a second pass over the rows cost as much as the first.
    basis_and_mean = np.column_stack([projection.basis, mean])
    mean_norm = float(np.sqrt(np.sum(mean * mean)))
    gamma_d, gamma_m = _gamma(n_features + 3), _gamma(m)
    coords = np.empty((n, m + 1), dtype=np.float32)
    delta = np.empty(n, dtype=np.float64)
    sq_norms = np.empty(n, dtype=np.float64)
    row_sq_norms = np.empty(n, dtype=np.float64)
    for start in range(0, n, _BLOCK):
        rows = slice(start, start + _BLOCK)
        x = X[rows].astype(np.float64)
        row_sq_norms[rows] = x2 = np.einsum("ij,ij->i", x, x)
        if projection.normalize:
            norms = np.sqrt(x2)
            np.divide(x, norms[:, None], out=x, where=norms[:, None] > 0)
            x2 = np.einsum("ij,ij->i", x, x)
        spread = (np.sqrt(x2) + mean_norm) * (1 + gamma_d)  # >= |x| + |mean|
        if identity:  # every dimension kept: p = x - mean elementwise, nothing is left out
            P = x - mean
            y2 = np.einsum("ij,ij->i", P, P)
            y_up = np.sqrt(y2) * (1 + gamma_d)  # >= |y|
            error = 2 * _U64 * y_up
            r = 0.0
        else:
            product = x @ basis_and_mean
            P = product[:, :m]
            P -= mean_coords
            y2 = x2 - 2 * product[:, m] + mean_norm**2
            y_error = gamma_d * spread**2  # |y2 - |y|^2|
            y_up = np.sqrt(np.maximum(y2, 0) + y_error)  # >= |y|
            p_error = _gamma(n_features + 1) * projection.abs_norm * spread + 2 * _U64 * y_up
            p2 = np.einsum("ij,ij->i", P, P)
            r2 = y2 - p2
            r2_error = (y_error + gamma_m * p2 + (2.02 * y_up + p_error) * p_error
                        + 1.02 * projection.orthogonality * y_up**2 + 2 * _U64 * (np.abs(y2) + p2))
            r = np.sqrt(np.maximum(r2, 0.0))
            error = p_error + np.sqrt(r2_error) + _U64 * r
        if projection.normalize:  # the float64 unit rows against the exact ones
            error += 1.5 * _gamma(n_features + 6)
        P *= scale  # exact: a power of two
        block = coords[rows]
        with np.errstate(over="ignore"):  # a huge query row: inf, and score_limits gives it no limit
            block[:, :m] = P
            block[:, m] = r * scale
        f_norm = np.sqrt(np.einsum("ij,ij->i", P, P) + (r * scale) ** 2)
        delta[rows] = scale * error + 1.01 * _U32 * f_norm + _TINY
        c64 = block.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            sq_norms[rows] = np.einsum("ij,ij->i", c64, c64)
    return Embedding(coords=coords, delta=delta, sq_norms=sq_norms, row_sq_norms=row_sq_norms)


@dataclass
class Screen:
    """The training side of the screening product, built once by ``screen_matrix``.

    ``W`` (n_padded, m + 2) float32 holds rows ``[-2 f_b, |f_b|^2]``, so that ``[f_a, 1] @ W.T`` is
    ``|f_b|^2 - 2 f_a.f_b = |f_a - f_b|^2 - |f_a|^2``. Padding rows score the largest float32.
    """

    W: np.ndarray
    n: int
    delta_max: float  # largest delta of the training rows
    norm_max: float  # largest |f_b|


def screen_matrix(embedding: Embedding, rows: np.ndarray) -> Screen:
    """``Screen`` of the embedded training rows; row ``i`` of ``W`` holds embedded row ``rows[i]``.

    ``rows`` (n_padded,) int: any order of the embedded rows, and -1 for padding rows.
    """
    n, width = embedding.coords.shape
    real = rows >= 0
    W = np.zeros((len(rows), width + 1), dtype=np.float32)
    W[real, :width] = embedding.coords[rows[real]] * np.float32(-2.0)  # exact
    W[real, width] = embedding.sq_norms[rows[real]]  # rounded once to float32: inside the product's bound
    W[~real, width] = np.finfo(np.float32).max
    delta_max = float(embedding.delta.max()) if n else 0.0
    norm_max = math.sqrt(float(embedding.sq_norms.max())) * (1 + 1e-6) if n else 0.0
    return Screen(W=W, n=n, delta_max=delta_max, norm_max=norm_max)


def query_matrix(embedding: Embedding) -> np.ndarray:
    """Rows ``[f_a, 1]`` (n, m + 2) float32, the query side of the screening product.

    A row too large for the product (``TOO_LARGE``) gets zeros: finite scores, and no limit.
    """
    n, width = embedding.coords.shape
    Q = np.ones((n, width + 1), dtype=np.float32)
    Q[:, :width] = embedding.coords
    Q[~(np.sqrt(embedding.sq_norms) <= TOO_LARGE), :width] = 0  # score_limits rules nothing out for these
    return Q


def scores(Q: np.ndarray, W: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Q @ W.T`` (n_queries, n_padded) float32: the BLAS part, rounded as the BLAS likes."""
    return np.matmul(Q, W.T, out=out)


def score_limits(bound_sq: np.ndarray, query: Embedding, screen: Screen, projection: Projection) -> np.ndarray:
    """Per query row, the largest float32 score of a training row within squared distance ``bound_sq``.

    Parameters
    ----------
    bound_sq : ndarray of shape (n_queries,), float64
        Squared euclidean distances in the rows' own units (unit rows for ``normalize``), >= 0.
    query : Embedding of the query rows
    screen : Screen of the training rows

    Returns
    -------
    limits : ndarray of shape (n_queries,), float32
        A training row whose score exceeds its query's limit is farther than ``bound_sq`` from it.
        Infinite where the query row is too large for the product (nothing is ruled out).

    Notes
    -----
    Exact distance ``|a - b|^2 >= (1 - orthogonality) |f_a - f_b|^2`` and
    ``|f_a - f_b| >= |f~_a - f~_b| - delta_a - delta_b``. The float32 score ``s`` is within
    ``g (|f~_a|^2 + 3 max|f~_b|^2) + tau`` of ``|f~_a - f~_b|^2 - |f~_a|^2``; the limit adds the
    same again to cover the float64 arithmetic here.
    """
    m = projection.n_components
    bound_sq = np.asarray(bound_sq, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.sqrt(bound_sq * projection.scale**2 / (1 - projection.orthogonality)) * (1 + 1e-12)
        T = ((t + query.delta + screen.delta_max) * (1 + 1e-12)) ** 2
        g = _float32_error_factor(m + 1)
        tau = (m + 12) * 2.0**-148
        a2 = query.sq_norms
        limit = T - a2 + 2 * g * a2 + 4 * g * screen.norm_max**2 + 2 * tau
        limit32 = np.nextafter(limit.astype(np.float32), np.float32(np.inf))  # round up
    too_large = ~(np.sqrt(a2) <= TOO_LARGE) | ~np.isfinite(limit)
    limit32[too_large] = np.inf
    return limit32


def _top_subspace(C: np.ndarray, m: int) -> np.ndarray:
    """Orthonormal columns ``(n, m)`` spanning about the top-``m`` eigenvectors of symmetric PSD ``C (n, n)``.

    Subspace iteration from a seeded start, five steps of ``C + shift``, each orthonormalised by
    Cholesky QR. (LAPACK's ``eigh`` and even its 128 x 128 Cholesky factor run level-2 BLAS in threads
    that wait on each other: on a machine whose other core was busy they took 6 s and 0.12 s instead
    of 0.05 s and 0.1 ms, so the factor is computed here.) On Fashion-MNIST the span holds 99.9% of the
    variance that the exact top 128 components hold; which basis of the span it is does not matter
    to the bounds.
    """
    n = len(C)
    if m >= n:
        return np.eye(n)  # a rotation of all features: the identity is one, exactly orthonormal
    trace = float(np.trace(C))
    shift = 1e-4 * trace if trace > 0 else 1.0  # C + shift is positive definite: cond <= 1e4 + 1
    Q = _orthonormal(np.random.default_rng(0).standard_normal((n, m)), passes=1)
    for step in range(5):  # in between, orthogonal to cond^2 u (1e-8) is enough
        Q = _orthonormal(C @ Q + shift * Q, passes=2 if step == 4 else 1)
    return Q


def _orthonormal(Z: np.ndarray, passes: int = 2) -> np.ndarray:
    """Orthonormal columns spanning those of ``Z (n, w)``, condition number below 1e6: Cholesky QR.

    A second pass takes the loss of orthogonality from ``cond(Z)^2 u`` down to ``u``. The Cholesky
    factor and its inverse are computed here, in a few numpy operations a column, not by LAPACK.
    """
    for _ in range(passes):
        L = _cholesky(np.einsum("ij,ik->jk", Z, Z))  # einsum: no BLAS threads for a small product
        Z = np.einsum("ij,kj->ik", Z, _lower_inverse(L))  # Z L^-T
    return Z


def _cholesky(G: np.ndarray) -> np.ndarray:
    """Lower-triangular ``L`` with ``L L^T = G`` for symmetric positive definite ``G (w, w)``, column by column."""
    w = len(G)
    L = np.zeros_like(G)
    for j in range(w):
        pivot = G[j, j] - np.sum(L[j, :j] ** 2)
        if not pivot > 0:
            raise AssertionError(f"Cholesky pivot {pivot!r} at column {j}: the matrix is not positive definite")
        L[j, j] = np.sqrt(pivot)
        L[j + 1 :, j] = (G[j + 1 :, j] - np.sum(L[j + 1 :, :j] * L[j, :j], axis=1)) / L[j, j]
    return L


def _lower_inverse(L: np.ndarray) -> np.ndarray:
    """The inverse of lower-triangular ``L (w, w)``, by forward substitution row by row."""
    w = len(L)
    X = np.zeros_like(L)
    for i in range(w):
        X[i, i] = 1.0 / L[i, i]
        X[i, :i] = -np.sum(L[i, :i, None] * X[:i, :i], axis=0) / L[i, i]
    return X


def _float64(X: np.ndarray, normalize: bool) -> np.ndarray:
    """Rows as a float64 copy; unit rows if ``normalize`` (zero rows stay zero)."""
    Y = X.astype(np.float64)
    if normalize:
        norms = np.sqrt(np.einsum("ij,ij->i", Y, Y))
        np.divide(Y, norms[:, None], out=Y, where=norms[:, None] > 0)
    return Y


def _gamma(n: int) -> float:
    """Higham's gamma_n in float64: bounds the rounding of a sum of n products, in any order."""
    return n * _U64 / (1 - n * _U64)


def _float32_error_factor(n_features: int) -> float:
    """As ``fmproto.search.knn._error_factor``: 2 gamma_(n+8) in float32, the product's relative error."""
    n = n_features + 8
    return 2.0 * n * _U32 / (1 - n * _U32)


def _power_of_two_below(x: float) -> float:
    """The largest power of two <= ``x`` (> 0), so that scaling by it is exact."""
    mantissa, exponent = math.frexp(x)  # x = mantissa * 2^exponent, 0.5 <= mantissa < 1
    return math.ldexp(1.0, exponent - 1)
