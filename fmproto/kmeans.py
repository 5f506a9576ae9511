"""k-means (seeded k-means++ and Lloyd iterations), and several prototypes per class by k-means inside each class.

Distances are squared euclidean, through ``fmproto.distances.pairwise_distances`` a chunk of rows
at a time, so memory stays bounded for the full training set.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fmproto.checks import is_int
from fmproto.distances import as_rows, pairwise_distances, squared_norms
from fmproto.prototypes import prototype_distances

# Rows of X per distance block: 4096 x n_clusters float32, small next to X itself.
_CHUNK = 4096


@dataclass
class KMeansResult:
    """One k-means run."""

    centers: np.ndarray  # (n_clusters, n_features) float32
    assignments: np.ndarray  # (n_samples,) int64, index of each row's nearest centre
    inertia: float  # sum of squared euclidean distances from the rows to their centres
    n_iter: int  # assignment steps run, = len(history)
    history: np.ndarray  # (n_iter,) float64, inertia / n_samples after each assignment step


def kmeans(
    X: np.ndarray,
    n_clusters: int,
    *,
    seed: int | np.random.SeedSequence | np.random.Generator,
    max_iter: int = 100,
    tol: float = 1e-4,
    init: np.ndarray | None = None,
) -> KMeansResult:
    """Cluster the rows of ``X`` into ``n_clusters`` groups by Lloyd's algorithm.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or (n_samples, H, W)
    n_clusters : int, 1 <= n_clusters <= n_samples
    seed : int, SeedSequence or Generator
        Passed to ``numpy.random.default_rng`` for the k-means++ draws; the same seed gives
        bit-identical results.
    max_iter : int
        Most assignment steps.
    tol : float >= 0
        Stop once an assignment step lowers the inertia by at most ``tol`` times its previous value
        (with ``tol=0``: once it stops falling), or changes no assignment.
    init : ndarray of shape (n_clusters, n_features), optional
        Starting centres instead of k-means++ (``seed`` is then unused).

    Returns
    -------
    KMeansResult
        ``centers`` are the centres the final ``assignments`` were made against; ``inertia`` and
        ``history`` are measured against them.

    Notes
    -----
    Initialisation is greedy k-means++ (as scikit-learn): the first centre is a uniformly drawn row;
    each next one is the best, by resulting inertia, of ``2 + int(log(n_clusters))`` rows drawn with
    probability proportional to their squared distance to the nearest centre chosen so far.

    Each row goes to its nearest centre, the lowest centre index on ties. A cluster left empty by an
    assignment step is re-seeded with the row furthest from its own centre (lowest row index on ties;
    several empty clusters take the next-furthest rows in turn), which also lowers the inertia.

    The inertia never increases from one step to the next (``history`` is non-increasing). Exact
    arithmetic guarantees that; a step that float32 rounding would make worse is discarded and the
    run stops with the previous centres.
    """
    X = as_rows(X)
    n_samples = len(X)
    if not 1 <= int(n_clusters) <= n_samples:
        raise ValueError(f"n_clusters must be in 1..{n_samples} (the number of rows); got {n_clusters!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1; got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0; got {tol!r}")

    # Centre the data: the |x|^2 - 2x.c + |c|^2 form then cancels smaller numbers, so float32
    # distances (and hence assignments) are more accurate. Shifting changes no distance.
    offset = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    Xc = X - offset
    if init is None:
        centers = _kmeans_plus_plus(Xc, n_clusters, np.random.default_rng(seed))
    else:
        init = as_rows(init)
        if init.shape != (n_clusters, X.shape[1]):
            raise ValueError(f"init must have shape {(n_clusters, X.shape[1])}; got {init.shape}")
        centers = init - offset

    history: list[float] = []
    assignments, d2 = _assign(Xc, centers)
    inertia = float(d2.sum(dtype=np.float64))
    history.append(inertia / n_samples)
    while len(history) < max_iter:
        new_centers = _update(Xc, assignments, d2, centers)
        new_assignments, new_d2 = _assign(Xc, new_centers)
        new_inertia = float(new_d2.sum(dtype=np.float64))
        if new_inertia > inertia:  # float32 rounding only; keep the better, previous state
            break
        unchanged = np.array_equal(new_assignments, assignments)
        improvement = inertia - new_inertia
        centers, assignments, d2, inertia = new_centers, new_assignments, new_d2, new_inertia
        history.append(inertia / n_samples)
        if unchanged or improvement <= tol * (inertia + improvement):
            break
    return KMeansResult(
        centers=(centers + offset).astype(np.float32),
        assignments=assignments,
        inertia=inertia,
        n_iter=len(history),
        history=np.asarray(history, dtype=np.float64),
    )


def kmeans_per_class(
    X: np.ndarray,
    y: np.ndarray,
    n_prototypes: np.ndarray,
    *,
    seed: int,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray, list[KMeansResult]]:
    """Prototypes for each class: the centres of a k-means run on that class's rows alone.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or (n_samples, H, W)
    y : ndarray of shape (n_samples,), ints in ``0..n_classes-1``
    n_prototypes : ndarray of shape (n_classes,), ints >= 1
        Prototypes per class (see ``n_prototypes_per_class``); ``n_classes = len(n_prototypes)``.
    seed : int
        Class ``c`` runs with ``numpy.random.SeedSequence(seed).spawn(n_classes)[c]``: independent
        streams, and class ``c``'s prototypes do not change when another class's count does.
    max_iter, tol
        As in ``kmeans``.

    Returns
    -------
    prototypes : ndarray of shape (n_prototypes.sum(), n_features), float32
        Class 0's prototypes first, then class 1's, and so on.
    prototype_labels : ndarray of shape (n_prototypes.sum(),), int64
    results : list of KMeansResult, one per class

    Raises
    ------
    ValueError
        If a count is below 1 or above the number of that class's rows, or a label is out of range.
    """
    X = as_rows(X)
    y = np.asarray(y)
    counts = np.asarray(n_prototypes)
    if counts.ndim != 1 or len(counts) == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"n_prototypes must be a 1-D integer array, one count per class; got {n_prototypes!r}")
    n_classes = len(counts)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        raise ValueError(f"y must lie in 0..{n_classes - 1} (one count per class); got {int(y[bad][0])}")
    sizes = np.bincount(y, minlength=n_classes)
    for c in range(n_classes):
        if not 1 <= counts[c] <= sizes[c]:
            raise ValueError(f"class {c} needs 1..{sizes[c]} prototypes (it has {sizes[c]} images); "
                             f"got {int(counts[c])}")

    seeds = np.random.SeedSequence(seed).spawn(n_classes)
    results = [kmeans(X[y == c], int(counts[c]), seed=seeds[c], max_iter=max_iter, tol=tol) for c in range(n_classes)]
    prototypes = np.concatenate([r.centers for r in results]).astype(np.float32, copy=False)
    prototype_labels = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    return prototypes, prototype_labels, results


def n_prototypes_per_class(spec: int | Mapping[str, int], classes: list[str], default: int = 1) -> np.ndarray:
    """Prototype counts per class from a params value.

    Parameters
    ----------
    spec : int or mapping from class name to int
        An int applies to every class; a mapping sets the named classes and leaves ``default`` for
        the others (``{"Sandal": 3}`` gives 3 for Sandal, 1 elsewhere).
    classes : list of str
        Class names in label order.
    default : int
        Count for classes a mapping does not name.

    Returns
    -------
    counts : ndarray of shape (len(classes),), int64

    Raises
    ------
    ValueError
        For an unknown class name (the message lists the allowed ones), or a count that is not an
        int >= 1. Whether a class has that many images is checked by ``kmeans_per_class``.
    """
    _check_count(default, "default")
    classes = list(classes)
    if isinstance(spec, Mapping):
        counts = np.full(len(classes), default, dtype=np.int64)
        for name, count in spec.items():
            if name not in classes:
                allowed = ", ".join(map(repr, classes))
                raise ValueError(f"unknown class name {name!r} in n_prototypes; allowed: {allowed}")
            _check_count(count, f"n_prototypes[{name!r}]")
            counts[classes.index(name)] = count
        return counts
    if is_int(spec):
        _check_count(spec, "n_prototypes")
        return np.full(len(classes), spec, dtype=np.int64)
    raise ValueError(f"n_prototypes must be an int or a mapping from class name to int; got {spec!r}")


def _kmeans_plus_plus(X: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding; returns ``(n_clusters, n_features)`` float32 centres (rows of ``X``)."""
    n_samples = len(X)
    n_trials = 2 + int(np.log(n_clusters))
    first = int(rng.integers(n_samples))
    chosen = [first]
    closest = prototype_distances(X, X[first : first + 1], "sqeuclidean")[:, 0].astype(np.float64)  # (n_samples,)
    for _ in range(1, n_clusters):
        total = closest.sum()
        if total > 0:
            # Inverse-CDF draws: each row with probability closest / total.
            cumulative = np.cumsum(closest)
            candidates = np.searchsorted(cumulative, rng.random(n_trials) * total, side="right")
            candidates = np.minimum(candidates, n_samples - 1)
        else:  # every row sits on a centre already (duplicates): any row is as good
            candidates = rng.integers(n_samples, size=n_trials)
        d2 = prototype_distances(X, X[candidates], "sqeuclidean").astype(np.float64)  # (n_samples, n_trials)
        np.minimum(d2, closest[:, None], out=d2)
        best = int(np.argmin(d2.sum(axis=0)))  # the trial that leaves the least inertia
        chosen.append(int(candidates[best]))
        closest = d2[:, best]
    return X[chosen].copy()


