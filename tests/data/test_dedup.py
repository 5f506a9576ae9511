"""Duplicate detection on a constructed set whose exact and near duplicates are known."""

import itertools
import math

import numpy as np
import pytest

from fmproto.data import dedup


def _brute_pairs(a, b, threshold, within):
    """Independent reference: every pair measured one by one in float64."""
    found = []
    pairs = itertools.combinations(range(len(a)), 2) if within else itertools.product(range(len(a)), range(len(b)))
    for i, j in pairs:
        d = np.sqrt(np.mean((a[i].astype(float) - b[j].astype(float)) ** 2))
        found.append((i, j, d))
    return found


@pytest.fixture
def screening():
    """The one engine: few-pixel images take its full screen (every dimension), 784 pixels a projection."""
    return "engine"


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
def test_near_matches_brute_force(screening, constructed, chunk):
    train, test = constructed
    threshold = 2.0
    for a, b, within in ((train, None, True), (test, None, True), (train, test, False)):
        got = dedup.near_duplicates(a, threshold, b, chunk=chunk)
        expected = [(i, j, d) for i, j, d in _brute_pairs(a, a if within else b, threshold, within) if 0 < d < threshold]
        assert list(zip(got.i, got.j)) == [(i, j) for i, j, _ in expected]
        np.testing.assert_allclose(got.distance, [d for *_, d in expected], rtol=1e-12)
    assert dedup.near_duplicates(train, threshold).i.tolist() == [7]
    assert dedup.near_duplicates(train, threshold, test).j.tolist() == [4]


