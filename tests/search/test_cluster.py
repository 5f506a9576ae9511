"""ShardedIndex on a real Dask cluster (two worker processes on 127.0.0.1) against KnnIndex on one machine:
the same bytes, ties and duplicates across shard boundaries included, a worker killed mid-query included."""

import os
import re
import signal
import warnings

import numpy as np
import pytest

from fmproto.search.engine import KnnIndex

distributed = pytest.importorskip("distributed")
from fmproto.search.cluster import ShardedIndex  # noqa: E402  (after the skip: the cluster extra)

METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GiB",
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client


def _sets():
    """``{name: (X_train, X_query)}``: small integers (ties everywhere, across shards too), and float rows with
    exact copies across the first shard boundary, a near copy in the last shard, and zero rows."""
    rng = np.random.default_rng(21)
    ties = rng.integers(0, 3, size=(1203, 12)).astype(np.int16)
    X = rng.normal(size=(1203, 40)).astype(np.float32)
    X[300:320] = X[:20]  # 4 shards of about 300 rows: copies on both sides of a boundary
    X[1100] = np.nextafter(X[7], np.float32(np.inf))  # a last-bit neighbour of a copied row
    X[600:603] = 0  # cosine: at distance 1 from every row
    queries = np.concatenate([X[:25], X[1100:1101], X[600:602], rng.normal(size=(300, 40)).astype(np.float32)])
    return {"ties": (ties, rng.integers(0, 3, size=(330, 12)).astype(np.int16)), "float": (X, queries)}


SETS = _sets()


def _same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()
        else:
            assert a == b


@pytest.mark.parametrize("name", sorted(SETS))
@pytest.mark.parametrize("metric", METRICS)
def test_kneighbors_are_the_local_bytes(client, name, metric):
    X, Q = SETS[name]
    expected = KnnIndex(8).fit(X, metric).kneighbors(Q, 9)
    _same(ShardedIndex(client, 8).fit(X, metric).kneighbors(Q, 9, chunk=100), expected)


def test_k_beyond_a_shard_and_naive_distances(client):
    X, Q = SETS["float"][0][:10], SETS["float"][1][:50]  # shards of 2 or 3 rows, k of all 10
    for naive in (False, True):
        expected = KnnIndex(8).fit(X, "euclidean").kneighbors(Q, 10, naive=naive)
        _same(ShardedIndex(client, 8).fit(X, "euclidean").kneighbors(Q, 10, naive=naive), expected)


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(3)
    centres = rng.integers(0, 200, size=(40, 24))
    rows = centres[rng.integers(0, 40, size=1500)] + rng.integers(-3, 4, size=(1500, 24))
    rows[700:705] = rows[10:15]  # exact copies in other shards
    return rows.astype(np.int16)


@pytest.mark.parametrize("metric, radius", [("euclidean", np.sqrt(100.0)), ("sqeuclidean", 100.0), ("cosine", 2e-4)])
@pytest.mark.parametrize("max_pairs", [1, 37, 10**6])
def test_pairs_within_are_the_local_bytes(client, clustered, metric, radius, max_pairs):
    """Each pair once (between shards too), the cap where it falls locally, excluded groups left out."""
    groups = np.arange(len(clustered)) % 9 - 1
    expected = KnnIndex(4).fit(clustered, metric).radius_pairs(None, radius, max_pairs=max_pairs,
                                                               exclude=(groups, groups), chunk=50)
    assert expected[3] == (max_pairs < 10**6)  # hundreds of pairs: capped but for the last
    got = ShardedIndex(client, 4).fit(clustered, metric).radius_pairs(None, radius, max_pairs=max_pairs,
                                                                      exclude=(groups, groups), chunk=50)
    _same(got, expected)


