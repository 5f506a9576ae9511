"""k-means (seeded k-means++ and Lloyd iterations), and several prototypes per class by k-means inside each class.

Squared euclidean distances are measured in float64 (``fmproto.search.distances``); a float32 matrix
product only screens which pairs to measure, so every figure is the same for any BLAS and thread count."""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fmproto.pipeline.checks import check_int, is_int, labels, rows as checked_rows
from fmproto.prototypes.centroids import nearest_prototype
from fmproto.prototypes.lvq import glvq
from fmproto.search.distances import (as_rows, exact_distances, exact_minimum, exact_nearest, pairwise_distances,
                               screening_error, squared_norms)

_CHUNK = 4096  # rows of X per distance block: 4096 x n_clusters float32, small next to X itself
_MEASURE_ELEMENTS = 1 << 16  # float64 elements of rows that _measure handles at once: 512 KB, cache-sized


@dataclass
class KMeansResult:
    """One k-means run."""

    centers: np.ndarray  # (n_clusters, n_features) float32
    assignments: np.ndarray  # (n_samples,) int64, index of each row's nearest centre
    inertia: float  # sum of squared euclidean distances from the rows to their centres, float64
    n_iter: int  # assignment steps run, = len(history)
    history: np.ndarray  # (n_iter,) float64, inertia / n_samples after each assignment step


def kmeans(X: np.ndarray, n_clusters: int, *, seed: int | np.random.SeedSequence | np.random.Generator,
           max_iter: int = 100, tol: float = 1e-4, init: np.ndarray | None = None) -> KMeansResult:
    """Lloyd's algorithm on the rows of ``X (n_samples, n_features)`` or ``(n_samples, H, W)``.

    Greedy k-means++ (as scikit-learn) seeded by ``seed`` unless ``init (n_clusters, n_features)`` is given.
    Stops after ``max_iter`` steps, when a step changes no assignment or gains at most ``tol`` of the inertia.
    Ties go to the lowest centre; an emptied cluster takes the row furthest from its centre (lowest index);
    a step that rounding would make worse is discarded and the run stops. ``ValueError`` for NaN or inf in
    ``X``, ``n_clusters`` outside ``1..n_samples``, ``max_iter < 1``, or ``tol`` negative or not finite."""
    X = checked_rows(X, "X", dtype=np.float32)
    n_samples = len(X)
    if not is_int(n_clusters) or not 1 <= n_clusters <= n_samples:
        raise ValueError(f"n_clusters must be in 1..{n_samples} (the number of rows); got {n_clusters!r}")
    max_iter = check_int(max_iter, "max_iter", low=1)
    if not _is_real(tol) or not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be >= 0 and finite; got {tol!r}")

    # Centre the data: the float32 screening form |x|^2 - 2x.c + |c|^2 then cancels smaller numbers,
    # so its rounding bound is tighter and fewer rows need a float64 look. Shifting changes no distance.
    offset = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    Xc = X - offset
    x_sq = squared_norms(Xc)  # (n_samples,) float32, for the screening product and its error bound
    if init is None:
        centers = Xc[_kmeans_plus_plus(Xc, x_sq, n_clusters, np.random.default_rng(seed))]
    else:
        init = checked_rows(init, "init", dtype=np.float32)
        if init.shape != (n_clusters, X.shape[1]):
            raise ValueError(f"init must have shape {(n_clusters, X.shape[1])}; got {init.shape}")
        centers = init - offset

    history: list[float] = []
    assignments = _assign(Xc, x_sq, centers)
    d2, sums, counts = _measure(Xc, assignments, centers)
    inertia = float(d2.sum())  # float64, in a fixed (pairwise) order
    history.append(inertia / n_samples)
    while len(history) < max_iter:
        new_centers = _update(Xc, sums, counts, d2, centers)
        new_assignments = _assign(Xc, x_sq, new_centers)
        new_d2, new_sums, new_counts = _measure(Xc, new_assignments, new_centers)
        new_inertia = float(new_d2.sum())
        if new_inertia > inertia:  # rounding of the centres only; keep the better, previous state
            break
        unchanged = np.array_equal(new_assignments, assignments)
        improvement = inertia - new_inertia
        centers, assignments, d2, inertia = new_centers, new_assignments, new_d2, new_inertia
        sums, counts = new_sums, new_counts
        history.append(inertia / n_samples)
        if unchanged or improvement <= tol * (inertia + improvement):
            break
    return KMeansResult(centers=(centers + offset).astype(np.float32), assignments=assignments, inertia=inertia,
                        n_iter=len(history), history=np.asarray(history, dtype=np.float64))


