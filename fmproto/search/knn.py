"""Exact k-nearest-neighbour search and voting: float32 screening, certified, then float64 distances.

``KnnIndex`` (euclidean, sqeuclidean, cosine) is fitted once on the training rows and queried many
times. It embeds every row by its coordinates on the top principal components of the training rows
plus the norm of the rest (``fmproto.search.projection``), which bounds every distance from below. For each
chunk of query rows:

1. Screening (float32, BLAS). One matrix product of ``m + 2`` columns (``n_features + 1`` for the
   full product) scores every training row with that lower bound.
2. Measuring. The best rows by the bound are measured (a float32 product a pair, with a rigorous
   bound on its error); their k-th distance plus that error, ``D``, is at least the k-th nearest
   distance. Every row whose bound, reduced by a rigorous bound on all the float32 rounding of the
   screen, does not exceed ``D`` is measured too; all others are farther than the k-th neighbour and
   are never measured. On Fashion-MNIST (60,000 training images, 128 components) a query measures
   about 150 rows, and the screening product is a sixth of the full one.
3. Sorting. The measured rows within ``D`` (up to their error) get the float64 distance of a naive
   search and are sorted by ``(distance, training index)``.

So the neighbours are those of an exact float64 computation with ties broken by the lower training
index, whatever the BLAS build, the chunk size or the number of threads (on 0..255 pixels the float64
squared distances are exact integers). The float32 steps alone would not be: their rounding, about
1e-4 relative to ``|a|^2 + |b|^2``, reorders near-ties.

``kneighbors`` fits an index and queries it. When the projection does not pay (few query rows, or
fewer than twice as many features as components: ``_index_pays``), the index keeps the full
float32 screen instead: one product scores every training row with its distance (up to rounding), a
cheap selection keeps the ``k + margin`` best, these are re-ranked in float64, and a rigorous bound on
the float32 rounding certifies that no other row can be as near as the k-th, row by row; the rare
rows it cannot certify are re-screened wider. That is also the only search for manhattan, whose L1
distances the screen takes from ``distances.pairwise_distances``.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
from threadpoolctl import threadpool_limits

from fmproto.search import projection
from fmproto.pipeline.checks import check_int, is_int, rows as checked_rows
from fmproto.search.distances import as_rows, check_metric, pairwise_distances, squared_norms

KnnMetric = Literal["euclidean", "sqeuclidean", "cosine", "manhattan"]
KNN_METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine", "manhattan")
Weights = Literal["uniform", "distance"]
WEIGHTS: tuple[str, ...] = ("uniform", "distance")

# Principal components of KnnIndex's screening projection. On Fashion-MNIST (60,000 x 784 pixels,
# k=5) a query measures about 150 rows with 128 components (the 32 first included), 100 with 160,
# 70 with 192, 260 with 96: fewer components make the screening product cheaper and the measuring
# dearer. From 96 to 160 the fit and 10,000 queries took 2.2 to 2.35 s on 2 cores, within noise.
COMPONENTS = 128
# Rows measured first, the best by the bound: their k-th distance decides what the bound must rule
# out. 16 to 32 measured alike on Fashion-MNIST (150 rows a query in all). With every dimension kept
# the bound is nearly the distance, and k + _MARGIN suffice.
_INIT = 32
# Candidates kept beyond k by the full screens (manhattan; KnnIndex keeping every dimension). On
# Fashion-MNIST margin 8 left no manhattan row to re-screen for k = 1, 5 or 10.
_MARGIN = 8
# The screens select the best columns of a row through the minima of groups of this many columns:
# the best few of a row lie in that many groups with the lowest minima, so one pass for the minima
# and a small selection replace a selection over the whole 60,000-wide row. KnnIndex fills a group
# with near training rows (``_leaf_order``), so a query's candidates fall in few groups.
_GROUP = 16
# Bytes of one query chunk's float32 score block (chunk x training rows): the chunk shrinks for large
# training sets so that memory stays bounded (1,024 x 60,000 takes 245 MB).
_SCREEN_BYTES = 1 << 28
# (query, column) entries examined at once when collecting candidates: about 100 MB of indices.
_CANDIDATE_BUDGET = 1 << 22
# Float64 elements of gathered training rows measured at once: 16 MB.
_MEASURE_ELEMENTS = 1 << 21
# Query rows with more candidates than 1/8 of the training rows, if a chunk has more than two
# training sets' worth of them, go to an index keeping every dimension, whose bound is nearly the
# distance: measuring a candidate costs about as much as screening 50 training rows in full, but
# that index costs a fit and a full product. Rows of uniformly random pixels, whose principal
# components hold nothing special, go there; on Fashion-MNIST a chunk has a few such rows at most,
# and measures them. That index holds a float32 copy of the training rows: it is built only when it
# takes at most 1 GB; otherwise all rows measure their candidates.
_FULL_SCREEN = 8
_FULL_SCREEN_BYTES = 1 << 30
# Threads sharing out a chunk's rows, each doing its rows' product on one BLAS thread and the work
# after it (numpy's loops release the GIL): one a core. Results do not depend on it.
_WORKERS = max(1, min(64, os.cpu_count() or 1))
# Elements of the float64 block of candidate rows re-ranked at once (manhattan): 4 MB, cache-sized.
_RERANK_ELEMENTS = 1 << 19
_UNIT = 2.0**-24  # float32 unit round-off
_U64 = 2.0**-53  # float64 unit round-off


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
        Finite numbers. Integer images (uint8) need no float copy: the screen holds the projected
        rows, and measuring gathers the few candidate rows.
    k : int, 1 <= k <= n_train
    metric : {'euclidean', 'sqeuclidean', 'cosine', 'manhattan'}
        ``cosine`` is ``1 - cos(angle)`` clipped to [0, 2]; a row of zeros is at distance 1 from
        everything, as in ``fmproto.search.distances``. ``manhattan`` has no matrix-product form: it goes
        through ``distances.pairwise_distances`` and is about 200 times slower than euclidean
        (60,000 x 784 training rows on 2 cores: 100 ms a query row against 0.46 ms;
        ``bench/knn.py --manhattan 200`` measures it).
    chunk : int >= 1
        Query rows handled at once, at most: memory is about ``chunk * n_train * 4`` bytes for the
        float32 score block (245 MB for 1,024 x 60,000), and fewer rows are taken when that would
        pass 256 MB. Results do not depend on it.
    X_train_sq_norms : ndarray of shape (n_train,), optional
        Accepted for callers of earlier versions and checked for its shape; the index computes its
        own float64 norms.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float32
        The metric's distances (euclidean: square-rooted), ascending along each row, computed in
        float64 and rounded once to float32.
    indices : ndarray of shape (n_queries, k), int64
        Rows of ``X_train``. Ties (equal float64 distances, e.g. duplicate training rows) are
        ordered by the lower training index first, and at the k-th place the lower index is kept.

    Notes
    -----
    Fits a ``KnnIndex`` and queries it: with ``COMPONENTS`` components when ``_index_pays`` (the
    screening product saves more than projecting the training rows costs: on 784 pixels from 613
    query rows), otherwise with every dimension. Both give the same neighbours and distances,
    bit for bit. A caller querying the same training rows several times should fit one index.
    """
    check_metric(metric, KNN_METRICS)
    X_train = checked_rows(X_train, "X_train")
    n_train, n_features = X_train.shape
    X_query = _checked_query(X_query, X_train.shape, k, chunk)  # before the fit, which costs
    if X_train_sq_norms is not None and np.shape(X_train_sq_norms) != (n_train,):
        raise ValueError(f"X_train_sq_norms must have shape ({n_train},); got {np.shape(X_train_sq_norms)}")
    components = COMPONENTS if _index_pays(len(X_query), n_features, metric) else n_features
    return KnnIndex(components).fit(X_train, metric).query(X_query, k, chunk=chunk)


