"""Approximate nearest neighbours with Annoy or hnswlib, and recall against exact search.

Two backends behind one interface, ``build`` and ``search``, which call ``build_index``/``query``
(Annoy) or ``build_hnsw_index``/``query_hnsw`` (hnswlib).

Annoy (random-projection trees, the default) is a thin wrapper that keeps Annoy's rules: the seed is
set before any item is added, item ids are the row numbers ``0..n-1`` of ``X`` (so an id indexes the
training labels directly), and the index is read-only once built. ``n_trees`` (build) and ``search_k`` (query) are the only tuning knobs: more
trees cost build time and memory, a larger ``search_k`` costs query time; both raise recall.

Distances are Annoy's own, computed in float32 on the stored vectors: ``euclidean`` is the L2
distance (square-rooted, like ``fmproto.search.knn``), ``manhattan`` the L1 distance, and ``angular`` is
``sqrt(2 - 2 cos)``, the euclidean distance between unit-normalised rows (``angular**2 / 2`` is the
``cosine`` distance of ``fmproto.search.distances``).

hnswlib (a hierarchical navigable small-world graph) is an optional extra (``pip install -e
'.[hnsw]'``, ``make env``), imported only when asked for. ``M`` (graph degree) and
``ef_construction`` (build) and ``ef`` (query) are its knobs; its ids are row numbers too. It is kept deterministic: items are
inserted by one thread in row order with a fixed ``random_seed`` (the level of each node is drawn
from it) and queries run on one thread, so the same ``X`` and settings give the same graph, byte for
byte, and the same answers, on the same build of hnswlib. It has no manhattan metric.

Saving an index (either backend) and loading an Annoy index live in ``fmproto.search.ann_files`` (``save_index``, ``load_annoy_index``);
an hnswlib index saves itself with ``index.save_index(path)`` (the exact path: it adds no suffix).
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
# hnswlib's spaces return squared L2 and 1 - cos; ``query_hnsw`` turns both into Annoy's units.
_HNSW_SPACE = {"euclidean": "l2", "angular": "cosine"}

# Annoy's set_seed takes a C int; larger values raise OverflowError and negative ones wrap around.
_MAX_SEED = 2**31 - 1


def build_index(
    X: np.ndarray, metric: AnnMetric = "euclidean", n_trees: int = 10, seed: int = 42
) -> annoy.AnnoyIndex:
    """Build an Annoy forest over the rows of ``X``; item ``i`` is row ``X[i]``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite numbers; stored as float32.
    metric : {'euclidean', 'angular', 'manhattan'}
    n_trees : int >= 1
        Number of random-projection trees. Build time and index size grow linearly with it.
    seed : int in 0..2**31-1
        Seeds Annoy's generator before the first item is added. The same ``X``, ``metric``,
        ``n_trees`` and ``seed`` give the same index, byte for byte, on any machine.

    Returns
    -------
    index : annoy.AnnoyIndex
        Built and read-only: never call ``add_item`` on it (Annoy does not refuse, but the new item
        would overwrite tree nodes) nor ``unbuild``.
    """
    check_metric(metric, ANN_METRICS)
    X = checked_rows(X, "X", np.float32)
    if len(X) == 0:
        raise ValueError("X must have at least one row; got 0")
    check_int(n_trees, "n_trees", low=1)
    check_int(seed, "seed", low=0, high=_MAX_SEED)

    index = annoy.AnnoyIndex(X.shape[1], metric)
    index.set_seed(int(seed))  # before add_item, as Annoy requires
    for i, row in enumerate(X):
        index.add_item(i, row.tolist())  # a list is read by Annoy's C loop ~2x faster than an ndarray row
    # n_jobs=1: with several threads (Annoy's default n_jobs=-1 uses every core) thread t draws from
    # seed + t and builds its share of the trees, so the forest depends on the machine's core count,
    # and node ids interleave in whatever order threads finish, so even the same machine writes a
    # different file each build. One thread is reproducible everywhere; it costs ~0.5 s on
    # 48,000 x 784 (1.1 s against 0.6 s on 2 cores).
    index.build(int(n_trees), n_jobs=1)
    return index


def query(
    index: annoy.AnnoyIndex, X_query: np.ndarray, k: int, search_k: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` approximate nearest items of each query row, nearest first.

    Parameters
    ----------
    index : annoy.AnnoyIndex
        A built index, from ``build_index`` or ``fmproto.search.ann_files.load_annoy_index``.
    X_query : ndarray of shape (n_queries, n_features)
    k : int >= 1
    search_k : int, -1 or >= 1
        How many candidate items Annoy gathers from the trees before ranking them by exact
        distance; -1 is Annoy's default, ``n_trees * k``. Larger is slower and more accurate.
        With an explicit ``search_k`` the candidates do not depend on ``k``, so the first ``j``
        columns of a ``k``-query equal a ``j``-query: one pass at the largest ``k`` serves every
        smaller one, at the same cost. With -1 that does not hold (the default grows with ``k``).

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float32
        Ascending along each row. Ties are ordered by item id.
    indices : ndarray of shape (n_queries, k), int64
        Item ids, i.e. rows of the ``X`` the index was built from.

    Notes
    -----
    Annoy can return fewer than ``k`` items: always when the index holds fewer than ``k``, and
    occasionally when ``search_k`` is small, since the candidates are counted before duplicates
    across trees are removed. Missing places at the end of a row hold index ``-1`` and distance
    ``inf``, so they never count as a hit in ``recall_at_k``; a caller that votes on labels must
    mask ``indices == -1``.
    """
    if index.get_n_trees() < 1:
        raise ValueError("index is not built (it has 0 trees); build it with build_index")
    X_query = checked_rows(X_query, "X_query", np.float32)
    if X_query.shape[1] != index.f:
        raise ValueError(f"X_query has {X_query.shape[1]} features but the index has {index.f}")
    check_int(k, "k", low=1)
    if not is_int(search_k) or not (search_k == -1 or search_k >= 1):
        raise ValueError(
            f"search_k must be -1 (Annoy's default, n_trees * k) or an integer >= 1; got {search_k!r}"
        )

    k, search_k = int(k), int(search_k)
    distances = np.full((len(X_query), k), np.inf, dtype=np.float32)
    indices = np.full((len(X_query), k), -1, dtype=np.int64)
    nns = index.get_nns_by_vector
    # One call per query is Annoy's API; everything else stays out of the loop.
    for row, vector in enumerate(X_query):
        ids, dists = nns(vector.tolist(), k, search_k, True)
        found = len(ids)
        indices[row, :found] = ids
        distances[row, :found] = dists
    return distances, indices


