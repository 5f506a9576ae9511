"""Nearest-prototype classification: class means, distances to prototypes, the nearest one's class.

A prototype is a row in feature space with a class label; a class may have one (nearest centroid)
or several (k-means prototypes). An image takes the class of its nearest prototype.
"""

from dataclasses import dataclass

import numpy as np

from fmproto.pipeline.checks import labels as checked_labels
from fmproto.search.distances import Metric, as_rows, check_metric, exact_nearest, pairwise_distances, squared_norms


@dataclass
class NearestPrototypes:
    """What ``nearest_prototype`` found for each of ``n`` images."""

    labels: np.ndarray  # (n,) int64, the predicted class
    distances: np.ndarray  # (n,) float32, distance to the nearest prototype (of the predicted class)
    class_distances: np.ndarray  # (n, n_classes) float32, distance to each class's nearest prototype


def class_means(X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """The mean row of each class, ``(n_classes, n_features)`` float32, summed in float64 (order-free).

    ``X (n_samples, n_features)`` or images, ``y (n_samples,)`` in ``0..n_classes-1``; ``ValueError``
    for a label out of range or a class without images.
    """
    X = as_rows(X)
    y = checked_labels(y, n_classes, "y", n=len(X))
    counts = np.bincount(y, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise ValueError(f"class {int(empty[0])} has no images; every class in 0..{n_classes - 1} needs at least one")
    centroids = np.empty((n_classes, X.shape[1]), dtype=np.float32)
    for c in range(n_classes):  # a loop over classes; each mean is one vectorised pass
        centroids[c] = X[y == c].mean(axis=0, dtype=np.float64)
    return centroids


def prototype_distances(X: np.ndarray, prototypes: np.ndarray, metric: Metric = "mse", chunk: int = 4096) -> np.ndarray:
    """Float32 distances ``(n_samples, n_prototypes)`` by ``pairwise_distances``, ``chunk`` rows of ``X`` at a time."""
    check_metric(metric)
    _check_chunk(chunk)
    X, prototypes = as_rows(X), as_rows(prototypes)
    p_sq = squared_norms(prototypes)  # (n_prototypes,), once rather than once per chunk
    D = np.empty((len(X), len(prototypes)), dtype=np.float32)
    for start in range(0, len(X), chunk):
        D[start : start + chunk] = pairwise_distances(X[start : start + chunk], prototypes, metric, Y_sq_norms=p_sq)
    return D


def nearest_prototype(X: np.ndarray, prototypes: np.ndarray, prototype_labels: np.ndarray, n_classes: int,
                      metric: Metric = "mse", chunk: int = 4096) -> NearestPrototypes:
    """Classify each image by its nearest prototype (``prototype_labels`` in ``0..n_classes-1``).

    ``class_distances[i, c]``: the distance from image ``i`` to class ``c``'s nearest prototype (inf
    for none), by ``exact_distances`` in float64 rounded once to float32 (a float32 block only
    screens, ``exact_nearest``), so any BLAS gives the same bits; ``labels`` is its float64 argmin,
    the lowest class on ties. ``mse``, ``sqeuclidean`` and ``euclidean`` predict alike.
    """
    check_metric(metric)
    _check_chunk(chunk)
    X, prototypes = as_rows(X), as_rows(prototypes)
    prototype_labels = checked_labels(prototype_labels, n_classes, "prototype_labels", n=len(prototypes))
    if X.shape[1] != prototypes.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but the prototypes have {prototypes.shape[1]}")

    # euclidean and mse rank like sqeuclidean: screen and compare in it, convert at the end.
    screen = "sqeuclidean" if metric in ("sqeuclidean", "euclidean", "mse") else metric
    members = [np.flatnonzero(prototype_labels == c) for c in range(n_classes)]
    p_sq = squared_norms(prototypes)
    exact = np.full((len(X), n_classes), np.inf)  # float64, in the screening metric
    for start in range(0, len(X), chunk):
        rows = slice(start, start + chunk)
        x_sq = squared_norms(X[rows]) if screen == "sqeuclidean" else None
        D = pairwise_distances(X[rows], prototypes, screen, Y_sq_norms=p_sq, X_sq_norms=x_sq)  # (chunk, n_prototypes)
        for c, idx in enumerate(members):  # each class's nearest prototype, measured in float64
            if len(idx):
                _, exact[rows, c] = exact_nearest(X[rows], prototypes[idx], D[:, idx], screen, X_sq_norms=x_sq,
                                                  Y_sq_norms=p_sq[idx])
    labels = np.argmin(exact, axis=1)  # argmin takes the first minimum: lowest class on ties
    if metric == "euclidean":
        np.sqrt(exact, out=exact)
    elif metric == "mse":
        exact /= X.shape[1]
    class_distances = exact.astype(np.float32)
    distances = class_distances[np.arange(len(X)), labels]
    return NearestPrototypes(labels=labels.astype(np.int64), distances=distances, class_distances=class_distances)


def _check_chunk(chunk: int) -> None:
    if int(chunk) < 1:
        raise ValueError(f"chunk must be a positive number of rows; got {chunk!r}")
