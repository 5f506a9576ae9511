"""The exact-search engine: fit once on training rows, then the k nearest or every pair within a radius.

A ``projection.Projection``'s float32 product gives every training row a certified lower bound of its
distance; rows it cannot rule out are measured (float32, with a rigorous error bound) and those that can
still count get the naive float64 distance. So results are a float64 search's, ties to the lower index,
whatever the BLAS, chunk or threads. Manhattan has no product form: a plain float64 search."""

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
from threadpoolctl import threadpool_limits

from fmproto.pipeline.checks import check_int, rows as checked_rows
from fmproto.search.distances import check_metric, exact_pairs
from fmproto.search import projection
from fmproto.search.projection import Projection
from fmproto.search.screening import Queries, best_columns, checked_query, closest, integers, kept_bound, leaf_order
from fmproto.search.rounding import TINY32, U32, U64, gamma

KNN_METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine", "manhattan")

# On Fashion-MNIST (k=5) a query measures about 150 rows with 128 components, 260 with 96; 96-160 time alike.
COMPONENTS = 128
_INIT, _MARGIN = 32, 8  # rows measured first, the best by the bound; with every dimension kept k + _MARGIN
_GROUP = 16  # columns are selected through the minima of leaves of this many near training rows
_SCREEN_BYTES = 1 << 28  # a query chunk's float32 score block
_CANDIDATE_BUDGET = 1 << 22  # (query, column) entries examined at once: about 100 MB of indices
_MEASURE_ELEMENTS = 1 << 21  # float64 elements of gathered training rows measured at once
# Rows with over 1/_FULL_SCREEN of the training rows as candidates go, when a chunk has over two training
# sets' worth, to an index keeping every dimension (a float32 copy of at most _FULL_SCREEN_BYTES).
_FULL_SCREEN, _FULL_SCREEN_BYTES = 8, 1 << 30
_WORKERS = max(1, min(64, os.cpu_count() or 1))  # threads sharing a chunk's rows, one BLAS thread each


def index_bytes(n_rows: int, n_features: int, itemsize: int, components: int = COMPONENTS) -> int:
    """About the most bytes ``KnnIndex(components)`` fitted on ``(n_rows, n_features)`` rows of ``itemsize`` bytes
    holds: the rows (kept by reference), the screen, the embedding and leaf order while it fits, and the index
    keeping every dimension that a hand-over fits where its float32 copy fits in ``_FULL_SCREEN_BYTES``."""
    m = components if n_features >= 2 * components else n_features
    per_row = n_features * itemsize + 4 * (2 * m + 3) + 8 * 15  # rows, W and coords, float64 norms, int64 orders
    full = 4 * n_rows * (n_features + 2)
    return n_rows * per_row + (2 * full + 8 * 15 * n_rows if full <= _FULL_SCREEN_BYTES else 0)