def recall_at_k(approx_distances: np.ndarray, exact_distances: np.ndarray, rtol: float = 1e-3) -> float:
    """Mean fraction of returned neighbours that are as near as the true k-th neighbour.

    The ann-benchmarks definition: for query ``i`` with true k-th distance ``t_i``, count the
    returned neighbours at distance ``<= t_i * (1 + rtol)``, divide by ``k``, and average over
    queries. Distances, not ids, are compared, so a tie at the k-th distance counts as a hit
    whichever of the tied items was returned.

    Parameters
    ----------
    approx_distances : ndarray of shape (n_queries, k)
        From ``query``; missing results (``inf``) and NaN never count.
    exact_distances : ndarray of shape (n_queries, k)
        True distances of the k nearest neighbours in any order (the row maximum is the k-th).
    rtol : float >= 0
        Relative tolerance for float rounding. Annoy sums squared differences in float32 while
        exact search in ``fmproto.search.knn`` expands ``|x|^2 - 2 x.y + |y|^2``; on 0..255 pixels the two
        agree to about 1e-5 relative, so 1e-3 absorbs rounding and nothing else. A k-th distance of
        exactly 0 (k duplicates) admits only distance 0.

    Returns
    -------
    recall : float in [0, 1]
    """
    approx = np.asarray(approx_distances, dtype=np.float64)
    exact = np.asarray(exact_distances, dtype=np.float64)
    if approx.ndim != 2 or approx.shape != exact.shape:
        raise ValueError(
            f"approx_distances and exact_distances must both have shape (n_queries, k); "
            f"got {approx.shape} and {exact.shape}"
        )
    if approx.size == 0:
        raise ValueError(f"need at least one query and k >= 1; got shape {approx.shape}")
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0; got {rtol!r}")
    threshold = exact.max(axis=1) * (1.0 + rtol)  # (n_queries,)
    hits = approx <= threshold[:, None]  # (n_queries, k); inf and NaN compare False
    return float(hits.mean())


# ---------------------------------------------------------------------------------------------------- hnswlib


def import_hnswlib():
    """The ``hnswlib`` module, or a one-line ``ValueError`` saying how to install it.

    hnswlib is an optional extra: only a caller that asks for the backend imports it.
    """
    try:
        import hnswlib
    except ImportError:
        raise ValueError(
            "hnswlib is not installed; install the optional extra: pip install -e '.[hnsw]' (make env does)"
        ) from None
    return hnswlib