@pytest.mark.parametrize("search", ["kneighbors", "within", "between"])
def test_progress_rises_to_every_row_and_changes_nothing(client, clustered, search):
    index, calls = ShardedIndex(client, 4).fit(clustered, "sqeuclidean"), []
    Q = clustered[:1300]
    if search == "kneighbors":
        assert index.kneighbors(Q, 3, on_chunk=lambda *c: calls.append(c))[1].tobytes() == \
            index.kneighbors(Q, 3)[1].tobytes()
    else:
        X_query = None if search == "within" else Q
        _same(index.radius_pairs(X_query, 100.0, max_pairs=50, on_chunk=lambda *c: calls.append(c)),
              index.radius_pairs(X_query, 100.0, max_pairs=50))
    n = len(clustered) if search == "within" else len(Q)
    assert calls[-1] == (n, n) and [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize("max_pairs", [5, 10**6])
def test_pairs_between_sets_are_the_local_bytes(client, clustered, max_pairs):
    A, B = clustered[:300], clustered[300:]
    groups = (np.arange(300) % 7 - 1, np.arange(1200) % 5 - 1)
    expected = KnnIndex(4).fit(B, "euclidean").radius_pairs(A, np.sqrt(50.5), max_pairs=max_pairs, exclude=groups)
    got = ShardedIndex(client, 4).fit(B, "euclidean").radius_pairs(A, np.sqrt(50.5), max_pairs=max_pairs,
                                                                    exclude=groups)
    _same(got, expected)
    assert expected[3] == (max_pairs == 5)


@pytest.mark.parametrize("call", [
    lambda index, X: index.fit(X, "chebyshev"),
    lambda index, X: index.fit(X[:0], "euclidean"),
    lambda index, X: index.kneighbors(X, 3),
    lambda index, X: index.fit(X, "euclidean").kneighbors(X, len(X) + 1),
    lambda index, X: index.fit(X, "euclidean").kneighbors(X[:, :5], 3),
    lambda index, X: index.fit(X, "manhattan").radius_pairs(None, 1.0, max_pairs=5),
    lambda index, X: index.fit(X, "euclidean").radius_pairs(X, 1.0, max_pairs=0),
], ids=["metric", "empty", "unfitted", "k", "features", "manhattan-radius", "max-pairs"])
def test_errors_are_the_local_ones(client, call):
    X = SETS["float"][0][:100]
    with pytest.raises(ValueError) as local:
        call(KnnIndex(8), X)
    with pytest.raises(ValueError, match="^" + re.escape(str(local.value)) + "$"):
        call(ShardedIndex(client, 8), X)


def test_a_worker_short_of_memory_is_refused_before_any_work(client):
    X = np.zeros((4_000_000, 256), dtype=np.uint8)  # 1 GB of untouched pages: never read nor sent
    held = set(client.futures)
    with pytest.raises(ValueError, match=r"need about \d+\.\d\d GB .* over the 2\.15 GB memory limit of worker tcp://"):
        ShardedIndex(client).fit(X, "euclidean")
    assert set(client.futures) <= held  # no task submitted (earlier ones may have been released)


def test_shards_sent_in_their_tasks_raise_no_warning(client):
    X = np.zeros((48_000, 1024), dtype=np.uint8)  # four shards of 12 MB, over Dask's 10 MB "large graph"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = ShardedIndex(client, 8).fit(X, "sqeuclidean")
    assert caught == []
    assert index.kneighbors(X[:2], 1)[1].tolist() == [[0], [0]]  # all at distance 0: the lowest index


@pytest.mark.parametrize("search", ["kneighbors", "radius_pairs"])
def test_a_worker_killed_mid_query_changes_nothing(client, clustered, search):
    """SIGKILL of a worker process once the first answer is in: the scheduler reruns what it held (its shards'
    fits included) on the other worker (or the one its nanny starts), and the answer is the local one."""
    X = clustered.astype(np.float32)
    Q = np.repeat(X, 6, axis=0)[::-1]  # 9,000 query rows: 9 chunks of 1,024, the later ones queued at the kill
    local, sharded = KnnIndex(4).fit(X, "euclidean"), ShardedIndex(client, 4).fit(X, "euclidean")
    pids = client.run(os.getpid)  # {worker address: process id}
    killed = []

    def kill_once(done, total):
        if not killed:
            killed.append(pids[sorted(pids)[-1]])
            os.kill(killed[0], signal.SIGKILL)

    if search == "kneighbors":
        expected, got = local.kneighbors(Q, 5), sharded.kneighbors(Q, 5, on_chunk=kill_once)
    else:
        expected = local.radius_pairs(Q, np.sqrt(60.0), max_pairs=10**6)
        got = sharded.radius_pairs(Q, np.sqrt(60.0), max_pairs=10**6, on_chunk=kill_once)
    assert killed
    _same(got, expected)
