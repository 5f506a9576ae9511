"""KnnIndex.radius_pairs against a naive float64 search over every pair; the engine's memory estimate."""

import sys
import tracemalloc

import numpy as np
import pytest

from fmproto.search.engine import KnnIndex, index_bytes, metric_distances, query_bytes


def _naive_pairs(A, B, radius, within):
    d = ((A[:, None, :].astype(np.float64) - B[None, :, :]) ** 2).sum(axis=2)
    i, j = np.nonzero(d < radius)
    keep = j > i if within else np.ones(len(i), bool)
    i, j, d = i[keep], j[keep], d[i[keep], j[keep]]
    order = np.lexsort((j, i, d))
    return i[order], j[order], d[order]


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(3)
    centres = rng.integers(0, 200, size=(40, 24))
    rows = centres[rng.integers(0, 40, size=1500)] + rng.integers(-3, 4, size=(1500, 24))
    return rows.astype(np.int16)  # 1500 rows: leaves of 16, so the within query skips earlier leaves


@pytest.mark.parametrize("max_pairs", [1, 37, 10**6])
def test_pairs_within_the_fitted_rows_equal_a_naive_search(clustered, max_pairs):
    expected = _naive_pairs(clustered, clustered, 60.0, within=True)
    i, j, d, capped = KnnIndex(4).fit(clustered, "sqeuclidean").radius_pairs(None, 60.0, max_pairs=max_pairs, chunk=50)
    assert capped == (len(expected[0]) > max_pairs)
    for got, want in zip((i, j, d), expected):
        np.testing.assert_array_equal(got, want[:max_pairs])


def test_pairs_between_sets_and_excluded_groups(clustered):
    A, B = clustered[:300], clustered[300:]
    groups = (np.arange(300) % 7 - 1, np.arange(1200) % 5 - 1)
    i, j, d = _naive_pairs(A, B, 50.5, within=False)
    keep = (groups[0][i] != groups[1][j]) | (groups[0][i] < 0)
    got = KnnIndex(4).fit(B, "euclidean").radius_pairs(A, np.sqrt(50.5), max_pairs=10**6, exclude=groups, chunk=64)
    np.testing.assert_array_equal(got[0], i[keep])
    np.testing.assert_array_equal(got[1], j[keep])
    np.testing.assert_array_equal(got[2], np.sqrt(d[keep]))
    assert not got[3]


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "manhattan"])
def test_naive_distances_are_those_ranked_and_round_to_the_float32_ones(clustered, metric):
    A, B = clustered[:200].astype(np.float32) + 0.25, clustered[200:]
    distances, indices = KnnIndex(4).fit(B, metric).kneighbors(A, 6)
    naive, same = KnnIndex(4).fit(B, metric).kneighbors(A, 6, naive=True)
    assert naive.dtype == np.float64 and np.array_equal(same, indices)
    assert metric_distances(naive, metric).tobytes() == distances.tobytes()
    if metric == "euclidean":  # the squares, as a float64 search measures them
        diff = A[:, None, :].astype(np.float64) - B[indices].astype(np.float64)
        np.testing.assert_allclose(naive, np.einsum("qkd,qkd->qk", diff, diff), rtol=1e-12)
    if metric != "manhattan":
        radius = {"euclidean": 9.0, "sqeuclidean": 81.0, "cosine": 0.5}[metric]
        i, j, d, _ = KnnIndex(4).fit(B, metric).radius_pairs(A, radius, max_pairs=50)
        i2, j2, d2, _ = KnnIndex(4).fit(B, metric).radius_pairs(A, radius, max_pairs=50, naive=True)
        assert len(i) and np.array_equal(i, i2) and np.array_equal(j, j2)
        assert (np.sqrt(d2) if metric == "euclidean" else d2).tobytes() == d.tobytes()


def test_radius_pairs_refuses_manhattan(clustered):
    with pytest.raises(ValueError, match="radius_pairs needs"):
        KnnIndex().fit(clustered, "manhattan").radius_pairs(None, 1.0, max_pairs=5)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_the_memory_estimate_holds_where_the_screen_rules_nothing_out(dtype):
    """Uniform noise, every row about as far as any other: a hand-over to the full screen and full candidate
    budgets, the most a fit and a chunk of queries take (the rows themselves were there before)."""
    X = np.random.default_rng(0).integers(0, 256, size=(12_000, 300)).astype(dtype)
    tracemalloc.start()
    try:
        KnnIndex().fit(X, "euclidean").kneighbors(X[:1024], 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = index_bytes(len(X), 300, X.itemsize) - X.nbytes + query_bytes(len(X), 1024)
    assert peak <= estimate


def test_its_size_is_the_arrays_it_holds(clustered):
    """sys.getsizeof (and so Dask, before moving a fitted index between workers) counts the rows and the screen."""
    index = KnnIndex(4).fit(clustered, "euclidean")
    assert sys.getsizeof(index) >= clustered.nbytes + index.screen.W.nbytes + 3 * index.order.nbytes
