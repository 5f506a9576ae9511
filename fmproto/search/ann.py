"""Approximate nearest neighbours, one API for two backends: ``build`` an index, ``query`` it.

Annoy (the default) has ``n_trees`` (build) and ``search_k`` (query); hnswlib has ``m``,
``ef_construction`` and ``ef``. Both build and query on one thread, so results
are deterministic. Distances are float32 in Annoy's units: ``euclidean`` L2, ``manhattan`` L1 (Annoy
only), ``angular`` ``sqrt(2 - 2 cos)``.
"""

from typing import Literal

import annoy
import numpy as np

from fmproto.pipeline.checks import check_int, is_int, rows as checked_rows
from fmproto.search.distances import check_metric

AnnMetric = Literal["euclidean", "angular", "manhattan"]
ANN_METRICS: tuple[str, ...] = ("euclidean", "angular", "manhattan")
Backend = Literal["annoy", "hnswlib"]
BACKENDS: tuple[str, ...] = ("annoy", "hnswlib")
HNSW_METRICS: tuple[str, ...] = ("euclidean", "angular")  # hnswlib has no L1 space
_HNSW_SPACE = {"euclidean": "l2", "angular": "cosine"}  # squared L2 and 1 - cos: query converts both
_MAX_SEED = 2**31 - 1  # Annoy's set_seed takes a C int: larger values overflow, negative ones wrap


def build(X: np.ndarray, backend: Backend = "annoy", metric: AnnMetric = "euclidean", seed: int = 42, *,
          n_trees: int = 10, m: int = 16, ef_construction: int = 200, threads: int = 1):
    """An ``annoy.AnnoyIndex`` or ``hnswlib.Index`` over the rows of ``X (n_samples, n_features)``, as float32;
    item ``i`` is row ``X[i]``. ``seed`` in 0..2**31-1. hnswlib's graph takes about
    ``n_samples * (4 * n_features + 8 * m)`` bytes and, with ``threads`` > 1, depends on thread timing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    check_metric(metric, ANN_METRICS if backend == "annoy" else HNSW_METRICS)
    X = checked_rows(X, "X", np.float32)
    if len(X) == 0:
        raise ValueError("X must have at least one row; got 0")
    seed = check_int(seed, "seed", low=0, high=_MAX_SEED)
    if backend == "annoy":
        index = annoy.AnnoyIndex(X.shape[1], metric)
        index.set_seed(seed)  # before add_item, as Annoy requires
        for i, row in enumerate(X):
            index.add_item(i, row.tolist())  # Annoy's C loop reads a list ~2x faster than an ndarray row
        # n_jobs=1: with several threads each draws from seed + t and node ids interleave in finishing
        # order, so the forest would depend on the core count and the file on timing (~0.5 s dearer).
        index.build(check_int(n_trees, "n_trees", low=1), n_jobs=1)
        return index
    m, ef_construction = check_int(m, "m", low=2), check_int(ef_construction, "ef_construction", low=1)
    threads = check_int(threads, "threads", low=1, high=256)
    index = import_hnswlib().Index(space=_HNSW_SPACE[metric], dim=X.shape[1])
    index.init_index(max_elements=len(X), ef_construction=ef_construction, M=m, random_seed=seed)
    index.add_items(X, np.arange(len(X)), num_threads=threads)
    return index


def query(index, X_query: np.ndarray, k: int, *, search_k: int = -1, ef: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)``, each ``(n_queries, k)``: the ``k`` approximate nearest items, nearest first,
    ties by id. Annoy may find fewer than ``k``: missing places hold ``-1`` and ``inf``.

    ``search_k`` (Annoy, -1: ``n_trees * k``): with an explicit value the first ``j`` columns of a
    ``k``-query equal a ``j``-query. ``ef`` (hnswlib): its candidate list, ``max(ef, k)``.
    """
    X_query = checked_rows(X_query, "X_query", np.float32)
    if isinstance(index, annoy.AnnoyIndex):
        return _query_annoy(index, X_query, k, search_k)
    if X_query.shape[1] != index.dim:
        raise ValueError(f"X_query has {X_query.shape[1]} features but the index has {index.dim}")
    n_items = index.get_current_count()
    if not is_int(k) or not 1 <= k <= n_items:
        raise ValueError(f"k must be an integer in 1..{n_items} (the items in the index); got {k!r}")
    index.set_ef(check_int(ef, "ef", low=1))
    try:
        labels, distances = index.knn_query(X_query, k=int(k), num_threads=1)
    except RuntimeError as err:  # a graph too sparse to reach k items
        raise ValueError(f"hnswlib found fewer than k={k} neighbours for a query ({err}); raise ef or M") from None
    distances = np.maximum(distances, 0)  # float32 rounding can give -1e-7
    distances = np.sqrt(2 * distances if index.space == "cosine" else distances).astype(np.float32)
    indices = labels.astype(np.int64)
    order = np.lexsort((indices, distances), axis=-1)  # by distance, then id
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(indices, order, axis=1)


