"""The five classifiers as estimators chosen by name: ``fit(X (n, n_features), y (n,), n_classes)`` returns the
estimator, ``predict(X, shifted=None)`` labels ``(n_query,)``; the neighbour methods also have ``kneighbors(X, k)``.
``shifted (4, n_query, n_features)``: the queries' one-pixel shifts (``fitset.shifted_queries``), which GMLVQ
with ``query_shifts`` classifies with them and the other methods ignore.
"""

import numpy as np

from fmproto.prototypes.centroids import class_means, nearest_prototype
from fmproto.prototypes.gmlvq import gmlvq, project
from fmproto.prototypes.kmeans import kmeans_per_class
from fmproto.prototypes.lvq import glvq
from fmproto.search import ann, knn


class NearestCentroid:
    """One prototype a class, its mean; an image takes the class of the nearest."""

    def __init__(self, metric: str = "mse"):
        self.metric = metric

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> "NearestCentroid":
        self.prototypes_, self.prototype_labels_ = class_means(X, y, n_classes), np.arange(n_classes)
        self.n_classes_ = n_classes
        return self

    def predict(self, X_query: np.ndarray, shifted: np.ndarray | None = None) -> np.ndarray:
        return nearest_prototype(X_query, self.prototypes_, self.prototype_labels_, self.n_classes_,
                                 metric=self.metric).labels

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Rows in the space where the model measures distance: feature space itself, float32."""
        return np.asarray(X, dtype=np.float32)


class KMeansPrototypes(NearestCentroid):
    """``n_prototypes[c]`` k-means centres for each class ``c`` (one each when None), then optional GLVQ."""

    def __init__(self, n_prototypes: np.ndarray | None = None, metric: str = "mse", seed: int = 0,
                 max_iter: int = 100, tol: float = 1e-4, lvq_epochs: int = 0, lvq_learning_rate: float = 0.3):
        super().__init__(metric)
        self.n_prototypes, self.seed, self.max_iter, self.tol = n_prototypes, seed, max_iter, tol
        self.lvq_epochs, self.lvq_learning_rate = lvq_epochs, lvq_learning_rate

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> "KMeansPrototypes":
        counts = self.n_prototypes if self.n_prototypes is not None else np.ones(n_classes, np.int64)
        self.prototypes_, self.prototype_labels_, _ = kmeans_per_class(
            X, y, counts, seed=self.seed, max_iter=self.max_iter, tol=self.tol)
        if self.lvq_epochs > 0:
            self.prototypes_ = glvq(self.prototypes_, self.prototype_labels_, X, y, epochs=self.lvq_epochs,
                                    learning_rate=self.lvq_learning_rate, seed=self.seed)
        self.n_classes_ = n_classes
        return self


class GMLVQPrototypes(NearestCentroid):
    """``n_prototypes[c]`` k-means centres for each class ``c``, then GMLVQ: the prototypes and a projection
    ``omega_ (rank, n_features)`` learned together. An image takes the class of the nearest prototype after
    the projection (``transform``); ``prototypes_`` stay in feature space. With ``query_shifts`` an image takes
    the class whose nearest prototype is nearest on average over the image and its four one-pixel shifts: 200
    prototypes cannot hold every position of an item, which the shifted views bring to the query instead."""

    def __init__(self, n_prototypes: np.ndarray | None = None, rank: int = 64, epochs: int = 30,
                 learning_rate: float = 3e-3, steepness: float = 20.0, seed: int = 0, max_iter: int = 100,
                 tol: float = 1e-4, query_shifts: bool = False):
        super().__init__("euclidean")
        self.start = KMeansPrototypes(n_prototypes, seed=seed, max_iter=max_iter, tol=tol)
        self.rank, self.epochs, self.learning_rate, self.steepness, self.seed = rank, epochs, learning_rate, steepness, seed
        self.query_shifts = query_shifts

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> "GMLVQPrototypes":
        start = self.start.fit(X, y, n_classes)
        self.prototypes_, self.omega_ = gmlvq(
            start.prototypes_, start.prototype_labels_, X, y, rank=min(self.rank, np.shape(X)[1]), epochs=self.epochs,
            learning_rate=self.learning_rate, steepness=self.steepness, seed=self.seed)
        self.prototype_labels_, self.n_classes_ = start.prototype_labels_, n_classes
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Rows ``(n, rank)`` in the space where the model's distance is euclidean."""
        return project(X, self.omega_)

    def predict(self, X_query: np.ndarray, shifted: np.ndarray | None = None) -> np.ndarray:
        if not self.query_shifts:
            return nearest_prototype(self.transform(X_query), self.transform(self.prototypes_), self.prototype_labels_,
                                     self.n_classes_, metric=self.metric).labels
        return np.argmin(self.class_distances(X_query, shifted).sum(axis=0), axis=1)  # the lowest class on ties

    def class_distances(self, X_query: np.ndarray, shifted: np.ndarray | None = None) -> np.ndarray:
        """``(n_views, n_query, n_classes)`` float64: from each view of each query (the image, then with
        ``query_shifts`` its ``shifted`` copies) to each class's nearest prototype, after the projection."""
        views = [X_query]
        if self.query_shifts:
            if shifted is None or np.shape(shifted)[:2] != (4, len(X_query)):
                raise ValueError("gmlvq.query_shifts classifies each image with its four one-pixel shifts, but they were "
                                 "not made: set features.augment_shifts: true (the features stage makes them)")
            views += list(shifted)
        prototypes = self.transform(self.prototypes_)
        return np.stack([nearest_prototype(self.transform(view), prototypes, self.prototype_labels_, self.n_classes_,
                                           metric=self.metric).class_distances.astype(np.float64) for view in views])