def test_near_threshold_is_strict_and_exact_pairs_excluded(screening):
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
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        dedup.near_duplicates(images, 1.0, chunk=0)
    with pytest.raises(ValueError, match="4 pixels but others have 9"):
        dedup.near_duplicates(images, 1.0, np.zeros((2, 3, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------ caps on the number of pairs


def _closest_brute(a, b, threshold, max_pairs, within):
    """Reference: all pairs in float64, the max_pairs closest by (distance, i, j), then sorted by (i, j)."""
    qualifying = sorted((d, i, j) for i, j, d in _brute_pairs(a, a if within else b, threshold, within) if 0 < d < threshold)
    kept = sorted((i, j, d) for d, i, j in qualifying[:max_pairs])
    return kept, len(qualifying) > max_pairs


@pytest.fixture(scope="module")
def tied():
    """50 images of 3x2 pixels in 0..2, so many pairs tie in distance, with planted twins and a leak."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 3, size=(50, 3, 2), dtype=np.uint8)
    images[40:45] = images[1]  # a group of six identical images
    others = rng.integers(0, 3, size=(20, 3, 2), dtype=np.uint8)
    others[:3] = images[1]
    return images, others


@pytest.mark.parametrize("max_pairs", [1, 7, 40, 5000])
@pytest.mark.parametrize("threshold", [0.9, 255.0])
def test_near_cap_keeps_the_closest(screening, tied, max_pairs, threshold):
    images, others = tied
    for a, b, within in ((images, None, True), (images, others, False)):
        expected, capped = _closest_brute(a, b, threshold, max_pairs, within)
        for chunk in (1, 3, 16, 4096):
            got = dedup.near_duplicates(a, threshold, b, chunk=chunk, max_pairs=max_pairs)
            assert list(zip(got.i.tolist(), got.j.tolist())) == [(i, j) for i, j, _ in expected], (chunk, within)
            np.testing.assert_allclose(got.distance, [d for *_, d in expected], rtol=1e-12)
            assert got.capped is capped


def test_near_cap_at_threshold_255_on_many_images(screening):
    # Every one of the 4.5 million pairs is within 255; only the 50 closest are kept.
    images = np.random.default_rng(5).integers(0, 256, size=(3000, 2, 2), dtype=np.uint8)
    got = dedup.near_duplicates(images, 255.0, chunk=512, max_pairs=50)
    assert len(got) == 50 and got.capped
    # Reference: exact integer squared distances of all pairs, the 50 smallest nonzero by (d2, i, j).
    X = images.reshape(3000, -1).astype(np.int64)
    sq = (X * X).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * X @ X.T
    i, j = np.triu_indices(3000, k=1)
    d2 = d2[i, j]
    valid = d2 > 0
    order = np.lexsort((j[valid], i[valid], d2[valid]))[:50]
    expected = sorted(zip(i[valid][order].tolist(), j[valid][order].tolist()))
    assert list(zip(got.i.tolist(), got.j.tolist())) == expected
    np.testing.assert_array_equal(got.distance, np.sqrt(d2[valid][order] / 4)[np.lexsort((j[valid][order], i[valid][order]))])


def test_near_cap_bounds_memory():
    import tracemalloc

    images = np.random.default_rng(6).integers(0, 256, size=(3000, 2, 2), dtype=np.uint8)
    tracemalloc.start()
    try:
        dedup.near_duplicates(images, 255.0, chunk=256, max_pairs=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # All 4.5 million pairs as (i, j) int64 would take 72 MB; one tile and the per-image arrays far less.
    assert peak < dedup.tile_bytes(256, 4) + 3000 * 64


def test_near_cap_is_not_filled_by_identical_images(screening):
    # 300 identical images make 44,850 pairs at distance 0: excluded, they must not crowd out the real ones.
    rng = np.random.default_rng(8)
    images = np.concatenate([np.full((300, 2, 2), 9, np.uint8), rng.integers(0, 256, size=(12, 2, 2), dtype=np.uint8)])
    expected, capped = _closest_brute(images, None, 255.0, 5, within=True)
    for chunk in (7, 64, 4096):
        got = dedup.near_duplicates(images, 255.0, chunk=chunk, max_pairs=5)
        assert list(zip(got.i.tolist(), got.j.tolist())) == [(i, j) for i, j, _ in expected]
        assert got.capped is capped is True


def test_near_finds_small_distances_between_bright_images():
    # 784 bright pixels: float32 rounding of |a|^2 + |b|^2 - 2ab is several grey levels squared, far
    # more than the true squared difference 1; the search must still find every pair at RMS 1/28.
    rng = np.random.default_rng(0)
    images = rng.integers(200, 256, size=(200, 28, 28), dtype=np.uint8)
    images[100:] = images[:100]
    images[100:, 0, 0] -= 1
    got = dedup.near_duplicates(images, 1 / 28 * 1.0005)
    assert list(zip(got.i.tolist(), got.j.tolist())) == [(k, k + 100) for k in range(100)]
    np.testing.assert_allclose(got.distance, 1 / 28, rtol=1e-12)


def test_exact_cap_on_many_identical_images():
    images = np.zeros((60_000, 1, 1), dtype=np.uint8)  # 1.8e9 pairs: only the first 100 are built
    pairs = dedup.exact_duplicates(images, max_pairs=100)
    assert pairs.capped and len(pairs) == 100
    assert list(zip(pairs.i.tolist(), pairs.j.tolist())) == [(0, j) for j in range(1, 101)]
    across = dedup.exact_duplicates(images[:30], images[:20], max_pairs=25)
    assert across.capped
    assert list(zip(across.i.tolist(), across.j.tolist())) == [(0, j) for j in range(20)] + [(1, j) for j in range(5)]


@pytest.mark.parametrize("max_pairs", [1, 4, 9, 10, 100])
def test_exact_cap_takes_the_first_pairs(max_pairs):
    images = np.array([3, 1, 3, 2, 1, 3, 2, 0, 3, 1], dtype=np.uint8).reshape(10, 1, 1)
    others = np.array([1, 3, 3, 5], dtype=np.uint8).reshape(4, 1, 1)
    for b, within in ((None, True), (others, False)):
        reference = _brute_pairs(images, images if within else others, 1.0, within)
        expected = [(i, j) for i, j, d in reference if d == 0]  # already in (i, j) order
        pairs = dedup.exact_duplicates(images, b, max_pairs=max_pairs)
        assert list(zip(pairs.i.tolist(), pairs.j.tolist())) == expected[:max_pairs]
        assert pairs.capped is (len(expected) > max_pairs)


# ----------------------------------------------------------------------------------------- memory estimate


@pytest.mark.parametrize("n_pixels", [1, 4, 784, 10_000])
@pytest.mark.parametrize("limit", [10**6, 10**8, 2 * 1024**3])
def test_largest_chunk_is_the_largest_that_fits(n_pixels, limit):
    tile = dedup.largest_chunk(n_pixels, limit)
    assert tile == 0 or dedup.tile_bytes(tile, n_pixels) <= limit
    assert dedup.tile_bytes(tile + 1, n_pixels) > limit


def test_tile_bytes_counts_the_block_and_rows():
    # float32 block, float32 candidate values, two boolean masks, float32 rows of both tiles, one exact batch
    assert dedup.tile_bytes(4096, 784) == 4096**2 * 10 + 2 * 4096 * 784 * 4 + 4096 * 784 * 10
    assert dedup.largest_chunk(784, 10**6) == 0  # not even the exact batch fits
    assert 4096 < dedup.largest_chunk(784, 2 * 1024**3) < 16_384  # 28x28 images in 2 GiB


@pytest.mark.parametrize("n_pixels", [784, 6400, 256 * 256, 1024 * 1024])
def test_large_images_fit_a_tile_the_params_allow(n_pixels):
    # The exact batch shrinks with the image (it once took 4096 pairs of any size: 2.7 GB at 256x256,
    # so that no dedup.chunk fitted, "at most 0"); dedup.chunk's smallest value, 64, must fit.
    assert dedup.largest_chunk(n_pixels, 2 * 1024**3) >= 64
    assert dedup.tile_bytes(1, n_pixels) < 20 * n_pixels + 32 * 1024**2


# ------------------------------------------------------------------------------------------------- all sets


def _walk(value):
    """Every leaf of a nested dict."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    else:
        yield value


@pytest.fixture(scope="module")
def labelled(constructed):
    train, test = constructed
    return train, test, np.arange(len(train)) % 3, np.arange(len(test)) % 3, ["a", "b", "c"]


def test_find_all_against_brute_force(screening, labelled):
    train, test, train_labels, test_labels, classes = labelled
    table, metrics = dedup.find_all(train, test, train_labels, test_labels, classes, 2.0, chunk=16, max_pairs=100)
    rows = []
    for name, a, b, la, lb, within in (("train", train, train, train_labels, train_labels, True),
                                      ("test", test, test, test_labels, test_labels, True),
                                      ("train_test", train, test, train_labels, test_labels, False)):
        for i, j, d in _brute_pairs(a, b, 2.0, within):
            kind = "exact" if d == 0 else "near" if d < 2.0 else None
            if kind:
                rows.append((round(d, 4), name, i, j, kind, int(la[i]), int(lb[j])))
    rows.sort()
    got = list(zip(table["distance"], table["sets"], table["i"], table["j"], table["kind"], table["label_i"], table["label_j"]))
    assert got == rows
    assert list(table.columns) == ["kind", "sets", "i", "j", "label_i", "label_j", "distance", "class_i", "class_j"]
    assert table["class_i"].tolist() == [classes[label] for label in table["label_i"]]
    assert metrics["exact"] == {"train": 4, "test": 1, "train_test": 1}
    assert metrics["near"] == {"train": 1, "test": 0, "train_test": 1}
    assert metrics["near_capped"] == dict.fromkeys(dedup.SETS, False)
    assert metrics["labels_disagree"] == {
        kind: sum(1 for r in rows if r[4] == kind and r[5] != r[6]) for kind in ("exact", "near")
    }
    assert metrics["max_pairs"] == 100 and metrics["near_threshold"] == 2.0
    assert all(type(v) in (int, float, bool) for v in _walk(metrics))


def test_find_all_caps_each_set(screening, labelled):
    train, test, train_labels, test_labels, classes = labelled
    _, metrics = dedup.find_all(train, test, train_labels, test_labels, classes, 255, chunk=64, max_pairs=3)
    assert metrics["near"] == {"train": 3, "test": 3, "train_test": 3}
    assert metrics["near_capped"] == dict.fromkeys(dedup.SETS, True)
    assert metrics["exact_capped"] == {"train": True, "test": False, "train_test": False}
    assert type(metrics["near_threshold"]) is float


def test_find_all_rejects_bad_labels(labelled):
    train, test, train_labels, test_labels, classes = labelled
    with pytest.raises(ValueError, match=r"test_labels must lie in 0..1; got 2"):
        dedup.find_all(train, test, train_labels % 2, test_labels, classes[:2], 1.0)
    with pytest.raises(ValueError, match=r"train_labels must be 1-D integer labels of length 60"):
        dedup.find_all(train, test, train_labels[:5], test_labels, classes, 1.0)


def test_closest_pairs_grid(labelled):
    train, test, train_labels, test_labels, classes = labelled
    table, _ = dedup.find_all(train, test, train_labels, test_labels, classes, 2.0)
    shown = table[table["sets"].isin(["train_test", "train"])].head(3)  # train/train and train/test pairs
    pictures, titles, marks = dedup.closest_pairs_grid(shown, {"train": train, "test": test})
    assert pictures.shape == (6, 6, 5) and pictures.dtype == np.uint8
    for row, pair in enumerate(shown.itertuples()):
        second = test if pair.sets == "train_test" else train
        np.testing.assert_array_equal(pictures[2 * row], train[pair.i])
        np.testing.assert_array_equal(pictures[2 * row + 1], second[pair.j])
        assert marks[2 * row] == marks[2 * row + 1] == (pair.label_i != pair.label_j)
    first = shown.iloc[0]
    assert titles[0] == f"train[{first.i}] {first.class_i}\nd=0.0"
    assert titles[1] == f"{'test' if first.sets == 'train_test' else 'train'}[{first.j}] {first.class_j}\nd=0.0"
    near = table[(table["kind"] == "near") & (table["sets"] == "train")]
    _, titles, marks = dedup.closest_pairs_grid(near, {"train": train, "test": test})
    assert titles == ["train[7] b\nd=0.7", "train[30] a\nd=0.7"] and marks == [True, True]
    empty, titles, marks = dedup.closest_pairs_grid(table.head(0), {"train": train, "test": test})
    assert empty.shape == (0, 6, 5) and titles == [] and marks == []


def test_closest_pairs_grid_rejects_bad_input(labelled):
    train, test, train_labels, test_labels, classes = labelled
    table, _ = dedup.find_all(train, test, train_labels, test_labels, classes, 2.0)
    with pytest.raises(ValueError, match="images must have keys 'train' and 'test'; missing 'test'"):
        dedup.closest_pairs_grid(table, {"train": train})
    with pytest.raises(ValueError, match="sets must be one of 'train', 'test', 'train_test'; got 'valid'"):
        dedup.closest_pairs_grid(table.assign(sets="valid"), {"train": train, "test": test})


@pytest.mark.parametrize("threshold", [-1.0, math.nan, math.inf, True, "1"])
def test_threshold_must_be_finite_and_non_negative(threshold):
    images = np.zeros((3, 2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"threshold must be >= 0 and finite; got "):
        dedup.near_duplicates(images, threshold)


@pytest.mark.parametrize("name, value", [("chunk", 0), ("chunk", 2.0), ("max_pairs", 0), ("max_pairs", True)])
def test_chunk_and_max_pairs_must_be_positive_integers(name, value):
    images = np.zeros((3, 2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= 1; got {value!r}"):
        dedup.near_duplicates(images, 1.0, **{name: value})
    if name == "max_pairs":
        with pytest.raises(ValueError, match=rf"max_pairs must be an integer >= 1; got {value!r}"):
            dedup.exact_duplicates(images, max_pairs=value)


def test_table_bytes_covers_a_full_table(labelled):
    train, test, train_labels, test_labels, classes = labelled
    table, metrics = dedup.find_all(train, test, train_labels, test_labels, classes, 255, max_pairs=200)
    assert metrics["near"] == {"train": 200, "test": 104, "train_test": 200}  # test: 105 pairs, one exact
    # The estimate is per row of six full sets: a row of the table must fit in a sixth of table_bytes(1).
    assert table.memory_usage(deep=True).sum() / len(table) <= dedup.table_bytes(1) / 6
    assert dedup.table_bytes(100_000) == 100 * dedup.table_bytes(1_000)


# ------------------------------------------------------------------------------------ screened tiles


def _exact_pairs(a, b, threshold, within):
    """Reference on integer pixels: exact float64 squared distances of every pair (i < j within a set)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    d2 = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2 * a @ b.T
    i, j = np.nonzero((d2 > 0) & (d2 < threshold**2 * a.shape[1]))
    if within:
        i, j = i[i < j], j[i < j]
    return list(zip(i.tolist(), j.tolist()))


def test_screened_near_pairs_on_fashion_images(fashion_train, fashion_test):
    train, test = fashion_train[0][:6000], fashion_test[0][:1500]
    for a, b, within in ((train, None, True), (train, test, False)):
        for threshold in (10.0, 25.0):
            got = dedup.near_duplicates(a, threshold, b, chunk=2048)
            expected = _exact_pairs(a, a if within else b, threshold, within)
            assert list(zip(got.i.tolist(), got.j.tolist())) == expected
            assert not got.capped
