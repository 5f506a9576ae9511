"""Exact search on a Dask cluster: ``ShardedIndex`` has ``KnnIndex``'s ``fit``, ``kneighbors`` and ``radius_pairs``
and returns the same bytes, the training rows split into contiguous shards that the cluster's workers fit and query.

Why the bytes are the same: a pair's naive float64 distance comes from its two rows alone (``exact_pairs``, or,
where both rows are small integers, the integer form, which is exact and so the same value), never from the other
rows of its shard; the projection a shard fits only decides which rows get measured, and it is certified to miss
none. A shard answers with its own best by (distance, index); contiguous shards keep the order of the indices,
so the best of the shards' best by (distance, global index) is ``KnnIndex``'s answer, ties included. The
float32 distances are rounded once, after the merge, as ``KnnIndex`` rounds them (``metric_distances``).

``client`` is a ``distributed.Client``; this module imports no Dask (the caller connects). Every task carries the
rows it reads: a shard's fit its shard, a search its query rows. So no task waits on data held by another worker:
when a worker dies, the scheduler reruns what it held (its shards' fits included) on the workers left, from the
tasks it still holds. Rows held on workers for other tasks to read, or scattered, were tried: a worker killed
mid-search then left about one run in twenty waiting for good on a transfer from it. The price: the scheduler
holds the rows of the tasks in flight, and, within one set, a row travels to every shard that answers it."""

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
# Tasks a shard submitted and not yet gathered: query chunks of _TASK_ROWS rows, or (pairs within a set) the rows
# of a whole shard, which the scheduler and then a worker hold for each task: the memory estimate counts one a shard.
_IN_FLIGHT, _IN_FLIGHT_SHARDS = 4, 1


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
        self._shards = [self._submit(_fit, X[first:stop], metric, self.components, allow_other_workers=True,
                                     workers=[workers[s % len(workers)][0]])
                        for s, (first, stop) in enumerate(zip(self.starts[:-1], self.starts[1:]))]
        return self

    def kneighbors(self, X_query: np.ndarray, k: int, chunk: int = 1024, *, naive: bool = False,
                   on_chunk: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``KnnIndex.kneighbors``; a task a shard and ``max(chunk, 1024)`` query rows. ``on_chunk(done, total)``:
        called as the query rows are answered, with those done and all of them."""
        X_query = self._checked(X_query, k, chunk)
        k, n, step = int(k), len(X_query), max(int(chunk), _TASK_ROWS)
        sizes = np.diff(self.starts)

        calls = ((_kneighbors, shard, X_query[first : first + step], min(k, int(size)), chunk)
                 for first in range(0, n, step) for shard, size in zip(self._shards, sizes))
        answers = self._gathered(calls)
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
        calls = ((_radius_pairs, self._shards[s], None if own else X_query[rows], radius, max_pairs,
                  None if exclude is None else (exclude[0][rows], exclude[1][starts[s] : starts[s + 1]]), chunk)
                 for s, rows, own in blocks)
        kept = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        work = [int(sizes[s]) * (int(sizes[s]) - 1 if own else 2 * (rows.stop - rows.start)) // 2
                for s, rows, own in blocks]
        capped, done, total = False, 0, sum(work)
        answers = self._gathered(calls, _IN_FLIGHT_SHARDS if within else _IN_FLIGHT)
        for (s, rows, _), pairs, (i, j, d, more) in zip(blocks, work, answers):
            i, j = i + rows.start, j + starts[s]
            kept = closest(kept, (np.minimum(i, j), np.maximum(i, j), d) if within else (i, j, d), max_pairs + 1)
            capped, done = capped or more, done + pairs
            if on_chunk is not None:
                on_chunk(len(X_query) * done // total if total else len(X_query), len(X_query))
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

    def _gathered(self, calls, in_flight: int = _IN_FLIGHT) -> Iterator:
        """The results of ``calls`` (``(function, *args)``) in order, each submitted as a task while fewer than
        ``in_flight`` a shard wait to be gathered. A task runs where its shard's index is."""
        calls, pending = iter(calls), deque()
        while True:
            while len(pending) < in_flight * len(self._shards) and (call := next(calls, None)) is not None:
                pending.append(self._submit(*call))
            if not pending:
                return
            yield pending.popleft().result()


def _pair_blocks(starts: np.ndarray, n_query: int, within: bool, step: int) -> Iterator[tuple[int, slice, bool]]:
    """``(shard, query rows, own)`` of each task. Without ``within``: every shard answers every ``step`` query
    rows. With it: each shard its own pairs (``own``: its rows, no ``X_query``), then each pair of shards once,
    by the index of one answering all the rows of the other: of shards
    ``a < b`` of ``n``, ``b`` answers ``a`` when ``b - a <= n / 2``, else ``a`` answers ``b``. So each shard
    answers the ``n / 2 - 1`` before it around the ring, and the opposite one if in the upper half: with two
    shards a worker, placed in turn, every worker examines the same number of pairs."""
    if not within:
        for first in range(0, n_query, step):
            for s in range(len(starts) - 1):
                yield s, slice(first, min(first + step, n_query)), False
        return
    n = len(starts) - 1
    for s in range(n):
        yield s, slice(int(starts[s]), int(starts[s + 1])), True
    for a in range(n):
        for b in range(a + 1, n):
            index, asking = (b, a) if 2 * (b - a) <= n else (a, b)
            yield index, slice(int(starts[asking]), int(starts[asking + 1])), False


def _check_memory(workers: list, sizes: np.ndarray, n_features: int, itemsize: int, components: int) -> None:
    """``ValueError`` naming the first worker whose ``memory_limit`` is below the estimate for its shards: their
    fitted indexes (``index_bytes``), the rows of another shard that each answers at a time (pairs within a set),
    and for each task it runs at once (its ``nthreads``) one chunk's ``query_bytes`` on one thread (the engine's
    own threads add a candidate budget each where the screen rules few rows out: rows unlike one another, not
    images or embeddings)."""
    for w, (address, info) in enumerate(workers):
        mine, limit = sizes[w :: len(workers)], info.get("memory_limit") or 0  # 0: no limit
        if not len(mine) or not limit:
            continue
        tasks = int(info.get("nthreads") or 1)
        need = (sum(index_bytes(int(n), n_features, itemsize, components) for n in mine)
                + _IN_FLIGHT_SHARDS * len(mine) * int(sizes.max()) * n_features * itemsize
                + tasks * query_bytes(int(mine.max()), _TASK_ROWS, 1))
        if need > limit:
            raise ValueError(f"a Dask worker's shards need about {need / 1e9:.2f} GB ({int(mine.sum()):,} training "
                             f"rows of {n_features} features in {len(mine)} shards: their indexes, the rows they "
                             f"answer, {tasks} query chunks), over the {limit / 1e9:.2f} GB memory limit of "
                             f"worker {address}; use more workers, or workers with more memory")


# The tasks: module functions, which the workers import from the same fmproto.


def _fit(X: np.ndarray, metric: str, components: int) -> KnnIndex:
    return KnnIndex(components).fit(X, metric)


def _kneighbors(index: KnnIndex, X_query: np.ndarray, k: int, chunk: int):
    return index.kneighbors(X_query, k, chunk, naive=True)


def _radius_pairs(index: KnnIndex, X_query, radius: float, max_pairs: int, exclude, chunk: int):
    return index.radius_pairs(X_query, radius, max_pairs=max_pairs, exclude=exclude, chunk=chunk, naive=True)