def _assign(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each row (lowest index on ties) and the squared distance to it, both ``(n_samples,)``."""
    c_sq = squared_norms(centers)
    assignments = np.empty(len(X), dtype=np.int64)
    d2 = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), _CHUNK):
        D = pairwise_distances(X[start : start + _CHUNK], centers, "sqeuclidean", Y_sq_norms=c_sq)
        assignments[start : start + len(D)] = np.argmin(D, axis=1)
        d2[start : start + len(D)] = D[np.arange(len(D)), assignments[start : start + len(D)]]
    return assignments, d2


def _update(X: np.ndarray, assignments: np.ndarray, d2: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Each cluster's mean row; empty clusters re-seeded with the rows furthest from their centres."""
    n_clusters = len(centers)
    counts = np.bincount(assignments, minlength=n_clusters)
    new_centers = np.empty_like(centers)
    for j in np.flatnonzero(counts):  # a loop over clusters; each sum is one vectorised pass
        # Summed in float64 and rounded once: the centre is the float32 row nearest the true mean.
        new_centers[j] = X[assignments == j].sum(axis=0, dtype=np.float64) / counts[j]
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        furthest = np.argsort(-d2, kind="stable")[: len(empty)]  # largest first, lowest index on ties
        new_centers[empty] = X[furthest]
    return new_centers



def _check_count(value, name: str) -> None:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")


def rows_by_class(prototypes: np.ndarray, prototype_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Prototypes ``(n, ...)`` laid out a row per class, ``(n_classes * width, ...)``, short rows padded with zeros.

    ``width`` is the largest class's count; prototypes keep their order inside each class.
    """
    width = int(np.bincount(prototype_labels, minlength=n_classes).max())
    grid = np.zeros((n_classes, width, *prototypes.shape[1:]), dtype=prototypes.dtype)
    order = np.argsort(prototype_labels, kind="stable")
    sorted_labels = prototype_labels[order]
    column = np.arange(len(order)) - np.searchsorted(sorted_labels, sorted_labels)
    grid[sorted_labels, column] = prototypes[order]
    return grid.reshape(n_classes * width, *prototypes.shape[1:])