def query_bytes(n_rows: int, chunk: int, threads: int = _WORKERS) -> int:
    """About the most bytes one chunk of ``chunk`` query rows adds to an index of ``n_rows`` (``kneighbors`` or
    ``radius_pairs``): the float32 score blocks with their group minima (the full screen's too, after a
    hand-over), and for each of the ``threads`` sharing the chunk its candidates and the rows it measures
    (their budgets: reached where the screen rules few rows out)."""
    block = min(_SCREEN_BYTES, 4 * chunk * (n_rows + _GROUP))
    parts = max(1, min(threads, chunk // 64))  # as _query_chunk splits a chunk
    return 2 * block * 17 // 16 + parts * (40 * _CANDIDATE_BUDGET + 4 * 8 * _MEASURE_ELEMENTS)


def metric_distances(naive: np.ndarray, metric: str) -> np.ndarray:
    """``KnnIndex.kneighbors``'s float32 distances from the float64 ones it ranks by: the root for euclidean,
    taken in float64, then rounded once."""
    return (np.sqrt(naive) if metric == "euclidean" else naive).astype(np.float32)


class KnnIndex:
    """Exact search over fixed training rows (kept by reference): ``fit`` once, then query. ``components``
    of the screen; under ``2 * components`` features every dimension is kept (the full screen).
    Per query row: (1) the product bounds every training row from below; (2) the best are
    measured, their k-th distance plus its error bound is ``D``; (3) every row scoring within
    ``Projection.limits`` of ``D`` is measured; (4) those within ``D`` get the naive float64 distance,
    sorted by (distance, index). A row left out in (3) is farther than ``D``: not even a tie."""

    def __init__(self, components: int = COMPONENTS):
        self.components = check_int(components, "components", low=1)
        self.metric = None

    def fit(self, X_train: np.ndarray, metric: str = "euclidean") -> "KnnIndex":
        """Fit on finite ``X_train (n_train, n_features)`` (or images); returns self."""
        check_metric(metric, KNN_METRICS)
        X = checked_rows(X_train, "X_train")
        if len(X) == 0:
            raise ValueError("X_train must have at least one row; got 0")
        self.metric, self.X_train, self._full_index = metric, X, None
        if metric == "manhattan":
            return self
        n, n_features = X.shape
        m = self.components if n_features >= 2 * self.components else n_features
        self.projection = Projection(m, normalize=metric == "cosine").fit(X)
        self.full = self.projection.n_components >= n_features
        self.group = _GROUP if n >= 64 * _GROUP else 1
        embedding = self.projection.embed(X)
        # Column j + n_groups * t of the screen holds the t-th row of leaf j, so group minima are
        # elementwise minima of contiguous slices.
        n_groups = -(-n // self.group)
        self.rows_at = np.full(n_groups * self.group, -1, dtype=np.int64)  # training row of each column
        position = np.arange(n)
        self.order = leaf_order(embedding.coords, self.group)
        self.rows_at[position // self.group + n_groups * (position % self.group)] = self.order
        self.leaf = np.empty(n, dtype=np.int64)
        self.leaf[self.order] = position // self.group
        self.screen = self.projection.screen(embedding, self.rows_at)
        self.sq_norms = embedding.row_sq_norms  # float64 |x|^2: exact for integers
        self.norms = np.sqrt(self.sq_norms)
        self.integral, self.largest = integers(X)
        return self

    def kneighbors(self, X_query: np.ndarray, k: int, chunk: int = 1024, *,
                   naive: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Float32 ``distances`` and int64 ``indices`` ``(n_queries, k)``, as ``knn.kneighbors``; ``chunk`` changes no bit.
        ``naive``: the float64 distances the search ranks by (euclidean: squared), from which ``metric_distances``
        gives the float32 ones: what merging the results of several indexes needs (``cluster.ShardedIndex``)."""
        X_query = self._checked(X_query, k, chunk)
        k, plain = int(k), self.metric == "manhattan"
        distances = np.empty((len(X_query), k), dtype=np.float64)
        indices = np.empty((len(X_query), k), dtype=np.int64)
        if not plain:
            chunk, block = self._block(chunk, len(X_query))
        with ThreadPoolExecutor(_WORKERS) as pool:
            for start in range(0, len(X_query), chunk):
                rows = slice(start, start + chunk)
                distances[rows], indices[rows] = (self._plain(X_query[rows], k) if plain
                                                  else self._query_chunk(X_query[rows], k, block, pool))
        return (distances if naive else metric_distances(distances, self.metric)), indices

    def radius_pairs(self, X_query: np.ndarray | None, radius: float, *, max_pairs: int, exclude=None,
                     chunk: int = 1024, on_chunk: Callable[[int, int], None] | None = None, naive: bool = False):
        """The closest ``max_pairs`` pairs by ``(d, i, j)`` with naive float64 ``d(X_query[i], X_train[j]) < radius``
        (the metric's units), as int64 ``i, j``, float64 ``d`` and ``capped`` (more qualified). ``X_query`` None:
        pairs ``i < j`` of the fitted rows; ``exclude (groups_query, groups_train)``: equal groups ``>= 0`` left out.
        ``on_chunk(done, total)``: called after each chunk with the query rows searched and all of them.
        ``naive``: ``d`` as ranked (euclidean: squared), as ``kneighbors``."""
        if self.metric in (None, "manhattan"):
            raise ValueError(f"radius_pairs needs an index fitted for euclidean, sqeuclidean or cosine; "
                             f"got {self.metric!r}")
        within = X_query is None
        X_query = self._checked(self.X_train if within else X_query, None, chunk)
        k = check_int(max_pairs, "max_pairs", low=1) + 1  # one beyond the cap tells whether it was hit
        limit = float(radius) ** 2 if self.metric == "euclidean" else float(radius)  # naive units
        kept = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        chunk, block = self._block(chunk, len(X_query))
        if within:  # chunks of whole leaves
            chunk = max(self.group, chunk - chunk % self.group)
            block = np.empty((min(chunk, len(X_query)), len(self.screen.W)), dtype=np.float32)
        W, rows_at, n_groups = self.screen.W, self.rows_at, len(self.rows_at) // self.group
        for start in range(0, len(X_query), chunk):
            ids = self.order[start : start + chunk] if within else np.arange(start, min(start + chunk, len(X_query)))
            if within:  # whole leaves, in leaf order: the columns of this chunk's leaves and later ones
                first = start // self.group
                W = self.screen.W.reshape(self.group, n_groups, -1)[:, first:].reshape(-1, self.screen.W.shape[1])
                rows_at = self.rows_at.reshape(self.group, n_groups)[:, first:].ravel()
            Xc = X_query[ids]
            embedding = self.projection.embed(Xc)
            S = projection.scores(embedding.query_matrix(), W, out=block.reshape(-1)[: len(Xc) * len(W)].reshape(len(Xc), -1))
            queries = Queries.of(Xc, self)
            bound = np.full(len(Xc), kept_bound(kept, k, limit))
            limits = self._limits(bound, embedding)
            for q, cols in self._candidates(S, self._minima(S), limits, max(k, len(self.rows_at)), rows_at):
                qid = ids[q]
                keep = np.ones(len(q), bool)
                if within:  # each pair once: from the lower leaf, or the lower row of one leaf
                    keep = (self.leaf[cols] > self.leaf[qid]) | ((self.leaf[cols] == self.leaf[qid]) & (cols > qid))
                if exclude is not None:
                    gq, gt = exclude[0][qid], exclude[1][cols]
                    keep &= (gq != gt) | (gq < 0)
                for rows, cols_in, _ in self._within(queries, q[keep], cols[keep], bound):
                    d = self._naive(queries, rows, cols_in)
                    good = d < limit
                    i, j = ids[rows[good]], cols_in[good]
                    kept = closest(kept, (np.minimum(i, j), np.maximum(i, j), d[good]) if within else (i, j, d[good]), k)
                if len(kept[0]) >= k:  # tighter now: later candidates are screened against it
                    bound[:] = kept_bound(kept, k, limit)
                    limits[:] = self._limits(bound, embedding)
            if on_chunk is not None:
                on_chunk(min(start + chunk, len(X_query)), len(X_query))
        i, j, d = (a[: k - 1] for a in kept)
        return i, j, (np.sqrt(d) if self.metric == "euclidean" and not naive else d), len(kept[0]) > k - 1

    def __sizeof__(self) -> int:
        """The bytes of the arrays it holds, the rows kept by reference included: what Dask weighs before it moves
        a fitted index from one worker to another (``cluster.ShardedIndex``)."""
        held = [vars(self)] + [vars(part) for part in (getattr(self, "projection", None), getattr(self, "screen", None))
                               if part is not None]
        return object.__sizeof__(self) + sum(value.nbytes if isinstance(value, np.ndarray) else
                                             value.__sizeof__() if isinstance(value, KnnIndex) else 0
                                             for values in held for value in values.values())

    def _checked(self, X_query, k, chunk) -> np.ndarray:
        if self.metric is None:
            raise ValueError("the index is not fitted: call fit(X_train, metric) first")
        return checked_query(X_query, self.X_train.shape, k, chunk)

    def _block(self, chunk: int, n_queries: int) -> tuple[int, np.ndarray]:
        """The chunk, shrunk so that its score block stays within ``_SCREEN_BYTES``, and that block."""
        width = len(self.screen.W)
        chunk = max(1, min(int(chunk), _SCREEN_BYTES // (4 * width)))
        return chunk, np.empty((min(chunk, n_queries), width), dtype=np.float32)

    def _minima(self, S: np.ndarray) -> np.ndarray:  # (n_rows, n_groups)
        n_groups = S.shape[1] // self.group
        return S if self.group == 1 else S.reshape(len(S), self.group, n_groups).min(axis=1)

    def _query_chunk(self, Xc: np.ndarray, k: int, block: np.ndarray, pool) -> tuple[np.ndarray, np.ndarray]:
        """``kneighbors(naive=True)`` of one chunk, shared by the ``pool``'s threads, one BLAS thread each (BLAS's
        own would spin through the selection, which releases the GIL)."""
        n_rows = len(Xc)
        n_parts = min(_WORKERS, max(1, n_rows // 64))
        bounds = np.linspace(0, n_rows, n_parts + 1).astype(int)
        parts = [slice(first, stop) for first, stop in zip(bounds[:-1], bounds[1:])]

        def work(part: slice):
            embedding = self.projection.embed(Xc[part])
            S = projection.scores(embedding.query_matrix(), self.screen.W, out=block[part])
            return *self._rows(S, Queries.of(Xc[part], self), embedding, k), embedding.row_sq_norms

        with threadpool_limits(1, user_api="blas") if n_parts > 1 else nullcontext():
            done = list(pool.map(work, parts)) if n_parts > 1 else [work(parts[0])]
        distances, indices, hand_over, row_sq_norms = (np.concatenate(arrays) for arrays in zip(*done))
        if hand_over.any():
            if self._full_index is None:
                self._full_index = KnnIndex(self.X_train.shape[1]).fit(self.X_train, self.metric)
            distances[hand_over], indices[hand_over] = self._full_index.kneighbors(Xc[hand_over], k, naive=True)
        if self.metric == "cosine":
            zero = row_sq_norms == 0  # at distance 1 from every training row: the first k, by the tie rule
            distances[zero], indices[zero] = 1.0, np.arange(k)
        return distances, indices

    def _rows(self, S, queries: "Queries", embedding, k: int):
        """Steps (1)-(4) for scores ``S (n_rows, n_padded)`` (changed): float64 distances and indices
        ``(n_rows, k)``, and the rows left to the full index."""
        n_rows, minima = len(S), self._minima(S)
        n_train, n_features = self.X_train.shape
        # (1)-(2): the best rows by the bound, measured; D bounds the k-th distance from above.
        n_init = min(n_train, k + _MARGIN if self.full else max(k + _MARGIN, _INIT))
        init = best_columns(S, n_init, self.group, minima)[0]
        measured = self.rows_at[init]  # every column chosen scores below the padding
        d, e = self._measure(queries, slice(None), measured)
        D = np.partition(d + e, k - 1, axis=1)[:, k - 1]
        keep = d - e <= D[:, None]
        found = [(np.nonzero(keep)[0], measured[keep], d[keep])]
        # (3): every other row the bound does not rule out; rows with too many go to the full index.
        limits = self._limits(D, embedding)
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
        if sum(heavy.values()) > 2 * n_train and not self.full and 4 * n_train * (n_features + 2) <= _FULL_SCREEN_BYTES:
            hand_over[list(heavy)] = True  # worth a full product: more than 80 rows' worth of measuring
        elif heavy:  # a few: measured like the others
            only = np.full(n_rows, -np.inf, dtype=np.float32)
            only[list(heavy)] = limits[list(heavy)]
            for q, cols in self._candidates(S, minima, only):
                found += self._within(queries, q, cols, D)
        # (4): naive float64 distances of the rows within D, sorted by (distance, index) in each row.
        distances, indices = np.zeros((n_rows, k), dtype=np.float64), np.zeros((n_rows, k), dtype=np.int64)
        rows, cols, d = (np.concatenate(parts) for parts in zip(*found))
        mine = ~hand_over[rows]
        rows, cols = rows[mine], cols[mine]
        d = self._naive(queries, rows, cols)
        order = np.lexsort((cols, d, rows))
        kept = np.flatnonzero(~hand_over)
        take = order[np.searchsorted(rows[order], kept)[:, None] + np.arange(k)]  # each has k: those that set D
        distances[kept], indices[kept] = d[take], cols[take]
        return distances, indices, hand_over

    def _limits(self, D: np.ndarray, embedding) -> np.ndarray:
        """``Projection.limits`` for naive distances up to ``D (n,)``, gamma_(n+8) from exact (cosine: absolute)."""
        g = gamma(self.X_train.shape[1] + 8)
        bound_sq = 2.0 * (D + g) if self.metric == "cosine" else np.maximum(D, 0.0) / (1 - g)
        return self.projection.limits(bound_sq, embedding, self.screen)

    def _plain(self, Xc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Manhattan: float64 L1 distances of every pair, the ``k`` best kept block by block."""
        n_train, n_features = self.X_train.shape
        A = Xc.astype(np.float64)
        step = max(1, min(n_train, _MEASURE_ELEMENTS // n_features))  # training rows at once
        best_d, best_i = np.empty((len(A), 0)), np.empty((len(A), 0), dtype=np.int64)
        for c in range(0, n_train, step):
            B = self.X_train[c : c + step].astype(np.float64)
            d = np.empty((len(A), len(B)))
            for r in range(len(A)):
                diff = B - A[r]
                d[r] = np.abs(diff, out=diff).sum(axis=1)
            d = np.concatenate([best_d, d], axis=1)
            i = np.concatenate([best_i, np.broadcast_to(np.arange(c, c + len(B)), (len(A), len(B)))], axis=1)
            order = np.argsort(d, axis=1, kind="stable")[:, :k]  # stable: the lower index first on ties
            best_d, best_i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
        return best_d, best_i

    def _measure(self, queries: "Queries", rows, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances ``d (r, c)`` of query ``rows`` (slice or indices) to training rows ``cols (r, c)``, a float32
        product a pair (einsum: BLAS threads wait on a busy core), and ``e >= |d - naive|``."""
        A32 = (queries.A if queries.A32 is None else queries.A32)[rows]  # float64: no float32 bound applies
        a_sq = queries.sq[rows]
        (n_rows, width), n_features = cols.shape, A32.shape[1]
        d = np.empty((n_rows, width), dtype=np.float64)
        step = max(1, _MEASURE_ELEMENTS // max(1, width * n_features))
        part = max(1, _MEASURE_ELEMENTS // n_features)
        for r in range(0, n_rows, step):
            for c in range(0, width, part):
                B = self.X_train[cols[r : r + step, c : c + part]]  # (step, part, n_features), its own dtype
                d[r : r + step, c : c + part] = np.einsum("rcd,rd->rc", B, A32[r : r + step])
        g64 = gamma(n_features + 8)  # on the float64 terms; gamma_(d+3) in float32 on |a| |b|
        g32 = 1.01 * gamma(n_features + 3, U32 if queries.A32 is not None else U64)
        tiny = 4 * (n_features + 3) * TINY32
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

    def _candidates(self, S, minima, limits, budget: int = _CANDIDATE_BUDGET, rows_at=None):
        """``(query rows, training rows)``, sorted by query row, of the columns scoring at most the row's limit,
        through the group minima, in parts of about ``budget`` entries (``limits`` may tighten between)."""
        n_rows, n_groups = minima.shape
        selected = minima <= limits[:, None]  # (n_rows, n_groups)
        ends = np.cumsum(np.count_nonzero(selected, axis=1)) * self.group
        first = 0
        while first < n_rows:
            done = ends[first - 1] if first else 0
            stop = max(first + 1, int(np.searchsorted(ends, done + budget, side="right")))
            q, g = np.divmod(np.flatnonzero(selected[first:stop]), n_groups)
            q += first
            cols = g[:, None] + n_groups * np.arange(self.group)  # (n_selected, group)
            keep = S[q[:, None], cols] <= limits[q][:, None]
            q, rows = np.broadcast_to(q[:, None], cols.shape)[keep], (self.rows_at if rows_at is None else rows_at)[cols[keep]]
            real = rows >= 0  # not padding
            yield q[real], rows[real]
            first = stop

    def _within(self, queries: "Queries", q: np.ndarray, cols: np.ndarray, D: np.ndarray) -> list:
        """``[(rows, cols, distances)]`` of the pairs ``(q, cols)`` (sorted by ``q``) within ``D[q]``,
        measured in buckets of rows of equal padded width (a multiple of 16)."""
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

    def _naive(self, queries: "Queries", rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Naive float64 distances of pairs ``(rows, cols)``; integer rows: ``|a|^2 + |b|^2 - 2 a.b``, as exact."""
        out = np.empty(len(rows), dtype=np.float64)
        step = max(1, _MEASURE_ELEMENTS // queries.A.shape[1])
        for start in range(0, len(rows), step):
            r, c = rows[start : start + step], cols[start : start + step]
            if queries.exact:
                dot = np.einsum("pd,pd->p", self.X_train[c], queries.A[r])  # the training rows cast to float64
                out[start : start + step] = queries.sq[r] + self.sq_norms[c] - 2 * dot
            else:
                out[start : start + step] = exact_pairs(queries.A[r], self.X_train[c], self.metric)
        return out
