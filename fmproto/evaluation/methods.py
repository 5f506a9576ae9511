"""The four classifiers behind one interface, so evaluate-test and `fmproto explain` predict alike.

A ``Model`` holds what a method needs at query time: the fit set and its ``knn.KnnIndex`` (for
kNN), the prototypes (for centroids and k-means) or an Annoy index (for ann). ``fit`` builds one,
``predict`` uses it.
"""

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fmproto.search import ann, knn
from fmproto.prototypes.kmeans import kmeans_per_class
from fmproto.prototypes.lvq import glvq
from fmproto.prototypes.centroids import class_means, nearest_prototype

Method = Literal["centroids", "kmeans", "knn", "ann"]
METHODS: tuple[str, ...] = ("centroids", "kmeans", "knn", "ann")


@dataclass
class Settings:
    """Every knob of every method; each method reads only its own."""

    k: int = 5
    metric: str = "euclidean"  # exact kNN metric
    weights: str = "uniform"
    prototype_metric: str = "mse"
    n_prototypes: np.ndarray | None = None  # (n_classes,) k-means prototypes per class
    kmeans_seed: int = 0
    kmeans_max_iter: int = 100
    kmeans_tol: float = 1e-4
    lvq_epochs: int = 0
    lvq_learning_rate: float = 0.3
    ann_metric: str = "euclidean"
    ann_n_trees: int = 10
    ann_search_k: int = -1
    ann_seed: int = 42


@dataclass
class Model:
    method: str
    settings: Settings
    X: np.ndarray  # (n_fit, n_features) float32, the fit set
    y: np.ndarray  # (n_fit,)
    n_classes: int
    prototypes: np.ndarray | None = None  # (n_prototypes, n_features)
    prototype_labels: np.ndarray | None = None
    index: object | None = field(default=None, repr=False)  # knn.KnnIndex or annoy.AnnoyIndex


def fit(method: Method, X: np.ndarray, y: np.ndarray, n_classes: int, settings: Settings) -> Model:
    """Fit ``method`` on rows ``X (n, n_features)`` float32 with labels ``y (n,)``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    model = Model(method, settings, X, y, n_classes)
    if method == "centroids":
        model.prototypes, model.prototype_labels = class_means(X, y, n_classes), np.arange(n_classes)
    elif method == "kmeans":
        counts = settings.n_prototypes if settings.n_prototypes is not None else np.ones(n_classes, np.int64)
        model.prototypes, model.prototype_labels, _ = kmeans_per_class(
            X, y, counts, seed=settings.kmeans_seed, max_iter=settings.kmeans_max_iter, tol=settings.kmeans_tol)
        if settings.lvq_epochs > 0:
            model.prototypes = glvq(model.prototypes, model.prototype_labels, X, y, epochs=settings.lvq_epochs,
                                    learning_rate=settings.lvq_learning_rate, seed=settings.kmeans_seed)
    elif method == "ann":
        model.index = ann.build_index(X, metric=settings.ann_metric, n_trees=settings.ann_n_trees, seed=settings.ann_seed)
    else:  # knn: the screening projection of the fit set, once for every query
        model.index = knn.KnnIndex().fit(X, metric=settings.metric)
    return model


def predict(model: Model, X_query: np.ndarray) -> np.ndarray:
    """Predicted labels ``(n_query,)`` for rows ``X_query (n_query, n_features)``."""
    s = model.settings
    if model.prototypes is not None:
        return nearest_prototype(X_query, model.prototypes, model.prototype_labels, model.n_classes,
                                 metric=s.prototype_metric).labels
    if model.method == "ann":
        distances, indices = ann.query(model.index, X_query, s.k, search_k=s.ann_search_k)
    else:
        distances, indices = model.index.query(X_query, s.k)
    # Annoy may return fewer than k items, padded with index -1: those get label -1 and no vote.
    labels = np.where(indices >= 0, model.y[np.maximum(indices, 0)], -1)
    return knn.vote(labels, distances, model.n_classes, weights=s.weights)
