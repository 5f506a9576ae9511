"""Seeded validation split: determinism, sizes, stratification, dropped images."""

import numpy as np
import pytest

from fmproto.data.holdout import drop_for_policy, later_of_pairs, validation_split
from fmproto.data.summary import class_counts, per_class_samples

LABELS = np.repeat(np.arange(4), [50, 30, 15, 5])  # imbalanced on purpose


def test_same_seed_same_split_and_partition():
    a = validation_split(LABELS, 0.2, seed=3)
    b = validation_split(LABELS, 0.2, seed=3)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.valid, b.valid)
    assert len(a.valid) == 20 and len(a.train) == 80
    assert np.array_equal(np.sort(np.concatenate([a.train, a.valid])), np.arange(100))
    assert not np.array_equal(a.valid, validation_split(LABELS, 0.2, seed=4).valid)


def test_stratified_keeps_class_shares():
    split = validation_split(LABELS, 0.2, seed=0, stratify=True)
    assert class_counts(LABELS[split.valid], 4).tolist() == [10, 6, 3, 1]
    assert class_counts(LABELS[split.train], 4).tolist() == [40, 24, 12, 4]


def test_stratified_is_random_inside_classes():
    a = validation_split(LABELS, 0.2, seed=0, stratify=True).valid
    b = validation_split(LABELS, 0.2, seed=1, stratify=True).valid
    assert not np.array_equal(a, b)
    assert not np.array_equal(a[:10], np.arange(10))  # not simply the first images of class 0


def test_dropped_images_are_in_neither_split():
    split = validation_split(LABELS, 0.25, seed=0, drop=np.array([5, 99, 5]))
    assert split.dropped.tolist() == [5, 99]
    assert 5 not in split.train and 5 not in split.valid and 99 not in split.valid
    assert len(split.train) + len(split.valid) == 98


def test_later_of_pairs_keeps_first_of_each_group():
    assert later_of_pairs(np.array([3, 3, 10, 5]), np.array([10, 11, 11, 20])).tolist() == [10, 11, 20]


@pytest.mark.parametrize("pct", [0, 1, -0.1, 1.5])
def test_bad_valid_pct(pct):
    with pytest.raises(ValueError, match="valid_pct must be in"):
        validation_split(LABELS, pct, seed=0)


def test_bad_drop_index():
    with pytest.raises(ValueError, match="drop indices must lie in 0..99"):
        validation_split(LABELS, 0.2, seed=0, drop=np.array([100]))


def test_per_class_samples_pads_small_classes():
    rng = np.random.default_rng(0)
    grid = per_class_samples(LABELS, 5, 6, rng)
    assert grid.shape == (5, 6)
    for k in range(4):
        assert np.all(LABELS[grid[k]] == k)
    assert grid[3, 5] == -1 and np.all(grid[4] == -1)  # class 3 has 5 images, class 4 none
    assert len(set(grid[0].tolist())) == 6


def test_drop_for_policy():
    sets = np.array(["train", "train", "train_test", "test", "train_test"])
    i, j = np.array([3, 7, 5, 1, 3]), np.array([9, 2, 0, 4, 8])
    assert drop_for_policy(sets, i, j, "none").tolist() == []
    assert drop_for_policy(sets, i, j, "duplicates").tolist() == [7, 9]  # the later image of each train pair
    assert drop_for_policy(sets, i, j, "leaks").tolist() == [3, 5]  # train images with a copy in test
    assert drop_for_policy(sets, i, j, "both").tolist() == [3, 5, 7, 9]
    with pytest.raises(ValueError, match="policy must be one of 'none', 'duplicates', 'leaks', 'both'; got 'all'"):
        drop_for_policy(sets, i, j, "all")
