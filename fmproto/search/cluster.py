"""Exact search on a Dask cluster: ``ShardedIndex`` has ``KnnIndex``'s ``fit``, ``kneighbors`` and ``radius_pairs``
and returns the same bytes, the training rows split into contiguous shards that the cluster's workers fit and query.

Why the bytes are the same: a pair's naive float64 distance comes from its two rows alone (``exact_pairs``, or,
where both rows are small integers, the integer form, which is exact and so the same value), never from the other
rows of its shard; the projection a shard fits only decides which rows get measured, and it is certified to miss
none. A shard answers with its own best by (distance, index); contiguous shards keep the order of the indices,
so the best of the shards' best by (distance, global index) is ``KnnIndex``'s answer, ties included. The
float32 distances are rounded once, after the merge, as ``KnnIndex`` rounds them (``metric_distances``).

``client`` is a ``distributed.Client``; this module imports no Dask (the caller connects). Rows go to the cluster
once, each shard's and each query chunk's in a task of their own (``_held``) that the searching tasks read (the
workers fetch them from one another), rather than as scattered data: when a worker dies, the scheduler reruns
what it held from the tasks it still holds, rows and shard fits included, on the workers left. The price: the
scheduler keeps a copy of the rows it was sent while they are in use."""

import warnings
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from fmproto.pipeline.checks import check_int, rows as checked_rows
from fmproto.search.distances import check_metric
from fmproto.search.engine import COMPONENTS, KNN_METRICS, KnnIndex, index_bytes, metric_distances, query_bytes
from fmproto.search.screening import checked_query, closest

# Two shards a worker: the pairs between shards then fall alike on every worker (``_pair_blocks``).
SHARDS_PER_WORKER = 2
_TASK_ROWS = 1024  # query rows a task answers at least: the scheduler spends milliseconds on each task
_IN_FLIGHT = 4  # tasks a shard submitted and not yet gathered: the scheduler holds the query rows of these only