class _Neighbours:
    """A vote of the ``k`` nearest fit rows, found by the subclass's ``kneighbors``."""

    def __init__(self, k: int, weights: str):
        self.k, self.weights = k, weights

    def _fitted(self, y: np.ndarray, n_classes: int) -> None:
        self.y_, self.n_classes_ = y, n_classes

    def predict(self, X_query: np.ndarray, shifted: np.ndarray | None = None) -> np.ndarray:
        distances, indices = self.kneighbors(X_query)
        # An approximate search may return fewer than k items, padded with index -1: no vote for those.
        labels = np.where(indices >= 0, self.y_[np.maximum(indices, 0)], -1)
        return knn.vote(labels, distances, self.n_classes_, weights=self.weights)


class ExactKNN(_Neighbours):
    """The ``k`` nearest fit rows of an exact search (``knn.KnnIndex``: the exact float64 neighbours); ``engine``:
    the index's class, ``KnnIndex`` or a ``cluster.ShardedIndex`` bound to a client (the same neighbours)."""

    def __init__(self, k: int = 5, metric: str = "euclidean", weights: str = "uniform", engine=knn.KnnIndex):
        super().__init__(k, weights)
        self.metric, self.engine = metric, engine

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> "ExactKNN":
        self.index_ = self.engine().fit(X, metric=self.metric)  # screened once for every query
        self._fitted(y, n_classes)
        return self

    def kneighbors(self, X_query: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.index_.kneighbors(X_query, k or self.k)


class ApproximateKNN(_Neighbours):
    """The ``k`` nearest fit rows as an Annoy forest or an hnswlib graph finds them."""

    def __init__(self, k: int = 5, weights: str = "uniform", backend: str = "annoy", metric: str = "euclidean",
                 seed: int = 42, n_trees: int = 10, search_k: int = -1, hnsw_m: int = 16,
                 hnsw_ef_construction: int = 200, hnsw_ef: int = 40):
        super().__init__(k, weights)
        self.backend, self.metric, self.seed, self.n_trees, self.search_k = backend, metric, seed, n_trees, search_k
        self.hnsw_m, self.hnsw_ef_construction, self.hnsw_ef = hnsw_m, hnsw_ef_construction, hnsw_ef

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> "ApproximateKNN":
        self.index_ = ann.build(X, self.backend, self.metric, self.seed, n_trees=self.n_trees, m=self.hnsw_m,
                                ef_construction=self.hnsw_ef_construction)
        self._fitted(y, n_classes)
        return self

    def kneighbors(self, X_query: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return ann.query(self.index_, X_query, k or self.k, search_k=self.search_k, ef=self.hnsw_ef)


ESTIMATORS = {"centroids": NearestCentroid, "kmeans": KMeansPrototypes, "gmlvq": GMLVQPrototypes, "knn": ExactKNN,
              "ann": ApproximateKNN}
METHODS: tuple[str, ...] = tuple(ESTIMATORS)
PROTOTYPE_METHODS = ("kmeans", "gmlvq")  # several prototypes a class: each worth a look (explain-test)


def make(method: str, settings: dict[str, dict]):
    """An unfitted estimator for ``method``, built from ``settings[method]`` (its keyword arguments)."""
    if method not in ESTIMATORS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    return ESTIMATORS[method](**settings.get(method, {}))
