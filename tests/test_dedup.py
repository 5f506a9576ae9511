"""Duplicate detection on a constructed set whose exact and near duplicates are known."""

import itertools

import numpy as np
import pytest

from fmproto import dedup


def _brute_pairs(a, b, threshold, within):
    """Independent reference: every pair measured one by one in float64."""
    found = []
    pairs = itertools.combinations(range(len(a)), 2) if within else itertools.product(range(len(a)), range(len(b)))
    for i, j in pairs:
        d = np.sqrt(np.mean((a[i].astype(float) - b[j].astype(float)) ** 2))
        found.append((i, j, d))
    return found


@pytest.fixture(scope="module")
def constructed():
    """60 random 6x5 images with planted duplicates; test images copy some train images."""
    rng = np.random.default_rng(7)
    train = rng.integers(0, 256, size=(60, 6, 5), dtype=np.uint8)
    train[10] = train[3]  # exact group {3, 10, 11}
    train[11] = train[3]
    train[20] = train[5]  # exact pair {5, 20}
    train[30] = train[7]
    train[30, 0, 0] ^= 4  # near: one pixel off by 4 -> RMS 4/sqrt(30) = 0.73
    test = rng.integers(0, 256, size=(15, 6, 5), dtype=np.uint8)
    test[2] = train[8]  # leak, exact
    test[4] = train[9]
    test[4, 1, 1] ^= 8  # leak, near: RMS 8/sqrt(30) = 1.46
    test[6] = test[5]  # exact within test
    return train, test


def test_exact_within_and_across(constructed):
    train, test = constructed
    within = dedup.exact_duplicates(train)
    assert list(zip(within.i, within.j)) == [(3, 10), (3, 11), (5, 20), (10, 11)]
    assert np.all(within.distance == 0)
    within_test = dedup.exact_duplicates(test)
    assert list(zip(within_test.i, within_test.j)) == [(5, 6)]
    across = dedup.exact_duplicates(train, test)
    assert list(zip(across.i, across.j)) == [(8, 2)]


def test_exact_groups_larger_than_pairs():
    images = np.zeros((5, 2, 2), dtype=np.uint8)  # one group of five identical images
    pairs = dedup.exact_duplicates(images)
    assert len(pairs) == 10
    assert set(zip(pairs.i, pairs.j)) == set(itertools.combinations(range(5), 2))


@pytest.mark.parametrize("chunk", [1, 7, 16, 4096])
def test_near_matches_brute_force(constructed, chunk):
    train, test = constructed
    threshold = 2.0
    for a, b, within in ((train, None, True), (test, None, True), (train, test, False)):
        got = dedup.near_duplicates(a, threshold, b, chunk=chunk)
        expected = [(i, j, d) for i, j, d in _brute_pairs(a, a if within else b, threshold, within) if 0 < d < threshold]
        assert list(zip(got.i, got.j)) == [(i, j) for i, j, _ in expected]
        np.testing.assert_allclose(got.distance, [d for *_, d in expected], rtol=1e-12)
    assert dedup.near_duplicates(train, threshold).i.tolist() == [7]
    assert dedup.near_duplicates(train, threshold, test).j.tolist() == [4]


def test_near_threshold_is_strict_and_exact_pairs_excluded():
    base = np.zeros((3, 1, 4), dtype=np.uint8)
    base[1, 0, 0] = 4  # RMS exactly sqrt(16 / 4) = 2
    pairs = dedup.near_duplicates(base, 2.0)
    assert len(pairs) == 0  # 2 is not < 2, and (0, 2) is an exact pair
    pairs = dedup.near_duplicates(base, 2.0001)
    assert list(zip(pairs.i, pairs.j)) == [(0, 1), (1, 2)]


def test_near_rejects_bad_arguments():
    images = np.zeros((3, 2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        dedup.near_duplicates(images, -1.0)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        dedup.near_duplicates(images, 1.0, chunk=0)
    with pytest.raises(ValueError, match="4 pixels but others have 9"):
        dedup.near_duplicates(images, 1.0, np.zeros((2, 3, 3), dtype=np.uint8))