class ShardedIndex:
    """``KnnIndex`` over ``SHARDS_PER_WORKER`` contiguous shards a worker of ``client``'s cluster, shard ``s`` on
    the ``s mod n_workers``-th worker by address (another if it dies); ``components`` as ``KnnIndex``."""

    def __init__(self, client, components: int = COMPONENTS):
        self.client = client
        self.components = check_int(components, "components", low=1)
        self.metric = None

    def fit(self, X_train: np.ndarray, metric: str = "euclidean") -> "ShardedIndex":
        """Fit on finite ``X_train (n_train, n_features)`` (or images); ``ValueError`` before any work when a
        worker's ``memory_limit`` is below the estimate for its shards. Returns self."""
        check_metric(metric, KNN_METRICS)
        X = checked_rows(X_train, "X_train")
        if len(X) == 0:
            raise ValueError("X_train must have at least one row; got 0")
        workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"].items())
        if not workers:
            raise ValueError("the Dask cluster has no workers")
        n_shards = min(len(X), SHARDS_PER_WORKER * len(workers))
        self.starts = np.linspace(0, len(X), n_shards + 1).astype(np.int64)  # shard s: rows starts[s]:starts[s+1]
        _check_memory(workers, np.diff(self.starts), X.shape[1], X.itemsize, self.components)
        self.metric, self.X_train = metric, X
        self._rows, self._shards = [], []  # futures: each shard's rows, sent once, and its fitted KnnIndex
        for s, (first, stop) in enumerate(zip(self.starts[:-1], self.starts[1:])):
            where = {"workers": [workers[s % len(workers)][0]], "allow_other_workers": True}
            self._rows.append(self._submit(_held, X[first:stop], **where))
            self._shards.append(self._submit(_fit, self._rows[-1], metric, self.components, **where))
        return self

    def kneighbors(self, X_query: np.ndarray, k: int, chunk: int = 1024, *, naive: bool = False,
                   on_chunk: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``KnnIndex.kneighbors``; a task a shard and ``max(chunk, 1024)`` query rows. ``on_chunk(done, total)``:
        called as the query rows are answered, with those done and all of them."""
        X_query = self._checked(X_query, k, chunk)
        k, n, step = int(k), len(X_query), max(int(chunk), _TASK_ROWS)
        sizes = np.diff(self.starts)

        def calls():  # a chunk goes to the cluster once; the shards' workers fetch it from one another
            for first in range(0, n, step):
                rows = self._submit(_held, X_query[first : first + step])
                for shard, size in zip(self._shards, sizes):
                    yield _kneighbors, shard, rows, min(k, int(size)), chunk

        answers = self._gathered(calls())
        distances, indices = np.empty((n, k), dtype=np.float64), np.empty((n, k), dtype=np.int64)
        for first in range(0, n, step):
            parts = [next(answers) for _ in self._shards]
            d = np.concatenate([part[0] for part in parts], axis=1)
            i = np.concatenate([part[1] + start for part, start in zip(parts, self.starts)], axis=1)
            best = np.lexsort((i, d))[:, :k]  # by distance, then global index: KnnIndex's tie rule
            distances[first : first + step] = np.take_along_axis(d, best, axis=1)
            indices[first : first + step] = np.take_along_axis(i, best, axis=1)
            if on_chunk is not None:
                on_chunk(min(first + step, n), n)
        return (distances if naive else metric_distances(distances, self.metric)), indices

    def radius_pairs(self, X_query: np.ndarray | None, radius: float, *, max_pairs: int, exclude=None,
                     chunk: int = 1024, on_chunk: Callable[[int, int], None] | None = None, naive: bool = False):
        """``KnnIndex.radius_pairs``, the cap included: each task keeps its closest ``max_pairs``, so the closest
        ``max_pairs`` of all are among them, and more than ``max_pairs`` in all (or in one task) is ``capped``.
        ``on_chunk(done, total)``: called after each task, with the query rows' share of the work done."""
        if self.metric in (None, "manhattan"):
            raise ValueError(f"radius_pairs needs an index fitted for euclidean, sqeuclidean or cosine; "
                             f"got {self.metric!r}")
        within = X_query is None
        X_query = self._checked(self.X_train if within else X_query, None, chunk)
        max_pairs, radius = check_int(max_pairs, "max_pairs", low=1), float(radius)
        starts, sizes = self.starts, np.diff(self.starts)
        blocks = list(_pair_blocks(starts, len(X_query), within, max(int(chunk), _TASK_ROWS)))
        # The groups of every shard's rows (and, within, of the rows asking), sent once as the rows were.
        groups = None if exclude is None else [
            [self._submit(_held, np.asarray(side)[first:stop]) for first, stop in zip(starts[:-1], starts[1:])]
            for side in exclude]

        def calls():
            held = {}  # the query chunk (not within) being answered: sent once for every shard
            for s, rows, asking in blocks:
                train_groups = None if groups is None else groups[1][s]
                if within:  # the rows of a shard, its own (no X_query: pairs i < j) or those of another
                    source = s if asking is None else asking
                    part = slice(rows.start - starts[source], rows.stop - starts[source])
                    X_part = None if asking is None else self._rows[asking]
                    query_groups = None if groups is None else groups[0][source]
                else:
                    if (rows.start, rows.stop) not in held:
                        held = {(rows.start, rows.stop): self._submit(_held, X_query[rows])}
                    X_part, part = held[(rows.start, rows.stop)], slice(None)
                    query_groups = None if exclude is None else np.asarray(exclude[0])[rows]
                yield _radius_pairs, self._shards[s], X_part, part, radius, max_pairs, query_groups, train_groups, chunk

        kept = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        work = [int(sizes[s]) * (int(sizes[s]) - 1 if asking is None and within else 2 * (rows.stop - rows.start)) // 2
                for s, rows, asking in blocks]
        capped, done, total = False, 0, max(1, sum(work))
        for (s, rows, _), pairs, (i, j, d, more) in zip(blocks, work, self._gathered(calls())):
            i, j = i + rows.start, j + starts[s]
            kept = closest(kept, (np.minimum(i, j), np.maximum(i, j), d) if within else (i, j, d), max_pairs + 1)
            capped, done = capped or more, done + pairs
            if on_chunk is not None:
                on_chunk(len(X_query) * done // total, len(X_query))
        i, j, d = (a[:max_pairs] for a in kept)
        capped = capped or len(kept[0]) > max_pairs
        return i, j, (np.sqrt(d) if self.metric == "euclidean" and not naive else d), capped

    def _checked(self, X_query, k, chunk) -> np.ndarray:
        if self.metric is None:
            raise ValueError("the index is not fitted: call fit(X_train, metric) first")
        return checked_query(X_query, self.X_train.shape, k, chunk)

    def _submit(self, function, *args, **where):
        """A task; its rows travel in it on purpose (module docstring), not the slowdown Dask warns of."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            return self.client.submit(function, *args, pure=False, **where)

    def _gathered(self, calls) -> Iterator:
        """The results of ``calls`` (``(function, *args)``) in order, each submitted as a task while fewer than
        ``_IN_FLIGHT`` a shard wait to be gathered. A task runs where its shard's index is."""
        calls, pending = iter(calls), deque()
        while True:
            while len(pending) < _IN_FLIGHT * len(self._shards) and (call := next(calls, None)) is not None:
                pending.append(self._submit(*call))
            if not pending:
                return
            yield pending.popleft().result()


def _pair_blocks(starts: np.ndarray, n_query: int, within: bool, step: int) -> Iterator[tuple[int, slice, int | None]]:
    """``(shard, query rows, asking)`` of each task. Without ``within``: every shard answers every ``step`` query
    rows (``asking`` None). With it: each shard its own pairs (``asking`` None, the shard's rows), then each pair
    of shards once, by the index of one answering all the rows of the other (``asking``: that shard): of shards
    ``a < b`` of ``n``, ``b`` answers ``a`` when ``b - a <= n / 2``, else ``a`` answers ``b``. So each shard
    answers the ``n / 2 - 1`` before it around the ring, and the opposite one if in the upper half: with two
    shards a worker, placed in turn, every worker examines the same number of pairs."""
    if not within:
        for first in range(0, n_query, step):
            for s in range(len(starts) - 1):
                yield s, slice(first, min(first + step, n_query)), None
        return
    n = len(starts) - 1
    for s in range(n):
        yield s, slice(int(starts[s]), int(starts[s + 1])), None
    for a in range(n):
        for b in range(a + 1, n):
            index, asking = (b, a) if 2 * (b - a) <= n else (a, b)
            yield index, slice(int(starts[asking]), int(starts[asking + 1])), asking


def _check_memory(workers: list, sizes: np.ndarray, n_features: int, itemsize: int, components: int) -> None:
    """``ValueError`` naming the first worker whose ``memory_limit`` is below the estimate for its shards: their
    fitted indexes (``index_bytes``) and, for each task it runs at once (its ``nthreads``), the rows of a shard
    it answers and one chunk's ``query_bytes`` on one thread (the engine's own threads add a candidate budget
    each where the screen rules few rows out: rows unlike one another, not images or embeddings)."""
    for w, (address, info) in enumerate(workers):
        mine, limit = sizes[w :: len(workers)], info.get("memory_limit") or 0  # 0: no limit
        if not len(mine) or not limit:
            continue
        tasks = int(info.get("nthreads") or 1)
        need = (sum(index_bytes(int(n), n_features, itemsize, components) for n in mine)
                + tasks * (int(sizes.max()) * n_features * itemsize + query_bytes(int(mine.max()), _TASK_ROWS, 1)))
        if need > limit:
            raise ValueError(f"a Dask worker's shards need about {need / 1e9:.2f} GB ({int(mine.sum()):,} training "
                             f"rows of {n_features} features in {len(mine)} shards: their indexes, and for each of its "
                             f"{tasks} threads the rows it answers), over the {limit / 1e9:.2f} GB memory limit of "
                             f"worker {address}; use more workers, or workers with more memory")


# The tasks: module functions, which the workers import from the same fmproto.


def _held(rows: np.ndarray) -> np.ndarray:
    return rows  # kept on a worker, for the tasks that read it; from this task again if the worker dies


def _fit(X: np.ndarray, metric: str, components: int) -> KnnIndex:
    return KnnIndex(components).fit(X, metric)


def _kneighbors(index: KnnIndex, X_query: np.ndarray, k: int, chunk: int):
    return index.kneighbors(X_query, k, chunk, naive=True)


def _radius_pairs(index: KnnIndex, X_query, rows: slice, radius: float, max_pairs: int, query_groups, train_groups,
                  chunk: int):
    exclude = None if train_groups is None else (query_groups[rows], train_groups)
    return index.radius_pairs(None if X_query is None else X_query[rows], radius, max_pairs=max_pairs,
                              exclude=exclude, chunk=chunk, naive=True)
