"""GMLVQ: generalised matrix learning vector quantisation (Schneider, Biehl & Hammer, 2009).

Prototypes and a metric learned together: the distance from ``x`` to a prototype ``w`` is
``d(x, w) = |Omega (x - w)|^2`` with ``Omega (rank, n_features)``. For an image of class ``y``, ``d_plus``
is its distance to the nearest prototype of class ``y`` and ``d_minus`` to the nearest of any other class;
training lowers the mean of ``sigmoid(steepness * mu)``, ``mu = (d_plus - d_minus) / (d_plus + d_minus)``
(negative when the image is classified right; the sigmoid lets the images near the border count most).
Classifying by ``d`` is classifying by the nearest prototype after ``project``.

The same bits on every CPU: every product is an exact product of integer grids
(``fmproto.search.products``), every other step an elementwise IEEE operation or a sum in numpy's fixed
order, and the sigmoid's exponential a polynomial (numpy's ``exp`` is vectorised by the CPU it runs on).
"""

import math

import numpy as np

from fmproto.pipeline.checks import check_int, rows as checked_rows
from fmproto.prototypes.lvq import check_prototype_classes, minibatches
from fmproto.search.products import exact_product, exact_product64

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_WARMUP = 0.3  # of the steps: the rate rises linearly from a 25th to ``learning_rate``, then falls to 0