def _query_annoy(index, X_query, k, search_k):
    if index.get_n_trees() < 1:
        raise ValueError("index is not built (it has 0 trees); build it with build")
    if X_query.shape[1] != index.f:
        raise ValueError(f"X_query has {X_query.shape[1]} features but the index has {index.f}")
    k = check_int(k, "k", low=1)
    if not is_int(search_k) or not (search_k == -1 or search_k >= 1):
        raise ValueError(f"search_k must be -1 (Annoy's default, n_trees * k) or an integer >= 1; got {search_k!r}")
    distances = np.full((len(X_query), k), np.inf, dtype=np.float32)
    indices = np.full((len(X_query), k), -1, dtype=np.int64)
    for row, vector in enumerate(X_query):  # one call a query is Annoy's API
        ids, dists = index.get_nns_by_vector(vector.tolist(), k, int(search_k), True)
        indices[row, :len(ids)] = ids
        distances[row, :len(ids)] = dists
    return distances, indices


def recall_at_k(approx_distances: np.ndarray, exact_distances: np.ndarray, rtol: float = 1e-3) -> float:
    """ann-benchmarks' recall: the mean fraction of ``approx_distances (n_queries, k)`` at most the true k-th
    (the row maximum of ``exact_distances``) times ``1 + rtol``; ``inf`` and NaN never count. Distances,
    not ids, are compared, so either of two items tied at the k-th is a hit.
    """
    approx = np.asarray(approx_distances, dtype=np.float64)
    exact = np.asarray(exact_distances, dtype=np.float64)
    if approx.ndim != 2 or approx.shape != exact.shape:
        raise ValueError(f"approx_distances and exact_distances must both have shape (n_queries, k); "
                         f"got {approx.shape} and {exact.shape}")
    if approx.size == 0:
        raise ValueError(f"need at least one query and k >= 1; got shape {approx.shape}")
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0; got {rtol!r}")
    threshold = exact.max(axis=1) * (1.0 + rtol)  # (n_queries,)
    return float((approx <= threshold[:, None]).mean())  # inf and NaN compare False


def import_hnswlib():
    """The ``hnswlib`` module, or a ``ValueError`` saying how to install it."""
    try:
        import hnswlib
    except ImportError:
        raise ValueError("hnswlib is not installed; it is one of fmproto's dependencies: make env installs them "
                         "(or pip install -r requirements/core.txt)") from None
    return hnswlib


def hnswlib_problem(metric: str) -> str | None:
    """Why hnswlib cannot serve ``metric`` (no such space, not installed), or None."""
    if metric not in HNSW_METRICS:
        return f"metric {metric!r} has no hnswlib space (euclidean, angular)"
    try:
        import_hnswlib()
    except ValueError as err:
        return str(err)
    return None