def _checked_query(X_query, train_shape: tuple[int, int], k, chunk) -> np.ndarray:
    """``X_query`` as rows that fit training rows of ``train_shape``, with ``k`` and ``chunk`` checked."""
    X_query = checked_rows(X_query, "X_query")
    n_train, n_features = train_shape
    if X_query.shape[1] != n_features:
        raise ValueError(f"X_query has {X_query.shape[1]} features but X_train has {n_features}")
    if not is_int(k) or not 1 <= k <= n_train:
        raise ValueError(f"k must be an integer in 1..{n_train} (the training rows); got {k!r}")
    check_int(chunk, "chunk", low=1)
    return X_query


class KnnIndex:
    """Exact k-nearest-neighbour search over fixed training rows: ``fit`` once, ``query`` many times.

    Parameters
    ----------
    components : int >= 1
        Principal components of the screening projection (``fmproto.search.projection``). With fewer than
        ``2 * components`` features the projection would not pay: the index keeps the full float32
        screen (see ``fit``).

    Notes
    -----
    ``fit`` keeps a reference to the training rows (no copy: uint8 images stay uint8; do not change
    them afterwards) and builds the ``(n_train, m + 2)`` float32 screening matrix. ``query`` works
    through query chunks whose float32 score block is at most 256 MB, so memory stays bounded for
    any training size: with 1.2 million uint8 images of 784 pixels (0.9 GB) the process peaked at
    2.8 GB resident, during the fit (the float32 embedding and its reordered screening matrix).

    For every query row: (1) the float32 product scores every training row with a lower bound of
    its distance; (2) the best rows by score (``_INIT``) are measured (``_measure``: a float32
    product a pair and a rigorous bound on its error), and their k-th distance plus its error is
    ``D``; (3) every row whose score is at most ``projection.score_limits`` of ``D`` (so possibly
    within ``D``) is measured the same way; (4) the measured rows within ``D`` of the query, up to
    their error, get the float64 distance of a naive search (``_naive``) and are sorted by
    (distance, index). Every row left out in (3) is farther than ``D``, ``D`` is at least the k-th
    distance, and every row within it is in (4), so no row left out can enter the k nearest, not
    even as a tie won by a lower index. Rows with more candidates than ``n_train / _FULL_SCREEN`` in
    (3), when a chunk has many, are handed to an index keeping every dimension. Manhattan has no
    bound of this kind: it is screened in full.
    """

    def __init__(self, components: int = COMPONENTS):
        self.components = check_int(components, "components", low=1)
        self.metric = None

    def fit(self, X_train: np.ndarray, metric: KnnMetric = "euclidean") -> "KnnIndex":
        """Fit on ``X_train (n_train, n_features)`` (or images ``(n_train, H, W)``), finite numbers.

        Projects onto ``components`` when ``n_features >= 2 * components``; otherwise (and for
        manhattan) keeps the full float32 screen, as ``kneighbors`` without a projection does,
        unless the rows are too large or too small for float32 squares (``_float32_safe``): then it
        projects onto every dimension, scaled. Returns the index itself.
        """
        check_metric(metric, KNN_METRICS)
        X = checked_rows(X_train, "X_train")
        if len(X) == 0:
            raise ValueError("X_train must have at least one row; got 0")
        if metric == "manhattan" or (X.shape[1] < 2 * self.components and _float32_safe(X)):
            self.metric, self.X_train, self.mode, self._fallback = metric, X, "screen", None
            self.screen = _Screen(X, metric, None)
            return self
        return self._fit_projected(X, metric)

    def _fit_projected(self, X: np.ndarray, metric: str) -> "KnnIndex":
        """``fit`` by the projection onto ``min(components, n_features)`` components."""
        self.metric, self.X_train, self.mode = metric, X, "projected"
        n, n_features = X.shape
        self.projection = projection.fit(X, self.components, normalize=metric == "cosine")
        self.group = _GROUP if n >= 64 * _GROUP else 1
        embedding = projection.embed(self.projection, X)
        # Column j + n_groups * t of the screen holds the t-th row of leaf j: near rows share a group,
        # so a query's candidates fall in few groups (on Fashion-MNIST a third as many).
        n_groups = -(-n // self.group)
        self.rows_at = np.full(n_groups * self.group, -1, dtype=np.int64)  # training row of each column
        position = np.arange(n)
        self.rows_at[position // self.group + n_groups * (position % self.group)] = _leaf_order(embedding.coords,
                                                                                              self.group)
        self.screen = projection.screen_matrix(embedding, self.rows_at)
        self.sq_norms = embedding.row_sq_norms  # float64 |x|^2 of the rows: exact for integers
        self.norms = np.sqrt(self.sq_norms)
        self.integral, self.largest = _integers(X)
        self.full = self.projection.n_components >= n_features
        self._fallback = None  # the full screen, built when query rows first need it
        return self

    def query(self, X_query: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest training rows of every query row, exactly, nearest first.

        Parameters
        ----------
        X_query : ndarray of shape (n_queries, n_features) or (n_queries, H, W)
        k : int, 1 <= k <= n_train
        chunk : int >= 1
            Query rows screened at once, at most; fewer when ``chunk * n_train`` float32 scores would
            pass 256 MB. Results do not depend on it.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), float32
        indices : ndarray of shape (n_queries, k), int64
            As ``kneighbors`` returns them, with its tie rule.
        """
        if self.metric is None:
            raise ValueError("the index is not fitted: call fit(X_train, metric) first")
        X_query = _checked_query(X_query, self.X_train.shape, k, chunk)
        n_train, n_features = self.X_train.shape
        k = int(k)
        distances = np.empty((len(X_query), k), dtype=np.float32)
        indices = np.empty((len(X_query), k), dtype=np.int64)
        if self.mode == "screen":
            if self.metric != "manhattan" and not _float32_safe(X_query):
                return self._robust().query(X_query, k, chunk)
            n_candidates = min(n_train, k + _MARGIN)
            for start in range(0, len(X_query), chunk):
                rows = slice(start, start + chunk)
                distances[rows], indices[rows] = _chunk_kneighbors(X_query[rows], self.X_train, k, n_candidates,
                                                                   self.metric, self.screen)
            return distances, indices
        width = len(self.screen.W)
        chunk = max(1, min(int(chunk), _SCREEN_BYTES // (4 * width)))
        block = np.empty((min(chunk, len(X_query)), width), dtype=np.float32)
        with ThreadPoolExecutor(_WORKERS) as pool:
            for start in range(0, len(X_query), chunk):
                rows = slice(start, start + chunk)
                distances[rows], indices[rows] = self._query_chunk(X_query[rows], k, block, pool)
        return distances, indices

    def _query_chunk(self, Xc: np.ndarray, k: int, block: np.ndarray, pool) -> tuple[np.ndarray, np.ndarray]:
        """``query`` for one chunk: float32 distances and indices, (n_rows, k).

        The chunk's rows are shared out between the ``pool``'s threads, each embedding and scoring
        its rows on one BLAS thread, then selecting and measuring (numpy releases the GIL in its
        loops). A product on the BLAS's own threads left them spinning, waiting for more work,
        through the selection that followed: a third of a core's time on 2 cores. Each row's result
        is the same whichever thread computes it.
        """
        n_rows = len(Xc)
        n_parts = min(_WORKERS, max(1, n_rows // 64)) if pool is not None else 1
        bounds = np.linspace(0, n_rows, n_parts + 1).astype(int)
        parts = [slice(first, stop) for first, stop in zip(bounds[:-1], bounds[1:])]

        def work(part: slice):
            embedding = projection.embed(self.projection, Xc[part])
            S = projection.scores(projection.query_matrix(embedding), self.screen.W, out=block[part])
            return *self._rows(S, _Queries.of(Xc[part], self), embedding, k), embedding.row_sq_norms

        with threadpool_limits(1, user_api="blas") if n_parts > 1 else nullcontext():
            done = list(pool.map(work, parts)) if n_parts > 1 else [work(parts[0])]
        distances, indices, hand_over, row_sq_norms = (np.concatenate(arrays) for arrays in zip(*done))
        distances = _finish(distances, self.metric)
        if hand_over.any():
            distances[hand_over], indices[hand_over] = self._full_index().query(Xc[hand_over], k)
        if self.metric == "cosine":
            zero = row_sq_norms == 0  # at distance 1 from every training row: the first k, by the tie rule
            distances[zero], indices[zero] = 1.0, np.arange(k)
        return distances, indices

    def _rows(self, S, queries: "_Queries", embedding, k: int):
        """Steps (1) to (4) for the rows of a chunk with scores ``S (n_rows, n_padded)`` (changed in place).

        Returns float64 distances and indices ``(n_rows, k)``, and which rows are left to the index
        keeping every dimension (their results here are placeholders).
        """
        n_rows = len(S)
        n_train, n_features = self.X_train.shape
        n_groups = S.shape[1] // self.group
        minima = S if self.group == 1 else S.reshape(n_rows, self.group, n_groups).min(axis=1)

        # (1)-(2): the best rows by the bound, measured; D bounds the k-th distance from above.
        n_init = min(n_train, k + _MARGIN if self.full else max(k + _MARGIN, _INIT))
        init = _best_columns(S, n_init, self.group, minima)[0]  # (n_rows, n_init) columns
        measured = self.rows_at[init]  # training rows: every column chosen scores below the padding
        d, e = self._measure(queries, slice(None), measured)
        D = np.partition(d + e, k - 1, axis=1)[:, k - 1]
        keep = d - e <= D[:, None]
        found = [(np.nonzero(keep)[0], measured[keep], d[keep])]

        # (3): every other row that the bound does not rule out; rows with too many go to the index
        # keeping every dimension (nearly exact bounds) if they are many, else are measured too.
        limits = projection.score_limits(self._bound_sq(D, n_features), embedding, self.screen, self.projection)
        if self.metric == "cosine":
            limits[queries.sq == 0] = -np.inf  # a zero row is at distance 1 from all: set by the caller
        np.put_along_axis(S, init, np.nan, axis=1)  # measured already: NaN passes no comparison
        heavy = {}  # rows with more than n_train / _FULL_SCREEN candidates: their number
        for q, cols in self._candidates(S, minima, limits):
            counts = np.bincount(q, minlength=n_rows)
            big = counts > (n_train if self.full else n_train // _FULL_SCREEN)
            heavy.update((int(row), int(counts[row])) for row in np.flatnonzero(big))
            light = ~big[q]
            found += self._within(queries, q[light], cols[light], D)
        hand_over = np.zeros(n_rows, dtype=bool)
        if sum(heavy.values()) > 2 * n_train and self._full_index_fits():
            hand_over[list(heavy)] = True  # worth a full product: more than 80 rows' worth of measuring
        elif heavy:  # a few: measured like the others
            only = np.full(n_rows, -np.inf, dtype=np.float32)
            only[list(heavy)] = limits[list(heavy)]
            for q, cols in self._candidates(S, minima, only):
                found += self._within(queries, q, cols, D)

        # (4): the naive float64 distances of the rows within D, sorted by (distance, index) in each row.
        distances = np.zeros((n_rows, k), dtype=np.float64)
        indices = np.zeros((n_rows, k), dtype=np.int64)
        rows, cols, d = (np.concatenate(parts) for parts in zip(*found))
        mine = ~hand_over[rows]
        rows, cols, d = rows[mine], cols[mine], d[mine]
        d = self._naive(queries, rows, cols)
        order = np.lexsort((cols, d, rows))
        kept = np.flatnonzero(~hand_over)
        take = order[np.searchsorted(rows[order], kept)[:, None] + np.arange(k)]  # each has k: those that set D
        distances[kept], indices[kept] = d[take], cols[take]
        return distances, indices, hand_over

    def _full_index_fits(self) -> bool:
        """Whether a full screen may be built: not for this one, and its float32 copy takes at most 1 GB."""
        n_train, n_features = self.X_train.shape
        return not self.full and 4 * n_train * (n_features + 2) <= _FULL_SCREEN_BYTES

    def _full_index(self) -> "KnnIndex":
        """An index keeping every dimension, fitted on first use (see ``_full_index_fits``)."""
        if self._fallback is None:
            self._fallback = KnnIndex(self.X_train.shape[1]).fit(self.X_train, self.metric)
        return self._fallback

    def _robust(self) -> "KnnIndex":
        """For query rows too large or small for the full float32 screen: every dimension, projected and scaled."""
        if self._fallback is None:
            self._fallback = KnnIndex(self.X_train.shape[1])._fit_projected(self.X_train, self.metric)
        return self._fallback

    def _bound_sq(self, D: np.ndarray, n_features: int) -> np.ndarray:
        """Squared distance in the projection's space beyond which a row's naive distance exceeds ``D``.

        The naive float64 distance is within gamma_(n+8) of the exact one: relative to the squared
        euclidean distance, absolute for cosine, whose rows the projection sees normalised
        (``1 - cos = |u_a - u_b|^2 / 2``).
        """
        gamma = (n_features + 8) * _U64 / (1 - (n_features + 8) * _U64)
        if self.metric == "cosine":
            return 2.0 * (D + gamma)
        return np.maximum(D, 0.0) / (1 - gamma)

    def _measure(self, queries: "_Queries", rows, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances of query rows ``rows`` (a slice or indices) to training rows ``cols (r, c)``, and error bounds.

        Squared euclidean ``|a|^2 + |b|^2 - 2 a.b`` or cosine ``1 - a.b / (|a| |b|)`` in float64,
        from a float32 product a pair (einsum: no BLAS, whose threads wait on a busy core; the
        training rows are cast in small buffers, twice as fast as a float copy of them).
        ``e (r, c)`` bounds the distance to the naive float64 one: gamma_(d+3) in float32 on
        ``|a| |b|`` (the rows' rounding to float32 included), gamma_(d+8) in float64 on the rest.
        """
        A32 = (queries.A if queries.A32 is None else queries.A32)[rows]  # float64: no float32 bound applies
        a_sq = queries.sq[rows]
        n_rows, width = cols.shape
        n_features = A32.shape[1]
        d = np.empty((n_rows, width), dtype=np.float64)
        step = max(1, _MEASURE_ELEMENTS // max(1, width * n_features))
        part = max(1, _MEASURE_ELEMENTS // n_features)
        for r in range(0, n_rows, step):
            for c in range(0, width, part):
                B = self.X_train[cols[r : r + step, c : c + part]]  # (step, part, n_features), its own dtype
                d[r : r + step, c : c + part] = np.einsum("rcd,rd->rc", B, A32[r : r + step])
        g64 = (n_features + 8) * _U64 / (1 - (n_features + 8) * _U64)
        unit = _UNIT if queries.A32 is not None else _U64
        g32 = 1.01 * (n_features + 3) * unit / (1 - (n_features + 3) * unit)
        tiny = 4 * (n_features + 3) * 2.0**-149  # float32 subnormals: an absolute error an operation
        a_norm, b_norm = np.sqrt(a_sq)[:, None], self.norms[cols]
        if self.metric == "cosine":
            norms = a_norm * b_norm
            cos = np.divide(d, norms, out=np.zeros_like(d), where=norms > 0)  # zero rows: distance 1
            e = g32 + 4 * g64 + np.divide(tiny, norms, out=np.full_like(d, np.inf), where=norms > 0)
            return 1.0 - cos, np.where(norms > 0, e, 0.0)
        d *= -2.0
        d += a_sq[:, None]
        d += self.sq_norms[cols]
        return d, 2 * g32 * a_norm * b_norm + 2 * g64 * (a_norm + b_norm) ** 2 + 2 * tiny

    def _candidates(self, S, minima, limits):
        """``(query rows, training rows)`` pairs, sorted by query row: the training rows whose score is at
        most the query row's limit.

        Columns are found through the group minima: a group whose minimum is above the limit holds
        no candidate. Rows are worked through in parts of about ``_CANDIDATE_BUDGET`` entries, one
        part at a time; a row is never split between parts.
        """
        n_rows, n_groups = minima.shape
        selected = minima <= limits[:, None]  # (n_rows, n_groups)
        ends = np.cumsum(np.count_nonzero(selected, axis=1)) * self.group
        first = 0
        while first < n_rows:
            done = ends[first - 1] if first else 0
            stop = max(first + 1, int(np.searchsorted(ends, done + _CANDIDATE_BUDGET, side="right")))
            q, g = np.divmod(np.flatnonzero(selected[first:stop]), n_groups)
            q += first
            cols = g[:, None] + n_groups * np.arange(self.group)  # (n_selected, group)
            keep = S[q[:, None], cols] <= limits[q][:, None]
            q, rows = np.broadcast_to(q[:, None], cols.shape)[keep], self.rows_at[cols[keep]]
            real = rows >= 0  # not padding
            yield q[real], rows[real]
            first = stop

    def _within(self, queries: "_Queries", q: np.ndarray, cols: np.ndarray, D: np.ndarray) -> list:
        """Measure the pairs ``(q, cols)`` (sorted by ``q``); ``[(rows, cols, distances)]`` of those within ``D[q]``.

        Rows are measured together in buckets of equal padded width (multiples of 16), a few numpy
        calls a bucket rather than a row; padding repeats a row's last column and is dropped.
        """
        counts = np.bincount(q, minlength=len(D)) if len(q) else np.zeros(len(D), dtype=np.int64)
        rows = np.flatnonzero(counts)
        starts = np.cumsum(counts) - counts
        widths = -(-counts[rows] // 16) * 16
        found = []
        for width in np.unique(widths):
            R = rows[widths == width]
            position = np.arange(width)
            P = cols[starts[R][:, None] + np.minimum(position, counts[R][:, None] - 1)]  # (len(R), width)
            d, e = self._measure(queries, R, P)
            keep = (position < counts[R][:, None]) & (d - e <= D[R][:, None])
            found.append((R[np.nonzero(keep)[0]], P[keep], d[keep]))
        return found

    def _naive(self, queries: "_Queries", rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The naive search's float64 distances of the pairs ``(rows, cols)``: the manhattan re-rank's.

        Integer rows (``queries.exact``) take ``|a|^2 + |b|^2 - 2 a.b`` in float64, exact in any
        order of summation, as are the differences the naive search squares and sums.
        """
        out = np.empty(len(rows), dtype=np.float64)
        step = max(1, _MEASURE_ELEMENTS // queries.A.shape[1])
        for start in range(0, len(rows), step):
            r, c = rows[start : start + step], cols[start : start + step]
            if queries.exact:
                dot = np.einsum("pd,pd->p", self.X_train[c], queries.A[r])  # the training rows cast to float64
                out[start : start + step] = queries.sq[r] + self.sq_norms[c] - 2 * dot
            else:
                a = queries.A[r][:, None, :]  # (pairs, 1, n_features)
                b = self.X_train[c].astype(np.float64)[:, None, :]
                out[start : start + step] = _exact(a, b, self.metric)[:, 0]
        return out


@dataclass
class _Queries:
    """A chunk of query rows as ``KnnIndex`` measures them.

    ``A`` (n, n_features) float64, ``A32`` the same rounded to float32 (None when a float32
    product could overflow: then products are float64), ``sq`` their float64 squared norms.
    ``exact``: the naive squared euclidean distances are those of float64 products (integer rows
    whose sums stay below 2^53, so every sum is exact).
    """

    A: np.ndarray
    A32: np.ndarray | None
    sq: np.ndarray
    exact: bool

    @classmethod
    def of(cls, Xc: np.ndarray, index: "KnnIndex") -> "_Queries":
        A = Xc.astype(np.float64)
        largest = _largest(A)
        exact = (index.metric != "cosine" and index.integral and _integral(A)
                 and A.shape[1] * (index.largest + largest) ** 2 < 2.0**53)
        small = A.shape[1] * max(largest, 1.0) * max(index.largest, 1.0) < 2.0**100  # float32 max: 2^128
        return cls(A=A, A32=A.astype(np.float32) if small else None, sq=np.einsum("ij,ij->i", A, A), exact=exact)


def _index_pays(n_queries: int, n_features: int, metric: str, components: int = COMPONENTS) -> bool:
    """Whether ``kneighbors`` projects onto ``components``: when the screen saves more than the projection costs.

    The full screen takes ``n_features + 2`` multiply-adds a (query, training row) pair, the
    projected one ``m + 2`` (``m = min(components, n_features)``); projecting a training row in
    float64 costs about ``4 n_features m`` float32 multiply-adds of time. So the projection pays
    when ``n_queries (n_features - m) > 4 n_features m``: from 613 queries on 784 pixels (m = 128).
    And only with ``n_features >= 2 m``: on 192 HOG features (PCA) of Fashion-MNIST the full screen
    was faster than projecting onto 128 or 160 components (1.5 s against 2.05 and 1.8 s, 60,000 x
    10,000, k=10). Manhattan has no projection.
    """
    if metric == "manhattan":
        return False
    m = min(components, n_features)
    return n_features >= 2 * m and n_queries * (n_features - m) > 4 * n_features * m


def _float32_safe(X: np.ndarray) -> bool:
    """Whether the full float32 screen takes rows ``X``: the largest |value| in [2^-50, 2^50], or 0.

    Then no float32 square or product overflows, and subnormal rounding stays far below the
    screen's rounding bound (relative to the largest squared norm).
    """
    largest = _largest(X)
    return largest == 0 or 2.0**-50 <= largest <= 2.0**50


def _leaf_order(F: np.ndarray, size: int) -> np.ndarray:
    """Rows of ``F (n, width)`` ordered so that each run of ``size`` (the last maybe shorter) holds near rows.

    A k-d split, level by level: every node of ``size * c`` rows is split at ``size * (c // 2)``
    along one of the 8 widest coordinates in turn (the same for all nodes of a level), until nodes
    hold ``size`` rows. Deterministic: ties are ordered by row.
    """
    n = len(F)
    order = np.arange(n)
    if size <= 1 or n <= size:
        return order
    widest = np.argsort(-F.var(axis=0), kind="stable")[:8]
    start = np.zeros(n, dtype=np.int64)  # first position of each position's node
    length = np.full(n, n, dtype=np.int64)  # its length
    level = 0
    while length.max() > size:
        values = F[order, widest[level % len(widest)]].astype(np.float64)
        low, high = float(values.min()), float(values.max())
        # One stable sort by (node, value): nodes are runs of positions, so node + value in [0, 1).
        key = start + (values - low) / (high - low + 1.0) if high > low else start.astype(np.float64)
        order = order[np.argsort(key, kind="stable")]
        half = size * (-(-length // size) // 2)
        position = np.arange(n)
        right = (position - start >= half) & (length > size)
        start = np.where(right, start + half, start)
        length = np.where(length > size, np.where(right, length - half, half), length)
        level += 1
    return order


def _integers(X: np.ndarray) -> tuple[bool, float]:
    """Whether every entry of rows ``X`` is an integer, and the largest absolute entry."""
    largest = max(abs(float(X.max())), abs(float(X.min()))) if X.size else 0.0
    if np.issubdtype(X.dtype, np.integer):
        return True, largest
    step = max(1, _MEASURE_ELEMENTS // max(1, X.shape[1]))
    return all(_integral(X[start : start + step]) for start in range(0, len(X), step)), largest


def _integral(Y: np.ndarray) -> bool:
    """Whether every entry of float ``Y`` is an integer."""
    return bool(np.array_equal(Y, np.rint(Y)))


def _largest(Y: np.ndarray) -> float:
    """The largest absolute entry of ``Y`` (0 for none)."""
    return max(abs(float(Y.max())), abs(float(Y.min()))) if Y.size else 0.0


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
        if self.block is None or len(self.block) < len(Xc):  # usually the first chunk; later ones reuse its rows
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


def _best_columns(S: np.ndarray, n_candidates: int, group: int,
                  minima: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``n_candidates`` lowest scores of each row, and the highest score among them.

    Every column not returned scores at least the returned highest (``boundary``). ``minima``, the
    group minima of ``S`` (n_rows, width // group), saves computing them again.
    """
    n_rows, width = S.shape
    n_groups = width // group
    if n_groups <= n_candidates or group == 1:
        cols = np.argpartition(S, n_candidates - 1, axis=1)[:, :n_candidates] if n_candidates < width else \
            np.broadcast_to(np.arange(width), (n_rows, width))
        return cols, np.take_along_axis(S, cols, axis=1).max(axis=1)
    # The n_candidates lowest of a row lie in the n_candidates groups with the lowest minima: any
    # other group's entries are >= the n_candidates-th lowest minimum, and the chosen groups already
    # hold n_candidates entries <= it. Group j is the strided set of columns j, j + n_groups, ...:
    # its minimum is then an elementwise minimum of contiguous slices, one fast pass over S.
    if minima is None:
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

