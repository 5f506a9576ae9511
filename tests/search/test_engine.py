"""KnnIndex.radius_pairs against a naive float64 search over every pair."""

import numpy as np
import pytest

from fmproto.search.engine import KnnIndex


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


def test_radius_pairs_refuses_manhattan(clustered):
    with pytest.raises(ValueError, match="radius_pairs needs"):
        KnnIndex().fit(clustered, "manhattan").radius_pairs(None, 1.0, max_pairs=5)