def gmlvq(prototypes: np.ndarray, prototype_labels: np.ndarray, X: np.ndarray, y: np.ndarray, *, epochs: int,
          rank: int | None = None, learning_rate: float = 3e-3, steepness: float = 20.0, batch_size: int = 512,
          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Refine labelled ``prototypes (n_prototypes, n_features)`` and learn ``Omega`` by mini-batch GMLVQ on ``X, y``.

    Returns float32 ``(prototypes, omega (rank, n_features))``. ``rank`` None is ``n_features`` and starts
    from the identity (plain euclidean distance); a smaller rank starts from a seeded random projection.
    ``epochs`` passes over ``X`` in an order drawn with ``seed``, Adam at a peak of ``learning_rate`` on
    rows scaled to unit mean norm (so the rate does not depend on the features' units). Every class in
    ``y`` needs a prototype, and at least two classes; ``ValueError`` for bad arguments or a step that
    makes a value NaN or inf."""
    W = checked_rows(np.asarray(prototypes), "prototypes", dtype=np.float32).astype(np.float64)
    X = checked_rows(X, "X", dtype=np.float32)
    y = np.asarray(y).astype(np.int64, copy=False)
    labels = np.asarray(prototype_labels).astype(np.int64, copy=False)
    n_features = X.shape[1]
    rank = n_features if rank is None else check_int(rank, "rank", 1, n_features)
    epochs, batch_size = check_int(epochs, "epochs", 0, 100_000), check_int(batch_size, "batch_size", 2, 1 << 20)
    for value, name in ((learning_rate, "learning_rate"), (steepness, "steepness")):
        if not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ValueError(f"{name} must be > 0 and finite; got {value!r}")
    if labels.shape != (len(W),) or len(y) != len(X) or W.shape[1] != n_features:
        raise ValueError(f"X {X.shape}, y {y.shape}, prototypes {W.shape} and prototype_labels {labels.shape} do not match")
    check_prototype_classes(labels, y, "GMLVQ")

    rng = np.random.default_rng(seed)
    if rank == n_features:
        omega = np.eye(n_features)
    else:
        omega = rng.standard_normal((rank, n_features)) / math.sqrt(rank)
    if epochs == 0 or len(X) == 0:
        return W.astype(np.float32), omega.astype(np.float32)

    # A power of two near the rows' mean norm: scaling by it is exact, and undone exactly at the end.
    mean_norm = math.sqrt(float(np.mean(np.einsum("ij,ij->i", X, X, dtype=np.float64)))) or 1.0
    unit = math.ldexp(1.0, math.frexp(mean_norm)[1])
    W /= unit
    adam = _Adam((W, omega))
    total = epochs * -(-len(X) // batch_size)
    for epoch, step, batch in minibatches(len(X), batch_size, epochs, rng, min_rows=2):
        rate = learning_rate * _schedule(step, total)
        W_grad, omega_grad = _gradients(W, omega, labels, X[batch].astype(np.float64) / unit, y[batch], steepness)
        adam.step((W_grad, omega_grad), rate)
        if not (np.isfinite(W).all() and np.isfinite(omega).all()):
            raise ValueError(f"GMLVQ diverged: epoch {epoch + 1}, step {step + 1} of {total} made a value NaN or "
                             f"inf (learning_rate={learning_rate!r}); use a smaller learning_rate")
    return (W * unit).astype(np.float32), omega.astype(np.float32)


def project(X: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """``X (n, n_features) @ omega.T``, float32: rows in the space where GMLVQ's distance is euclidean."""
    return exact_product(checked_rows(X, "X", dtype=np.float32), np.asarray(omega, dtype=np.float32).T)


def _gradients(W, omega, labels, Xb, yb, steepness):
    """The gradients of the batch's summed cost by the prototypes ``W`` and by ``omega``, float64."""
    both = exact_product64(np.concatenate([Xb, W]), omega.T)  # the batch and the prototypes projected, one product
    Z, V = both[: len(Xb)], both[len(Xb) :]  # (b, rank), (n_prototypes, rank)
    D = np.einsum("ij,ij->i", Z, Z)[:, None] - 2 * exact_product64(Z, V.T) + np.einsum("ij,ij->i", V, V)[None, :]
    np.maximum(D, 0, out=D)  # the expansion can fall a rounding below 0
    same = labels[None, :] == yb[:, None]
    plus = np.argmin(np.where(same, D, np.inf), axis=1)  # lowest index on ties
    minus = np.argmin(np.where(same, np.inf, D), axis=1)
    rows = np.arange(len(Xb))
    d_plus, d_minus = D[rows, plus], D[rows, minus]
    denom = d_plus + d_minus
    denom[denom == 0] = 1.0  # an image on both prototypes: mu is flat there, both coefficients are 0
    mu = (d_plus - d_minus) / denom
    sig = _sigmoid(steepness * mu)
    slope = steepness * sig * (1 - sig)
    # d cost / d d_plus and d cost / d d_minus, through mu, times Omega (x - w): (b, rank) each
    E_plus = (slope * 2 * d_minus / denom**2)[:, None] * (Z - V[plus])
    E_minus = (-slope * 2 * d_plus / denom**2)[:, None] * (Z - V[minus])
    # Each prototype's share, summed image by image in the batch's order (np.add.at is unbuffered and in order).
    S = np.zeros_like(V)
    np.add.at(S, plus, E_plus)
    np.add.at(S, minus, E_minus)
    W_grad = -2 * exact_product64(S, omega)
    # sum_i E_i (x_i - w_i)^T = (E_plus + E_minus)^T X - S^T W: a product over the batch and one over the prototypes
    omega_grad = 2 * (exact_product64((E_plus + E_minus).T, Xb) - exact_product64(S.T, W))
    return W_grad, omega_grad


def _schedule(step: int, total: int) -> float:
    """The rate's fraction at ``step`` of ``total``: up linearly from 1/25, then down linearly to 0."""
    peak = max(1, int(_WARMUP * total))
    if step < peak:
        return 0.04 + 0.96 * step / peak
    return max(0.0, (total - step) / max(1, total - peak))


def _sigmoid(t: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-t))`` with ``exp`` from ``_exp``."""
    return 1.0 / (1.0 + _exp(-np.clip(t, -700.0, 700.0)))


_INV_LN2 = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693145751953125, 1.42860682030941723212e-06  # ln 2 split so that k * _LN2_HI is exact
_EXP_TERMS = [1.0 / math.factorial(n) for n in range(14, -1, -1)]


def _exp(t: np.ndarray) -> np.ndarray:
    """``e**t`` for ``|t| <= 700``, within a few ulps, from IEEE additions and multiplications alone: the same bits
    on every CPU. ``t = k ln 2 + r`` with ``|r| <= ln 2 / 2``, then ``e**r`` by its Taylor series (Horner)."""
    k = np.rint(t * _INV_LN2)
    r = (t - k * _LN2_HI) - k * _LN2_LO
    power = np.full_like(r, _EXP_TERMS[0])
    for term in _EXP_TERMS[1:]:
        power = power * r + term
    return np.ldexp(power, k.astype(np.int64))


class _Adam:
    """Adam (Kingma & Ba) on float64 arrays updated in place."""

    def __init__(self, params):
        self.params, self.t = params, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.beta1_t = self.beta2_t = 1.0  # running powers, multiplied: pow may round by the CPU's libm

    def step(self, grads, rate: float) -> None:
        self.t += 1
        self.beta1_t *= _BETA1
        self.beta2_t *= _BETA2
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= _BETA1
            m += (1 - _BETA1) * g
            v *= _BETA2
            v += (1 - _BETA2) * g * g
            p -= rate * (m / (1 - self.beta1_t)) / (np.sqrt(v / (1 - self.beta2_t)) + _ADAM_EPS)
