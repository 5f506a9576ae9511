"""Exact k nearest neighbours (through ``engine.KnnIndex``) and the votes that classify by them."""

from collections.abc import Callable
from typing import Literal

import numpy as np

from fmproto.pipeline.checks import is_int, labels, rows as checked_rows
from fmproto.search.distances import check_metric
from fmproto.search.engine import COMPONENTS, KNN_METRICS, KnnIndex
from fmproto.search.screening import checked_query

KnnMetric = Literal["euclidean", "sqeuclidean", "cosine", "manhattan"]
Weights = Literal["uniform", "distance"]
WEIGHTS: tuple[str, ...] = ("uniform", "distance")


def kneighbors(X_query: np.ndarray, X_train: np.ndarray, k: int, metric: KnnMetric = "euclidean",
               chunk: int = 1024, engine: Callable[[int], KnnIndex] = KnnIndex) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest training rows of every query row, exactly, nearest first: float32 ``distances
    (n_queries, k)``, the float64 ones (euclidean: rooted) rounded once, and int64 ``indices``, ties to the
    lower index. ``X_query (n_queries, d)``, ``X_train (n_train, d)`` (or images); ``chunk``: rows at once.
    ``engine(components)``: an unfitted index, ``KnnIndex`` or a ``cluster.ShardedIndex`` (the same bytes)."""
    check_metric(metric, KNN_METRICS)
    X_train = checked_rows(X_train, "X_train")
    n_features = X_train.shape[1]
    X_query = checked_query(X_query, X_train.shape, k, chunk)  # before the fit, which costs
    # Projecting a row costs about 4 n_features m multiply-adds; each query saves n_features - m a row
    # (on 784 pixels it pays from 613 queries). Both indexes give the same bits.
    m = min(COMPONENTS, n_features)
    pays = n_features >= 2 * m and len(X_query) * (n_features - m) > 4 * n_features * m
    return engine(COMPONENTS if pays else n_features).fit(X_train, metric).kneighbors(X_query, k, chunk=chunk)


def vote(neighbor_labels: np.ndarray, neighbor_distances: np.ndarray, n_classes: int,
         weights: Weights = "uniform") -> np.ndarray:
    """Majority label ``(n_queries,)`` int64 of each row's neighbours, as scikit-learn's ``KNeighborsClassifier``.

    ``neighbor_labels (n_queries, k)`` in ``0..n_classes-1``, -1: missing (no vote). ``weights='distance'``
    reads ``neighbor_distances``: votes ``1 / d`` summed in float64, or only the neighbours at distance 0,
    each 1. Ties go to the lowest label; a row with no valid neighbour gets -1.
    """
    _check_weights(weights)
    labels = np.asarray(neighbor_labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"neighbor_labels must be a 2-D integer array; got {labels.dtype} of shape {labels.shape}")
    if not is_int(n_classes) or n_classes < 1:
        raise ValueError(f"n_classes must be an integer >= 1; got {n_classes!r}")
    if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
        raise ValueError(f"neighbor_labels must lie in 0..{n_classes - 1} (or -1 for missing); "
                         f"got values in {labels.min()}..{labels.max()}")
    n_queries, k = labels.shape
    valid = labels >= 0
    if weights == "uniform":
        w = valid.astype(np.float64)
    else:
        d = np.asarray(neighbor_distances, dtype=np.float64)
        if d.shape != labels.shape:
            raise ValueError(f"neighbor_distances must have the shape of neighbor_labels {labels.shape}; got {d.shape}")
        if np.any(np.isnan(d) & valid) or np.any((d < 0) & valid):
            raise ValueError("neighbor_distances must be >= 0 (NaN found or negative) where labels are valid")
        with np.errstate(divide="ignore"):
            w = 1.0 / d
        exact = (d == 0) & valid
        exact_row = exact.any(axis=1)
        w[exact_row] = exact[exact_row]  # scikit-learn: only the copies vote
        w[~valid] = 0.0
    # One bincount over offset labels: row r's class c lands in bin r * n_classes + c.
    offset = np.arange(n_queries, dtype=np.int64)[:, None] * n_classes + np.where(valid, labels, 0)
    scores = np.bincount(offset.ravel(), weights=w.ravel(), minlength=n_queries * n_classes)
    scores = scores.reshape(n_queries, n_classes)
    predicted = scores.argmax(axis=1)  # first maximum: the lowest label wins a tie
    predicted[~valid.any(axis=1)] = -1
    return predicted.astype(np.int64, copy=False)


def predict(X_query: np.ndarray, X_train: np.ndarray, y_train: np.ndarray, n_classes: int, k: int = 5,
            metric: KnnMetric = "euclidean", weights: Weights = "uniform", chunk: int = 1024) -> np.ndarray:
    """Labels ``(n_queries,)``: ``vote`` of the ``kneighbors``; ``y_train (n_train,)`` in ``0..n_classes-1``."""
    _check_weights(weights)
    y_train = labels(y_train, n_classes, "y_train", n=len(X_train))
    distances, indices = kneighbors(X_query, X_train, k, metric=metric, chunk=chunk)
    return vote(y_train[indices], distances, n_classes, weights=weights)


def predict_for_ks(neighbor_indices: np.ndarray, neighbor_distances: np.ndarray, y_train: np.ndarray,
                   n_classes: int, ks, weights: Weights = "uniform") -> dict[int, np.ndarray]:
    """``{k: predict(..., k=k)}`` for each k of ``ks`` (each in ``1..k_max``) from one ``kneighbors`` search:
    ``neighbor_indices`` and ``neighbor_distances`` ``(n_queries, k_max)``, nearest first."""
    _check_weights(weights)
    indices = np.asarray(neighbor_indices)
    if indices.ndim != 2:
        raise ValueError(f"neighbor_indices must be 2-D (n_queries, k_max); got shape {indices.shape}")
    ks = list(ks)
    k_max = indices.shape[1]
    bad = [k for k in ks if not is_int(k) or not 1 <= k <= k_max]
    if not ks or bad:
        raise ValueError(f"ks must be a non-empty list of integers in 1..{k_max} (the neighbours given); got {ks!r}")
    labels = np.asarray(y_train)[indices]
    return {int(k): vote(labels[:, :k], np.asarray(neighbor_distances)[:, :k], n_classes, weights) for k in ks}


def _check_weights(weights) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHTS))}; got {weights!r}")
