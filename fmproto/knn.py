"""Exact k-nearest-neighbour search and voting, by float32 matrix products checked in float64.

Search runs in two steps for each chunk of query rows:

1. Screening (float32, BLAS). One matrix product scores every training row for every query row of
   the chunk, monotone in the distance; a cheap selection keeps the ``k + margin`` best candidates.
2. Exact re-ranking (float64). The candidates' distances are recomputed from the original rows in
   float64 and sorted by ``(distance, training index)``. A rigorous bound on the float32 rounding
   error then certifies, row by row, that no training row outside the candidates can be as near as
   the k-th neighbour; the rare rows it cannot certify are re-screened with a candidate set wide
   enough to be exact.

So the neighbours are those of an exact float64 computation with ties broken by the lower training
index, whatever the BLAS build, the chunk size or the number of threads (on 0..255 pixels the float64
squared distances are exact integers). The float32 step alone would not be: its rounding, about
1e-4 relative to ``|a|^2 + |b|^2``, reorders near-ties.
"""

from typing import Literal

import numpy as np

from fmproto.checks import is_int, rows as checked_rows
from fmproto.distances import as_rows, check_metric, pairwise_distances, squared_norms

KnnMetric = Literal["euclidean", "sqeuclidean", "cosine", "manhattan"]
KNN_METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine", "manhattan")
Weights = Literal["uniform", "distance"]
WEIGHTS: tuple[str, ...] = ("uniform", "distance")