def kmeans_per_class(X: np.ndarray, y: np.ndarray, n_prototypes: np.ndarray, *, seed: int, max_iter: int = 100,
                     tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, list[KMeansResult]]:
    """The centres of a k-means run on each class's rows alone, ``n_prototypes (n_classes,)`` of them.

    Class ``c`` runs with ``SeedSequence(seed).spawn(n_classes)[c]``: another class's count changes nothing.
    Returns float32 ``prototypes (n_prototypes.sum(), n_features)`` (class 0's first), their int64 labels and a
    ``KMeansResult`` a class. ``ValueError`` for a count outside ``1..`` its class's rows or a bad label."""
    X = as_rows(X)
    y = np.asarray(y)
    counts = np.asarray(n_prototypes)
    if counts.ndim != 1 or len(counts) == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"n_prototypes must be a 1-D integer array, one count per class; got {n_prototypes!r}")
    n_classes = len(counts)
    y = labels(y, n_classes, "y", n=len(X))
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


@dataclass
class ClassPrototypes:
    """Prototypes by k-means inside each class, optionally refined by GLVQ, and how the fits went."""

    prototypes: np.ndarray  # (n_prototypes, ...) float32 in the shape of the images, class 0's first
    prototype_labels: np.ndarray  # (n_prototypes,) int64
    fits: list[KMeansResult]  # one a class
    summary: dict  # metric, n_prototypes, classes: {name: n_prototypes, inertia, iterations}, lvq

    def history_rows(self, classes: list[str]) -> list[dict]:
        """A row per k-means step: ``series`` (class name), ``iteration`` (from 1), ``mean_distance`` (4 decimals)."""
        return [{"series": name, "iteration": step + 1, "mean_distance": round(float(value), 4)}
                for name, fit in zip(classes, self.fits) for step, value in enumerate(fit.history)]


def fit_class_prototypes(X: np.ndarray, y: np.ndarray, n_prototypes: np.ndarray, classes: list[str], *, seed: int,
                         max_iter: int = 100, tol: float = 1e-4, metric: str = "mse", lvq_epochs: int = 0,
                         lvq_learning_rate: float = 0.3, X_valid: np.ndarray | None = None,
                         y_valid: np.ndarray | None = None) -> ClassPrototypes:
    """``kmeans_per_class`` on ``X (n, ...)``, then ``lvq_epochs`` of GLVQ from its prototypes (none for 0).

    ``summary`` is JSON-ready: inertias to 2 decimals and, with GLVQ, the accuracy of the k-means
    prototypes on ``X_valid, y_valid`` by ``metric`` (5 decimals), which GLVQ then needs."""
    shape, X = X.shape[1:], as_rows(X)
    prototypes, prototype_labels, fits = kmeans_per_class(X, y, n_prototypes, seed=seed, max_iter=max_iter, tol=tol)
    summary = {"metric": metric, "n_prototypes": int(np.sum(n_prototypes)), "classes": {
        name: {"n_prototypes": int(k), "inertia": round(float(fit.inertia), 2), "iterations": int(fit.n_iter)}
        for name, k, fit in zip(classes, n_prototypes, fits)}}
    if lvq_epochs > 0:
        if X_valid is None or y_valid is None:
            raise ValueError("GLVQ reports the validation accuracy before it: pass X_valid and y_valid")
        before = nearest_prototype(X_valid, prototypes, prototype_labels, len(classes), metric=metric).labels
        prototypes = glvq(prototypes, prototype_labels, X, y, epochs=lvq_epochs, learning_rate=lvq_learning_rate,
                          seed=seed)
        summary["lvq"] = {"epochs": lvq_epochs, "valid_accuracy_before": round(float(np.mean(before == y_valid)), 5)}
    return ClassPrototypes(prototypes.reshape(-1, *shape), prototype_labels, fits, summary)


