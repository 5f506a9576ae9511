"""GLVQ: generalised learning vector quantisation (Sato & Yamada, 1995) to refine labelled prototypes.

For an image ``x`` of class ``y``, let ``d_plus`` be its squared euclidean distance to the nearest
prototype of class ``y`` and ``d_minus`` to the nearest prototype of any other class. GLVQ lowers
the mean of the relative distance difference

    mu(x) = (d_plus - d_minus) / (d_plus + d_minus)    in [-1, 1], negative when x is classified right,

by gradient steps that pull the nearest correct prototype towards ``x`` and push the nearest wrong
one away, each weighted by how close a call ``x`` is.
"""

import numpy as np

from fmproto.pipeline.checks import check_int, is_int, rows as checked_rows
from fmproto.search.distances import exact_nearest, pairwise_distances, squared_norms

DEFAULT_LEARNING_RATE = 0.3  # scale-free (see ``glvq``); tuned with 10-50 k-means prototypes a class


def glvq(prototypes: np.ndarray, prototype_labels: np.ndarray, X: np.ndarray, y: np.ndarray, *, epochs: int,
         learning_rate: float = DEFAULT_LEARNING_RATE, batch_size: int = 256,
         seed: int | np.random.SeedSequence | np.random.Generator) -> np.ndarray:
    """Refine labelled prototypes ``(n_prototypes, n_features)`` (or images) by mini-batch GLVQ on ``X, y``.

    ``epochs`` passes over ``X`` (0: unchanged), each in a fresh order drawn with ``seed``, in batches of
    ``batch_size``. ``learning_rate`` decays linearly to 0 and is scale-free (the gradient is multiplied
    by the batch's mean ``d_plus + d_minus``), so it suits pixels in 0..1 and 0..255 alike; 0.3 suits 5
    to 50 prototypes a class on Fashion-MNIST, 1 is worse and 10 diverges. Every class in ``y`` needs
    a prototype, and at least two classes. Returns float32 prototypes shaped as given; ``ValueError``
    for bad arguments or a step that makes a prototype NaN or inf (naming epoch and step). Nearest
    prototypes by float64 distance, lowest index on ties; steps summed in float64 without BLAS.
    """
    W0 = np.asarray(prototypes)
    W = checked_rows(W0, "prototypes", dtype=np.float32).copy()
    X = checked_rows(X, "X", dtype=np.float32)
    y = np.asarray(y).astype(np.int64, copy=False)
    labels = np.asarray(prototype_labels).astype(np.int64, copy=False)
    if not is_int(epochs) or epochs < 0:
        raise ValueError(f"epochs must be >= 0 and an integer; got {epochs!r}")
    if not (learning_rate > 0 and np.isfinite(learning_rate)):
        raise ValueError(f"learning_rate must be > 0 and finite; got {learning_rate!r}")
    batch_size = check_int(batch_size, "batch_size", low=1)
    if labels.shape != (len(W),):
        raise ValueError(f"{len(W)} prototypes but prototype_labels has shape {labels.shape}")
    if len(y) != len(X) or X.shape[1] != W.shape[1]:
        raise ValueError(f"X {X.shape}, y {y.shape} and prototypes {W.shape} do not match")
    check_prototype_classes(labels, y, "GLVQ")
    if epochs == 0 or len(X) == 0:
        return W.reshape(W0.shape)

    total_steps = epochs * -(-len(X) // batch_size)
    for epoch, step, batch in minibatches(len(X), batch_size, epochs, np.random.default_rng(seed)):
        rate = learning_rate * (1.0 - step / total_steps)  # linear decay to 0
        if not _step(W, labels, X[batch], y[batch], rate):
            raise ValueError(f"GLVQ diverged: epoch {epoch + 1}, step {step + 1} of {total_steps} made a "
                             f"prototype NaN or inf (learning_rate={learning_rate!r}); use a smaller learning_rate")
    return W.reshape(W0.shape)


def minibatches(n_rows: int, batch_size: int, epochs: int, rng: np.random.Generator, min_rows: int = 1):
    """``(epoch, step, rows)`` for each batch of ``epochs`` passes over ``n_rows`` rows, each pass in an order
    drawn from ``rng``; a batch of fewer than ``min_rows`` rows (a pass's last) is skipped and not counted."""
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(n_rows)
        for start in range(0, n_rows, batch_size):
            batch = order[start : start + batch_size]
            if len(batch) >= min_rows:
                yield epoch, step, batch
                step += 1


def check_prototype_classes(prototype_labels: np.ndarray, y: np.ndarray, method: str) -> None:
    """``ValueError`` unless every class in ``y`` has a prototype and the prototypes have two classes or more:
    an LVQ step needs a nearest right and a nearest wrong prototype for every image."""
    missing = np.setdiff1d(np.unique(y), prototype_labels)
    if len(missing):
        raise ValueError(f"class {int(missing[0])} has images but no prototype; every class in y needs at least one")
    if len(np.unique(prototype_labels)) < 2:
        raise ValueError(f"{method} needs prototypes of at least two classes; got labels {np.unique(prototype_labels).tolist()}")


def _step(W: np.ndarray, labels: np.ndarray, Xb: np.ndarray, yb: np.ndarray, rate: float) -> bool:
    """One gradient step on the batch ``Xb (b, n_features)``; updates ``W`` in place.

    Returns False, leaving ``W`` as it was, if the step would make a prototype NaN or inf.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # float32 overflow (huge prototypes): measured in float64 below
        w_sq = squared_norms(W)
        D = pairwise_distances(Xb, W, "sqeuclidean", Y_sq_norms=w_sq)  # (b, n_prototypes) float32, screening only
    same = labels[None, :] == yb[:, None]  # (b, n_prototypes): prototype has the image's class
    # Nearest correct and nearest wrong prototype, (b,) each, and their float64 squared distances.
    plus, d_plus = exact_nearest(Xb, W, D, allowed=same, Y_sq_norms=w_sq)
    minus, d_minus = exact_nearest(Xb, W, D, allowed=~same, Y_sq_norms=w_sq)
    denom = d_plus + d_minus
    denom[denom == 0] = 1.0  # x on both prototypes: mu is flat there, the coefficients below are 0
    # d mu / d W_plus = -4 d_minus / denom^2 (x - W_plus); d mu / d W_minus = +4 d_plus / denom^2 (x - W_minus).
    # Scaling by the batch's mean denom makes the step scale-free (pixel units in, pixel units out).
    scale = rate * denom.mean() / len(Xb)
    # Each image pulls its plus prototype towards it and pushes its minus one away (plus != minus:
    # they have different classes). Sorted stably by prototype, each prototype's pulls are summed in
    # float64 in a fixed order (no BLAS): step_j = sum_i G[j, i] (x_i - W_j), rounded once to float32.
    target = np.concatenate([plus, minus])  # (2b,)
    weight = np.concatenate([4.0 * scale * d_minus / denom**2, -4.0 * scale * d_plus / denom**2])
    image = np.tile(np.arange(len(Xb)), 2)
    order = np.argsort(target, kind="stable")
    target, weight, image = target[order], weight[order], image[order]
    pulls = Xb[image].astype(np.float64)
    pulls -= W[target]
    pulls *= weight[:, None]  # (2b, n_features)
    starts = np.flatnonzero(np.r_[True, target[1:] != target[:-1]])
    moved = target[starts]
    steps = np.empty((len(moved), W.shape[1]))
    for k, (first, last) in enumerate(zip(starts, np.r_[starts[1:], len(target)])):  # ~ a loop over prototypes
        steps[k] = pulls[first:last].sum(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        new = (W[moved] + steps).astype(np.float32)
    if not np.isfinite(new).all():
        return False
    W[moved] = new
    return True