def build_hnsw_index(
    X: np.ndarray, metric: AnnMetric = "euclidean", m: int = 16, ef_construction: int = 200, seed: int = 42,
    threads: int = 1,
):
    """Build an hnswlib graph over the rows of ``X``; item ``i`` is row ``X[i]``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite numbers; stored as float32.
    metric : {'euclidean', 'angular'}
        hnswlib has no manhattan space.
    m : int >= 2
        Links per node (``M``; the bottom layer keeps ``2 * m``). Memory is about
        ``n_samples * (4 * n_features + 8 * m)`` bytes; larger is slower to build, more accurate.
    ef_construction : int >= 1
        Candidate list while inserting; larger is slower to build and gives a better graph.
    seed : int in 0..2**31-1
        hnswlib's ``random_seed``, which draws each node's top layer.
    threads : int >= 1
        Insertion threads. With one, items go in in row order and the same arguments give the same
        graph (and the same saved bytes) on the same hnswlib build; with more, the graph depends on
        thread timing (the pipeline uses one; ``bench/scale.py`` uses every core at 1.2M rows).

    Returns
    -------
    index : hnswlib.Index
    """
    check_metric(metric, HNSW_METRICS)
    X = checked_rows(X, "X", np.float32)
    if len(X) == 0:
        raise ValueError("X must have at least one row; got 0")
    check_int(m, "m", low=2)
    check_int(ef_construction, "ef_construction", low=1)
    check_int(seed, "seed", low=0, high=_MAX_SEED)
    check_int(threads, "threads", low=1, high=256)

    hnswlib = import_hnswlib()
    index = hnswlib.Index(space=_HNSW_SPACE[metric], dim=X.shape[1])
    index.init_index(max_elements=len(X), ef_construction=int(ef_construction), M=int(m), random_seed=int(seed))
    index.add_items(X, np.arange(len(X)), num_threads=int(threads))
    return index


def query_hnsw(index, X_query: np.ndarray, k: int, ef: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` approximate nearest items of each query row, nearest first, in Annoy's units.

    Parameters
    ----------
    index : hnswlib.Index
        From ``build_hnsw_index`` (or loaded from its saved file). Its ``ef`` is set to ``ef``.
    X_query : ndarray of shape (n_queries, n_features)
    k : int, 1 <= k <= the number of items
    ef : int >= 1
        Candidate list while searching; hnswlib uses ``max(ef, k)``. Larger is slower and more
        accurate.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float32
        ``euclidean``: the L2 distance (square root of hnswlib's squared one); ``angular``:
        ``sqrt(2 * (1 - cos))``, as Annoy and ``recall_at_k`` expect. Ascending along each row;
        ties among the returned items are ordered by item id, but which of several items tied at
        the k-th distance is returned is hnswlib's choice (Annoy keeps the lower id).
    indices : ndarray of shape (n_queries, k), int64

    Notes
    -----
    Queries run on one thread, so results and queries per second compare with Annoy's (whose
    queries are one Python call each).
    """
    X_query = checked_rows(X_query, "X_query", np.float32)
    if X_query.shape[1] != index.dim:
        raise ValueError(f"X_query has {X_query.shape[1]} features but the index has {index.dim}")
    n_items = index.get_current_count()
    if not is_int(k) or not 1 <= k <= n_items:
        raise ValueError(f"k must be an integer in 1..{n_items} (the items in the index); got {k!r}")
    check_int(ef, "ef", low=1)

    index.set_ef(int(ef))
    try:
        labels, distances = index.knn_query(X_query, k=int(k), num_threads=1)
    except RuntimeError as err:  # a graph too sparse to reach k items
        raise ValueError(f"hnswlib found fewer than k={k} neighbours for a query ({err}); raise ef or M") from None
    distances = np.maximum(distances, 0)  # float32 rounding can give -1e-7
    distances = np.sqrt(2 * distances if index.space == "cosine" else distances).astype(np.float32)
    indices = labels.astype(np.int64)
    order = np.lexsort((indices, distances), axis=-1)  # by distance, then id
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(indices, order, axis=1)


# ---------------------------------------------------------------------------------------------------- one interface


def build(
    X: np.ndarray,
    backend: Backend = "annoy",
    metric: AnnMetric = "euclidean",
    seed: int = 42,
    *,
    n_trees: int = 10,
    m: int = 16,
    ef_construction: int = 200,
):
    """``build_index(X, metric, n_trees, seed)`` or ``build_hnsw_index(X, metric, m, ef_construction, seed)``.

    Only the chosen backend's settings are used; see those functions for shapes and rules.
    """
    if backend == "annoy":
        return build_index(X, metric=metric, n_trees=n_trees, seed=seed)
    if backend == "hnswlib":
        return build_hnsw_index(X, metric=metric, m=m, ef_construction=ef_construction, seed=seed)
    raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")


def search(index, X_query: np.ndarray, k: int, *, search_k: int = -1, ef: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``query(index, X_query, k, search_k)`` for an Annoy index, ``query_hnsw(index, X_query, k, ef)`` otherwise.

    Both return ``(distances, indices)`` of shape ``(n_queries, k)``, float32 in Annoy's units and
    int64, nearest first; only Annoy pads missing places with ``inf`` and ``-1``.
    """
    if backend_of(index) == "annoy":
        return query(index, X_query, k, search_k=search_k)
    return query_hnsw(index, X_query, k, ef=ef)


def backend_of(index) -> str:
    """``'annoy'`` or ``'hnswlib'``: which backend built ``index``."""
    return "annoy" if isinstance(index, annoy.AnnoyIndex) else "hnswlib"