def n_prototypes_per_class(spec: int | Mapping[str, int], classes: list[str], default: int = 1,
                           sizes: np.ndarray | None = None) -> np.ndarray:
    """Prototype counts ``(len(classes),)`` int64 from ``spec``: an int for every class, or ``{"Sandal": 3}``
    with ``default`` elsewhere. ``ValueError`` for an unknown class name, a count that is not an int >= 1, or
    (given ``sizes``, training images per class) one above its class's images, naming the class."""
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
    elif is_int(spec):
        _check_count(spec, "n_prototypes")
        counts = np.full(len(classes), spec, dtype=np.int64)
    else:
        raise ValueError(f"n_prototypes must be an int or a mapping from class name to int; got {spec!r}")
    if sizes is not None:
        sizes = np.asarray(sizes)
        if sizes.shape != counts.shape:
            raise ValueError(f"sizes must have one count per class, shape {counts.shape}; got {sizes.shape}")
        too_small = np.flatnonzero(counts > sizes)
        if len(too_small):  # the first such class
            c = too_small[0]
            if sizes[c] == 0:
                raise ValueError(f"class {classes[c]!r} (label {c}) has no training images for its prototypes")
            raise ValueError(f"class {classes[c]!r} needs 1..{sizes[c]} prototypes (it has {sizes[c]} training "
                             f"images); got {counts[c]}")
    return counts


def _kmeans_plus_plus(X: np.ndarray, x_sq: np.ndarray, n_clusters: int, rng: np.random.Generator) -> list[int]:
    """Greedy k-means++: the rows of ``X`` chosen as centres, by float64 distances (no BLAS in the draws); a
    float32 product screens out the rows a trial cannot come nearer to. ``x_sq``: ``squared_norms(X)``."""
    n_samples = len(X)
    n_trials = 2 + int(np.log(n_clusters))
    first = int(rng.integers(n_samples))
    chosen = [first]
    closest = exact_distances(X, X[first : first + 1])  # (n_samples,) float64
    for _ in range(1, n_clusters):
        total = closest.sum()
        if total > 0:
            # Inverse-CDF draws: each row with probability closest / total.
            cumulative = np.cumsum(closest)
            candidates = np.searchsorted(cumulative, rng.random(n_trials) * total, side="right")
            candidates = np.minimum(candidates, n_samples - 1)
        else:  # every row sits on a centre already (duplicates): any row is as good
            candidates = rng.integers(n_samples, size=n_trials)
        trials, t_sq = X[candidates], x_sq[candidates]
        D = pairwise_distances(X, trials, "sqeuclidean", Y_sq_norms=t_sq, X_sq_norms=x_sq)  # (n_samples, n_trials)
        best = _clear_best_trial(X, x_sq, trials, t_sq, D, closest)
        if best is None:  # trials too close to call from D: measure them all
            d2 = exact_minimum(X, trials, D, closest, X_sq_norms=x_sq, Y_sq_norms=t_sq)  # min(closest, distance)
            best = int(np.argmin(d2.sum(axis=0)))  # the trial that leaves the least inertia
            closest = d2[:, best]
        else:
            closest = exact_minimum(X, trials[best : best + 1], D[:, best : best + 1], closest,
                                    X_sq_norms=x_sq, Y_sq_norms=t_sq[best : best + 1])[:, 0]
        chosen.append(int(candidates[best]))
    return chosen


