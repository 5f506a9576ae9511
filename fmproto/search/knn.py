"""Exact nearest-neighbour search: one fitted engine, certified float32 screening, float64 distances.

``KnnIndex`` is fitted once on training rows and answers two queries: the ``k`` nearest rows
(``kneighbors``) and every pair within a radius, the closest kept up to a cap (``radius_pairs``).
For euclidean, sqeuclidean and cosine it embeds the rows by a ``projection.Projection`` (the top
principal components and the norm of the rest, or every dimension: the full screen) whose float32
product scores every training row with a certified lower bound of its distance. Rows the bound
cannot rule out are measured (a float32 product a pair with a rigorous error bound), and those that
can still count get the float64 distance of a naive search and are sorted by (distance, index).

So the results are those of an exact float64 search, ties to the lower training index, whatever the
BLAS, the chunk size or the thread count (on 0..255 pixels the float64 squared distances are exact
integers). Manhattan has no product form: it takes a plain float64 search of its own.
"""

from typing import Literal

import numpy as np

from fmproto.pipeline.checks import is_int, rows as checked_rows
from fmproto.search.distances import check_metric
from fmproto.search.engine import COMPONENTS, KNN_METRICS, KnnIndex
from fmproto.search.screening import checked_query

KnnMetric = Literal["euclidean", "sqeuclidean", "cosine", "manhattan"]
Weights = Literal["uniform", "distance"]
WEIGHTS: tuple[str, ...] = ("uniform", "distance")


def kneighbors(
    X_query: np.ndarray,
    X_train: np.ndarray,
    k: int,
    metric: KnnMetric = "euclidean",
    chunk: int = 1024,
    X_train_sq_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest training rows of every query row, exactly, nearest first.

    Parameters
    ----------
    X_query : ndarray of shape (n_queries, n_features) or (n_queries, H, W), finite
    X_train : ndarray of shape (n_train, n_features) or (n_train, H, W), finite
    k : int, 1 <= k <= n_train
    metric : {'euclidean', 'sqeuclidean', 'cosine', 'manhattan'}
        ``cosine`` is ``1 - cos(angle)`` clipped to [0, 2]; a zero row is at distance 1 from all.
    chunk : int >= 1
        Query rows handled at once, at most (the float32 score block stays under 256 MB).
    X_train_sq_norms : ndarray of shape (n_train,), optional
        Checked for its shape only; the index computes its own float64 norms.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float32
        Float64 distances (euclidean: square-rooted) rounded once to float32, ascending.
    indices : ndarray of shape (n_queries, k), int64
        Ties (equal float64 distances) go to the lower training index, at the k-th place too.

    Notes
    -----
    Fits a ``KnnIndex`` of ``COMPONENTS`` components when the projection pays for itself (on 784
    pixels from 613 query rows), else of every dimension; both give the same bits.
    """
    check_metric(metric, KNN_METRICS)
    X_train = checked_rows(X_train, "X_train")
    n_train, n_features = X_train.shape
    X_query = checked_query(X_query, X_train.shape, k, chunk)  # before the fit, which costs
    if X_train_sq_norms is not None and np.shape(X_train_sq_norms) != (n_train,):
        raise ValueError(f"X_train_sq_norms must have shape ({n_train},); got {np.shape(X_train_sq_norms)}")
    # Projecting a row costs about 4 n_features m multiply-adds; each query saves n_features - m a row.
    m = min(COMPONENTS, n_features)
    pays = n_features >= 2 * m and len(X_query) * (n_features - m) > 4 * n_features * m
    return KnnIndex(COMPONENTS if pays else n_features).fit(X_train, metric).kneighbors(X_query, k, chunk=chunk)


def vote(
    neighbor_labels: np.ndarray,
    neighbor_distances: np.ndarray,
    n_classes: int,
    weights: Weights = "uniform",
) -> np.ndarray:
    """Majority label of each row's neighbours, as scikit-learn's ``KNeighborsClassifier`` votes.

    Parameters
    ----------
    neighbor_labels : ndarray of shape (n_queries, k), int
        Labels in ``0..n_classes-1``; ``-1`` marks a missing neighbour (``fmproto.search.ann.query`` pads
        short rows with index -1), which gets no vote.
    neighbor_distances : ndarray of shape (n_queries, k)
        Used by ``weights='distance'`` only.
    n_classes : int >= 1
    weights : {'uniform', 'distance'}
        ``uniform``: one vote a neighbour. ``distance``: a neighbour's vote is ``1 / d``, summed in
        float64 in neighbour order; if any neighbour of a row is at distance 0 (an exact copy), the
        neighbours at distance 0 get weight 1 and all others weight 0 (scikit-learn 1.9's
        ``_get_weights``).

    Returns
    -------
    labels : ndarray of shape (n_queries,), int64
        The label with the largest vote; ties go to the lowest label (scikit-learn's rule for both
        weightings: ``argmax`` of the class counts, ``weighted_mode``). A row with no valid
        neighbour gets -1.
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


def predict(
    X_query: np.ndarray,
    X_train: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    k: int = 5,
    metric: KnnMetric = "euclidean",
    weights: Weights = "uniform",
    chunk: int = 1024,
) -> np.ndarray:
    """Labels ``(n_queries,)`` by a vote of the ``k`` exact nearest training rows.

    ``kneighbors`` then ``vote``; see them for shapes, metrics and the tie rules. ``y_train`` has
    shape ``(n_train,)`` with labels in ``0..n_classes-1``.
    """
    _check_weights(weights)
    y_train = _labels(y_train, X_train)
    distances, indices = kneighbors(X_query, X_train, k, metric=metric, chunk=chunk)
    return vote(y_train[indices], distances, n_classes, weights=weights)


def predict_for_ks(
    neighbor_indices: np.ndarray,
    neighbor_distances: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    ks,
    weights: Weights = "uniform",
) -> dict[int, np.ndarray]:
    """Predictions for several ``k`` from one neighbour search done for ``max(ks)``.

    Parameters
    ----------
    neighbor_indices : ndarray of shape (n_queries, k_max), int
        From ``kneighbors(..., k_max)``, nearest first; the first ``k`` columns are the ``k``
        nearest, so no search is repeated.
    neighbor_distances : ndarray of shape (n_queries, k_max)
    y_train : ndarray of shape (n_train,), int
    n_classes : int
    ks : iterable of int, each in 1..k_max
    weights : {'uniform', 'distance'}

    Returns
    -------
    predictions : dict mapping each k (in the order given) to labels of shape (n_queries,)
        Equal to ``predict(..., k=k)`` for each k.
    """
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


def _labels(y, X) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_train must be integers of shape ({len(X)},); got {y.dtype} of shape {y.shape}")
    return y


def _check_weights(weights) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHTS))}; got {weights!r}")