# Candidates kept beyond k in the float32 screening. More costs float64 re-ranking; fewer makes the
# certificate fail more often (each failure re-screens its row). On Fashion-MNIST (10,000 test
# against 60,000 training images) margin 8 left no row to re-screen for k = 1, 5 or 10, euclidean or
# cosine; margin 4 left 0.5% (k=5) to 2% (k=10), margin 2 10% to 20%.
_MARGIN = 8
# Screening selects the best candidates of a row through the minima of groups of this many columns:
# the k + margin best of a row lie in the k + margin groups with the lowest minima, so one pass for
# the minima and a small selection replace a selection over the whole 60,000-wide row.
_GROUP = 32
# Elements of the float64 block of candidate rows re-ranked at once: 4 MB, cache-sized.
_RERANK_ELEMENTS = 1 << 19
_UNIT = 2.0**-24  # float32 unit round-off


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
    X_query : ndarray of shape (n_queries, n_features) or (n_queries, H, W)
        Finite numbers (any integer or float dtype); images are flattened to rows.
    X_train : ndarray of shape (n_train, n_features) or (n_train, H, W)
        Finite numbers. Integer images (uint8) need no float copy: screening builds its own float32
        matrix and re-ranking gathers the few candidate rows.
    k : int, 1 <= k <= n_train
    metric : {'euclidean', 'sqeuclidean', 'cosine', 'manhattan'}
        ``cosine`` is ``1 - cos(angle)`` clipped to [0, 2]; a row of zeros is at distance 1 from
        everything, as in ``fmproto.distances``. ``manhattan`` has no matrix-product form: it goes
        through ``distances.pairwise_distances`` and is about 200 times slower than euclidean
        (60,000 x 784 training rows on 2 cores: 100 ms a query row against 0.46 ms;
        ``bench/knn.py --manhattan 200`` measures it).
    chunk : int >= 1
        Query rows handled at once. Memory is about ``chunk * n_train * 4`` bytes for the float32
        score block (245 MB for 1,024 x 60,000) plus a float32 copy of ``X_train`` (one extra
        column). 1024 measured fastest on 2 cores; results do not depend on it.
    X_train_sq_norms : ndarray of shape (n_train,), optional
        ``distances.squared_norms(distances.as_rows(X_train))``, float32, so a caller querying the
        same training set in several calls computes it once. Used by euclidean and sqeuclidean.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float32
        The metric's distances (euclidean: square-rooted), ascending along each row, computed in
        float64 and rounded once to float32.
    indices : ndarray of shape (n_queries, k), int64
        Rows of ``X_train``. Ties (equal float64 distances, e.g. duplicate training rows) are
        ordered by the lower training index first, and at the k-th place the lower index is kept.
    """
    check_metric(metric, KNN_METRICS)
    X_query = checked_rows(X_query, "X_query")
    X_train = checked_rows(X_train, "X_train")
    n_train, n_features = X_train.shape
    if X_query.shape[1] != n_features:
        raise ValueError(f"X_query has {X_query.shape[1]} features but X_train has {n_features}")
    if not is_int(k) or not 1 <= k <= n_train:
        raise ValueError(f"k must be an integer in 1..{n_train} (the training rows); got {k!r}")
    if not is_int(chunk) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1; got {chunk!r}")
    if X_train_sq_norms is not None:
        X_train_sq_norms = np.asarray(X_train_sq_norms, dtype=np.float32)
        if X_train_sq_norms.shape != (n_train,):
            raise ValueError(f"X_train_sq_norms must have shape ({n_train},); got {X_train_sq_norms.shape}")

    k, n_candidates = int(k), min(n_train, int(k) + _MARGIN)
    screen = _Screen(X_train, metric, X_train_sq_norms)
    distances = np.empty((len(X_query), k), dtype=np.float32)
    indices = np.empty((len(X_query), k), dtype=np.int64)
    for start in range(0, len(X_query), chunk):
        rows = slice(start, start + chunk)
        d, i = _chunk_kneighbors(X_query[rows], X_train, k, n_candidates, metric, screen)
        distances[rows], indices[rows] = d, i
    return distances, indices


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
        Labels in ``0..n_classes-1``; ``-1`` marks a missing neighbour (``fmproto.ann.query`` pads
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


class _Screen:
    """The float32 training matrix of the screening product, built once per ``kneighbors`` call.

    ``scores(Xc)`` gives a ``(n_chunk, n_padded)`` float32 block, ascending in the distance along
    each row: ``|b|^2 - 2 a.b`` (euclidean; ``|a|^2`` is constant along a row), ``-a.b/|b|``
    (cosine; ``1/|a|`` likewise), or the L1 distance (manhattan). Columns past ``n_train`` pad the
    width to a whole number of groups with the largest float32.
    """

    def __init__(self, X_train: np.ndarray, metric: str, sq_norms: np.ndarray | None):
        n_train, n_features = X_train.shape
        self.metric, self.n_train = metric, n_train
        self.group = _GROUP if n_train >= 4 * _GROUP * (1 + _MARGIN) else n_train
        self.n_padded = -(-n_train // self.group) * self.group
        self.n_features = n_features
        self.block = None
        if metric == "manhattan":
            self.X_train = as_rows(X_train)  # float32 once, not once a chunk
            self.max_l1 = float(np.abs(self.X_train).sum(axis=1).max())
            return
        # One product gives the score: a row [x, 1] times a column [w, c] is x.w + c.
        W = np.zeros((self.n_padded, n_features + 1), dtype=np.float32)
        if metric in ("euclidean", "sqeuclidean"):
            np.multiply(X_train, np.float32(-2.0), out=W[:n_train, :n_features], casting="unsafe")
            # |-2b|^2 / 4 is bit for bit |b|^2 in float32: scaling by 4 is exact
            norms = sq_norms if sq_norms is not None else squared_norms(W[:n_train, :n_features]) * np.float32(0.25)
            W[:n_train, n_features] = norms
            self.max_sq_norm = float(norms.max()) if n_train else 0.0
        else:
            W[:n_train, :n_features] = X_train
            norms = np.sqrt(squared_norms(W[:n_train, :n_features]))
            norms[norms == 0] = np.inf  # zero rows score 0: cosine 0, distance 1
            W[:n_train, :n_features] /= -norms[:, None]
        # Padding columns score the largest float32 (x's last entry is 1); finite, so that no BLAS
        # kernel can make 0 * inf = NaN from it.
        W[n_train:, n_features] = np.finfo(np.float32).max
        self.W = W

    def scores(self, Xc: np.ndarray) -> np.ndarray:
        if self.metric == "manhattan":
            D = pairwise_distances(as_rows(Xc), self.X_train, "manhattan")
            if self.n_padded == self.n_train:
                return D
            out = np.full((len(Xc), self.n_padded), np.finfo(np.float32).max, dtype=np.float32)
            out[:, : self.n_train] = D
            return out
        if self.block is None:  # the first chunk is the largest; later ones reuse its rows
            self.Xa = np.ones((len(Xc), Xc.shape[1] + 1), dtype=np.float32)
            self.block = np.empty((len(Xc), self.n_padded), dtype=np.float32)
        Xa, block = self.Xa[: len(Xc)], self.block[: len(Xc)]
        Xa[:, :-1] = Xc
        # One block for all chunks: a fresh 245 MB array a chunk costs more in page faults than
        # the selection that follows.
        return np.matmul(Xa, self.W.T, out=block)  # (n_chunk, n_padded), the BLAS part


def _chunk_kneighbors(Xc, X_train, k, n_candidates, metric, screen):
    """``kneighbors`` for one chunk of query rows: screen, re-rank, certify, re-screen failures."""
    S = screen.scores(Xc)  # (n_chunk, n_padded) float32
    candidates, boundary = _best_columns(S, n_candidates, screen.group)
    order_d, order_i = _rerank(Xc, X_train, candidates, metric)
    distances, indices = order_d[:, :k], order_i[:, :k]
    if n_candidates == screen.n_train:
        return _finish(distances, metric), indices

    # Certificate: every column outside the candidates scores >= boundary, so its exact distance is
    # at least lower_bound(boundary). Strictly above the k-th exact distance means it cannot enter
    # the k nearest, not even as a tie won by a lower index.
    query_norm = _query_scale(Xc, metric)
    kth = distances[:, -1]
    uncertain = ~(_lower_bound(boundary, query_norm, metric, screen) > kth)
    if metric == "cosine":
        # A zero query row is at distance exactly 1 from every training row: its neighbours are the
        # first k rows, by the tie rule; no screening score can tell its rows apart.
        zero = query_norm == 0
        distances[zero], indices[zero] = 1.0, np.arange(k)
        uncertain &= ~zero
    if uncertain.any():
        rows = np.flatnonzero(uncertain)
        # Re-screen with every column whose score could still reach the k-th distance.
        limit = _score_limit(kth[rows], query_norm[rows], metric, screen)
        S_rows = S[rows]
        width = int((S_rows <= limit[:, None]).sum(axis=1).max())
        width = max(width, n_candidates)
        wide = np.argpartition(S_rows, width - 1, axis=1)[:, :width] if width < S.shape[1] else None
        if wide is None:
            wide = np.broadcast_to(np.arange(screen.n_train), (len(rows), screen.n_train))
        d, i = _rerank(Xc[rows], X_train, wide, metric)
        distances[rows], indices[rows] = d[:, :k], i[:, :k]
    return _finish(distances, metric), indices


def _best_columns(S: np.ndarray, n_candidates: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``n_candidates`` lowest scores of each row, and the highest score among them.

    Every column not returned scores at least the returned highest (``boundary``).
    """
    n_rows, width = S.shape
    n_groups = width // group
    if n_groups <= n_candidates:
        cols = np.argpartition(S, n_candidates - 1, axis=1)[:, :n_candidates] if n_candidates < width else \
            np.broadcast_to(np.arange(width), (n_rows, width))
        return cols, np.take_along_axis(S, cols, axis=1).max(axis=1)
    # The n_candidates lowest of a row lie in the n_candidates groups with the lowest minima: any
    # other group's entries are >= the n_candidates-th lowest minimum, and the chosen groups already
    # hold n_candidates entries <= it. Group j is the strided set of columns j, j + n_groups, ...:
    # its minimum is then an elementwise minimum of contiguous slices, one fast pass over S.
    minima = S.reshape(n_rows, group, n_groups).min(axis=1)  # (n_rows, n_groups)
    groups = np.argpartition(minima, n_candidates - 1, axis=1)[:, :n_candidates]
    cols = (groups[:, :, None] + n_groups * np.arange(group)).reshape(n_rows, -1)  # (n_rows, n_candidates * group)
    values = np.take_along_axis(S, cols, axis=1)
    best = np.argpartition(values, n_candidates - 1, axis=1)[:, :n_candidates]
    return np.take_along_axis(cols, best, axis=1), np.take_along_axis(values, best, axis=1).max(axis=1)