def _clear_best_trial(X, x_sq, trials, t_sq, D, closest) -> int | None:
    """The trial whose float64 inertia ``sum(minimum(closest, distance))`` is surely the least, or None:
    the bound on ``D`` brackets each trial's inertia, and its upper end must beat every other's lower end."""
    absolute, _ = screening_error("sqeuclidean", X, trials, x_sq, t_sq)  # (n_samples,)
    lower = np.minimum(closest[:, None], D - absolute[:, None]).sum(axis=0)  # (n_trials,) float64
    upper = np.minimum(closest[:, None], D + absolute[:, None]).sum(axis=0)
    best = int(np.argmin(upper))
    # 1e-9 relative covers the float64 rounding of these sums and of the exact ones.
    margin = 1e-9 * abs(upper[best])
    others = np.delete(lower, best)
    return best if np.all(upper[best] + margin < others - margin) else None


def _assign(X: np.ndarray, x_sq: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Nearest centre ``(n_samples,)`` int64 of each row by float64 distance, lowest index on ties."""
    c_sq = squared_norms(centers)
    assignments = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), _CHUNK):
        rows = slice(start, start + _CHUNK)
        D = pairwise_distances(X[rows], centers, "sqeuclidean", Y_sq_norms=c_sq, X_sq_norms=x_sq[rows])
        assignments[rows], _ = exact_nearest(X[rows], centers, D, X_sq_norms=x_sq[rows], Y_sq_norms=c_sq,
                                             return_distance=False)
    return assignments


def _measure(X: np.ndarray, assignments: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 ``d2 (n_samples,)`` of each row to its centre (as ``exact_distances``), and each cluster's float64
    sum of rows and count, from one pass over each cluster's rows in row order."""
    n_clusters = len(centers)
    counts = np.bincount(assignments, minlength=n_clusters)
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    d2 = np.empty(len(X), dtype=np.float64)
    order = np.argsort(assignments, kind="stable")  # rows grouped by cluster, in row order inside each
    ends = np.cumsum(counts)
    block = max(1, _MEASURE_ELEMENTS // max(1, X.shape[1]))
    for j in np.flatnonzero(counts):  # a loop over clusters; each is one vectorised pass over its rows
        center = centers[j].astype(np.float64)
        for start in range(ends[j] - counts[j], ends[j], block):
            rows = order[start : min(start + block, ends[j])]
            diff = X[rows].astype(np.float64)  # (rows, n_features)
            sums[j] += diff.sum(axis=0)
            diff -= center
            d2[rows] = np.einsum("ij,ij->i", diff, diff)  # the difference form of exact_distances
    return d2, sums, counts


def _update(X: np.ndarray, sums: np.ndarray, counts: np.ndarray, d2: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Each cluster's mean row (from ``_measure``); empty clusters re-seeded with the rows furthest from their centres."""
    new_centers = np.empty_like(centers)
    filled = counts > 0
    # Summed in float64 and rounded once: the centre is the float32 row nearest the true mean.
    new_centers[filled] = sums[filled] / counts[filled, None]
    empty = np.flatnonzero(~filled)
    if len(empty):
        furthest = np.argsort(-d2, kind="stable")[: len(empty)]  # largest first, lowest index on ties
        new_centers[empty] = X[furthest]
    return new_centers


def _is_real(value) -> bool:
    """True for Python and numpy ints and floats; False for bools and everything else."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_count(value, name: str) -> None:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")


def rows_by_class(prototypes: np.ndarray, prototype_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Prototypes ``(n, ...)`` a row per class, ``(n_classes * width, ...)``, ``width`` the largest class's count,
    in their order inside each class; short rows padded with zeros."""
    width = int(np.bincount(prototype_labels, minlength=n_classes).max())
    grid = np.zeros((n_classes, width, *prototypes.shape[1:]), dtype=prototypes.dtype)
    order = np.argsort(prototype_labels, kind="stable")
    sorted_labels = prototype_labels[order]
    column = np.arange(len(order)) - np.searchsorted(sorted_labels, sorted_labels)
    grid[sorted_labels, column] = prototypes[order]
    return grid.reshape(n_classes * width, *prototypes.shape[1:])