def _rerank(Xc, X_train, candidates, metric) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 distances (squared for euclidean) of the candidates, sorted by (distance, index).

    Parameters
    ----------
    Xc : ndarray of shape (n_rows, n_features)
    X_train : ndarray of shape (n_train, n_features)
    candidates : ndarray of shape (n_rows, width), int
        Training rows to measure for each row of ``Xc``.

    Returns
    -------
    distances : ndarray of shape (n_rows, width), float64, ascending along each row
    indices : ndarray of shape (n_rows, width), int64, ties ordered by the lower index
    """
    n_rows, width = candidates.shape
    n_features = Xc.shape[1]
    exact = np.empty((n_rows, width), dtype=np.float64)
    # Blocks of (rows, columns, n_features) float64 of about 4 MB stay in cache and are reused.
    cols = max(1, min(width, _RERANK_ELEMENTS // n_features))
    rows = max(1, _RERANK_ELEMENTS // (cols * n_features))
    for r in range(0, n_rows, rows):
        a = Xc[r : r + rows].astype(np.float64)[:, None, :]  # (rows, 1, n_features)
        for c in range(0, width, cols):
            b = X_train[candidates[r : r + rows, c : c + cols]].astype(np.float64)  # (rows, cols, n_features)
            exact[r : r + rows, c : c + cols] = _exact(a, b, metric)
    order = np.lexsort((candidates, exact), axis=1)  # by distance, then by training index
    indices = np.take_along_axis(candidates, order, axis=1).astype(np.int64, copy=False)
    return np.take_along_axis(exact, order, axis=1), indices


def _exact(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Float64 distances between ``a (rows, 1, n_features)`` and ``b (rows, cols, n_features)``."""
    if metric == "cosine":
        dot = np.einsum("rkd,rkd->rk", np.broadcast_to(a, b.shape), b)
        norms = np.sqrt(np.einsum("rkd,rkd->rk", a, a)) * np.sqrt(np.einsum("rkd,rkd->rk", b, b))
        cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)  # zero rows: distance 1
        return np.clip(1.0 - cos, 0.0, 2.0)
    b -= a  # the difference form: no cancellation, exact on integer pixels
    if metric == "manhattan":
        return np.abs(b, out=b).sum(axis=2)
    return np.einsum("rkd,rkd->rk", b, b)


def _error_factor(n_features: int) -> float:
    """Bound on float32 rounding relative to the magnitudes summed: Higham's gamma_n, with slack.

    gamma_n bounds the sums of ``n_features + 1`` products in any order (blocked BLAS included);
    the 8 extra terms and the factor 2 cover the float32 norms, the division by them (cosine) and
    the rounding of float64 inputs to float32.
    """
    n = n_features + 8
    return 2.0 * n * _UNIT / (1 - n * _UNIT)


def _query_scale(Xc, metric) -> np.ndarray:
    """Per query row, in float64: |a|^2 (euclidean), |a| (cosine) or the L1 norm (manhattan)."""
    a = Xc.astype(np.float64)
    if metric == "manhattan":
        return np.abs(a).sum(axis=1)
    sq = np.einsum("ij,ij->i", a, a)
    return np.sqrt(sq) if metric == "cosine" else sq


def _lower_bound(score, query_scale, metric, screen) -> np.ndarray:
    """Smallest exact distance (squared for euclidean) that a float32 ``score`` can stand for."""
    g = _error_factor(screen.n_features)
    score = score.astype(np.float64)
    if metric in ("euclidean", "sqeuclidean"):
        # score = |b|^2 - 2a.b, |error| <= g (2|a||b| + 2|b|^2) <= g (|a|^2 + 3 max|b|^2)
        return query_scale + score - g * (query_scale + 3 * screen.max_sq_norm)
    if metric == "cosine":
        # score = -a.b/|b|, |error| <= g |a|: divided by |a| it is -cos within g
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 + score / query_scale - g
    # manhattan: relative error g on the sum of |a - b|, plus the rounding of float64 inputs
    return score / (1.0 + g) - 2 * _UNIT * (query_scale + screen.max_l1)


def _score_limit(kth, query_scale, metric, screen) -> np.ndarray:
    """Largest float32 score whose exact distance could still be <= ``kth``: ``_lower_bound`` inverted."""
    g = _error_factor(screen.n_features)
    if metric in ("euclidean", "sqeuclidean"):
        limit = kth - query_scale + g * (query_scale + 3 * screen.max_sq_norm)
    elif metric == "cosine":
        limit = (kth - 1.0 + g) * query_scale
    else:
        limit = (kth + 2 * _UNIT * (query_scale + screen.max_l1)) * (1.0 + g)
    # Round up, so that the float32 comparison keeps every column the float64 bound keeps.
    return np.nextafter(limit.astype(np.float32), np.float32(np.inf))


def _finish(distances: np.ndarray, metric: str) -> np.ndarray:
    """Float64 exact values to the returned float32 distances (euclidean takes the root)."""
    if metric == "euclidean":
        distances = np.sqrt(distances)
    return distances.astype(np.float32)



def _labels(y, X) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_train must be integers of shape ({len(X)},); got {y.dtype} of shape {y.shape}")
    return y


def _check_weights(weights) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHTS))}; got {weights!r}")

