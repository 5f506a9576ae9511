"""Feature transforms: HOG against a per-pixel loop, PCA against an SVD, augmentation against slicing."""

import math

import numpy as np
import pytest

from fmproto.representation import augment, transform, hog
from fmproto.evaluation import fitset
from fmproto.representation.transform import FeatureSpec


def naive_hog(image: np.ndarray, cell: int, orientations: int) -> np.ndarray:
    """HOG by loops over pixels, written from the definition in the module docstring."""
    I = image.astype(np.float64)
    height, width = I.shape
    at = lambda r, c: I[r, c] if 0 <= r < height and 0 <= c < width else 0.0  # noqa: E731
    cells_y, cells_x = height // cell, width // cell
    hist = np.zeros((cells_y, cells_x, orientations))
    for r in range(cells_y * cell):
        for c in range(cells_x * cell):
            gx, gy = at(r, c + 1) - at(r, c - 1), at(r + 1, c) - at(r - 1, c)
            magnitude = math.hypot(gx, gy)
            angle = math.atan2(gy, gx) % math.pi  # unsigned, radians in [0, pi)
            position = angle / math.pi * orientations - 0.5  # bin b is centred at b + 0.5
            lower = math.floor(position)
            w = position - lower
            hist[r // cell, c // cell, lower % orientations] += magnitude * (1 - w)
            hist[r // cell, c // cell, (lower + 1) % orientations] += magnitude * w
    out = []
    for by in range(cells_y - 1):
        for bx in range(cells_x - 1):
            v = np.concatenate([hist[by, bx], hist[by, bx + 1], hist[by + 1, bx], hist[by + 1, bx + 1]])
            for _ in range(2):  # L2, clip at 0.2, L2 again
                norm = np.linalg.norm(v)
                v = v / norm if norm > 1e-6 else np.zeros_like(v)
                v = np.minimum(v, 0.2) if _ == 0 else v
            out.append(v)
    return np.concatenate(out)


@pytest.mark.parametrize("cell, orientations, shape", [(4, 9, (12, 12)), (3, 6, (11, 10)), (5, 8, (14, 17))])
def test_hog_equals_the_pixel_loop(cell, orientations, shape):
    rng = np.random.default_rng(cell)
    images = rng.integers(0, 256, size=(3, *shape), dtype=np.uint8)
    images[0, :, : shape[1] // 2] = 0  # a flat region: zero gradients, empty cells
    got = hog.hog(images, cell, orientations)
    expected = np.stack([naive_hog(im, cell, orientations) for im in images])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cores", [1, 2, 3])
def test_hog_gives_the_same_bytes_in_any_chunks_on_any_core_count(monkeypatch, cores):
    images = np.random.default_rng(5).integers(0, 256, size=(11, 12, 12), dtype=np.uint8)
    alone = np.concatenate([hog.hog(image[None], 3, 9) for image in images])  # one image a chunk
    monkeypatch.setattr(hog.os, "cpu_count", lambda: cores)
    np.testing.assert_array_equal(hog.hog(images, 3, 9), alone)
    monkeypatch.setattr(hog, "_CHUNK", 4)
    np.testing.assert_array_equal(hog.hog(images, 3, 9), alone)


def test_hog_of_a_vertical_edge_votes_for_horizontal_gradients():
    image = np.zeros((1, 12, 12), dtype=np.uint8)
    image[:, :, 6:] = 200  # bright right part: inside the middle cell gradients point along x
    blocks = hog.hog(image, cell=4, orientations=4).reshape(4, 4, 4)  # 2x2 blocks, 4 cells, 4 bins
    middle = blocks[0, 3]  # block (0, 0)'s bottom-right cell is cell (1, 1), away from the image border
    # Orientation 0 lies halfway between bin 3 (centre 157.5 deg) and bin 0 (centre 22.5 deg)
    assert middle[1] == 0 and middle[2] == 0
    assert middle[0] > 0
    np.testing.assert_allclose(middle[0], middle[3])


def test_hog_is_blind_to_contrast_and_empty_for_a_flat_image():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 120, size=(1, 12, 12))
    np.testing.assert_allclose(hog.hog(image), hog.hog(2 * image), rtol=1e-5, atol=1e-6)
    assert not hog.hog(np.zeros((1, 12, 12))).any()  # no gradient anywhere, not even at the border


def test_pca_matches_an_svd_and_whitening_gives_unit_variance():
    rng = np.random.default_rng(1)
    images = (rng.normal(size=(200, 6, 5)) * np.linspace(1, 30, 30).reshape(6, 5) + 100).clip(0, 255)
    spec = FeatureSpec("raw", pca_components=4)
    state = transform.fit(images, spec)
    Z = transform.transform(images, spec, state)
    X = images.reshape(200, -1)
    centred = X - X.mean(axis=0)
    _, s, Vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ Vt[:4].T
    reference *= np.sign(Vt[:4][np.arange(4), np.abs(Vt[:4]).argmax(axis=1)])  # the module's sign rule
    np.testing.assert_allclose(Z, reference, rtol=1e-3, atol=1e-2)
    white = transform.transform(images, FeatureSpec("raw", pca_components=4, pca_whiten=True),
                               transform.fit(images, FeatureSpec("raw", pca_components=4, pca_whiten=True)))
    np.testing.assert_allclose(white.var(axis=0, ddof=1), 1.0, rtol=1e-3)


def test_standard_block_and_block_scaling():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(50, 4, 4)).astype(np.uint8)
    images[:, 0, 0] = 9  # a constant pixel keeps scale 1
    spec = FeatureSpec("standard")
    Z = transform.transform(images, spec, transform.fit(images, spec))
    np.testing.assert_allclose(Z[:, 1:].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(Z[:, 1:].std(axis=0), 1, rtol=1e-4)
    assert not Z[:, 0].any()
    # A combination scales each block to unit mean norm on the fitting images
    spec = FeatureSpec("raw+standard")
    Z = transform.transform(images, spec, transform.fit(images, spec))
    assert Z.shape == (50, 32)
    for block in (Z[:, :16], Z[:, 16:]):
        assert np.linalg.norm(block, axis=1).mean() == pytest.approx(1.0, rel=1e-5)


def test_lone_raw_block_keeps_pixel_values():
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    spec = FeatureSpec("raw")
    np.testing.assert_array_equal(transform.transform(images, spec, transform.fit(images, spec)),
                                  images.reshape(2, 9).astype(np.float32))


def test_augment_shifts_and_flips():
    images = np.arange(1, 2 * 3 * 4 + 1, dtype=np.uint8).reshape(2, 3, 4)
    out, source = augment.augment(images, shifts=True, flip=True)
    assert out.shape == (12, 3, 4)
    np.testing.assert_array_equal(source, np.tile([0, 1], 6))
    np.testing.assert_array_equal(out[:2], images)
    right = np.zeros_like(images)
    right[:, :, 1:] = images[:, :, :-1]
    np.testing.assert_array_equal(out[2:4], right)
    up = np.zeros_like(images)
    up[:, :-1] = images[:, 1:]
    np.testing.assert_array_equal(out[8:10], up)
    np.testing.assert_array_equal(out[10:12], images[:, :, ::-1])
    same, src = augment.augment(images, shifts=False, flip=False)
    np.testing.assert_array_equal(same, images)
    np.testing.assert_array_equal(src, [0, 1])


def test_images_of_rows_equal_the_full_augmentation():
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, size=(5, 4, 6)).astype(np.uint8)
    for shifts, flip in [(True, True), (True, False), (False, True), (False, False)]:
        every, _ = augment.augment(images, shifts, flip)
        rows = rng.integers(0, len(every), size=(3, 4))
        np.testing.assert_array_equal(augment.images_of_rows(images, rows, shifts, flip), every[rows])


def test_fit_set_keeps_only_copies_of_fit_images():
    train = np.arange(4, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # 4 images
    copies = 10 + np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # 2 copies each
    source = np.tile(np.arange(4), 2)
    X, rows = fitset.fit_set(train, copies, source, np.array([1, 3]), with_augmented=True)
    np.testing.assert_array_equal(rows, [1, 3, 5, 7, 9, 11])
    np.testing.assert_array_equal(rows % 4, [1, 3, 1, 3, 1, 3])
    np.testing.assert_array_equal(X[:, 0], [1, 3, 11, 13, 15, 17])
    X, rows = fitset.fit_set(train, copies, source, np.array([1, 3]), with_augmented=False)
    np.testing.assert_array_equal(rows, [1, 3])


@pytest.mark.parametrize("kind", ["raw", "standard", "hog", "hog+raw"])
def test_no_images_give_no_rows_of_the_right_width(kind):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(20, 12, 12)).astype(np.uint8)
    spec = FeatureSpec(kind, pca_components=3 if kind == "hog+raw" else 0)
    state = transform.fit(images, spec)
    width = transform.transform(images[:1], spec, state).shape[1]
    assert transform.transform(images[:0], spec, state).shape == (0, width)


def test_spec_and_state_round_trip():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(40, 12, 12)).astype(np.uint8)
    spec = FeatureSpec("hog+raw", hog_cell=4, hog_orientations=6, pca_components=5, pca_whiten=True)
    state = transform.fit(images, spec)
    spec2, state2, flags = transform.from_arrays(transform.to_arrays(spec, state, True, False))
    assert spec2 == spec and flags == (True, False)
    np.testing.assert_array_equal(transform.transform(images, spec2, state2), transform.transform(images, spec, state))


def test_fit_is_deterministic_and_chunking_does_not_matter(monkeypatch):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(30, 12, 12)).astype(np.uint8)
    spec = FeatureSpec("hog+standard", pca_components=6)
    whole = transform.transform(images, spec, transform.fit(images, spec))
    monkeypatch.setattr(transform, "_CHUNK", 7)
    chunked = transform.transform(images, spec, transform.fit(images, spec))
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec, match", [
    (FeatureSpec("sift"), "features.kind must be one or more of raw, standard, hog"),
    (FeatureSpec("hog+hog"), "each once"),
    (FeatureSpec("hog", hog_cell=7), "features.hog_cell must leave at least 2x2 cells"),
    (FeatureSpec("hog", hog_orientations=1), "features.hog_orientations must be >= 2"),
    (FeatureSpec("raw", pca_components=-1), "features.pca_components must be >= 0"),
    (FeatureSpec("raw", pca_components=200), "features.pca_components must be at most 144"),
])
def test_bad_specs_are_named(spec, match):
    images = np.zeros((150, 12, 12), dtype=np.uint8)
    with pytest.raises(ValueError, match=match):
        transform.fit(images, spec)


@pytest.mark.parametrize("spec, n_images, refused", [
    (FeatureSpec("raw", pca_components=144), 150, False), (FeatureSpec("raw", pca_components=145), 150, True),
    (FeatureSpec("hog", pca_components=20), 20, False), (FeatureSpec("hog", pca_components=21), 20, True),
    (FeatureSpec("hog+raw", pca_components=288), 300, False), (FeatureSpec("hog+raw", pca_components=289), 300, True),
    (FeatureSpec("raw"), 1, True), (FeatureSpec("hog", hog_cell=7), 10, True),
])
def test_check_fit_refuses_exactly_what_fit_refuses(spec, n_images, refused):
    """The check a stage makes before training is fit's own: the same verdict, the same message."""
    images = np.random.default_rng(0).integers(0, 256, size=(n_images, 12, 12)).astype(np.uint8)
    if not refused:
        transform.fit(images, spec)
        assert transform.check_fit(spec, (12, 12), n_images) == transform.block_widths(spec, (12, 12))
        return
    with pytest.raises(ValueError) as by_fit:
        transform.fit(images, spec)
    with pytest.raises(ValueError) as by_check:
        transform.check_fit(spec, (12, 12), n_images)
    assert str(by_check.value) == str(by_fit.value)


def test_feature_arrays_fit_on_the_fit_rows_and_transform_every_image():
    rng = np.random.default_rng(7)
    train, test = (rng.integers(0, 256, size=(n, 12, 12)).astype(np.uint8) for n in (30, 8))
    fit_rows = np.arange(0, 30, 2)
    spec = FeatureSpec("hog+standard", hog_cell=4, pca_components=4)
    arrays = transform.feature_arrays(train, test, fit_rows, rng.integers(0, 3, 30), 3, spec, shifts=True, flip=False)
    state = transform.fit(train[fit_rows], spec)
    copies, _ = augment.augment(train, True, False)
    shifted = np.zeros((4, 8, 12, 12), np.uint8)  # right, left, down, up, the vacated edge 0
    shifted[0, :, :, 1:], shifted[1, :, :, :-1] = test[:, :, :-1], test[:, :, 1:]
    shifted[2, :, 1:], shifted[3, :, :-1] = test[:, :-1], test[:, 1:]
    for name, images in (("train", train), ("test", test), ("augmented", copies[30:]),
                         ("test_shifted", shifted.reshape(32, 12, 12))):
        assert arrays[name].tobytes() == transform.transform(images, spec, state).tobytes()
    np.testing.assert_array_equal(arrays["augmented_source"], np.tile(np.arange(30), 4))
    assert transform.from_arrays(arrays)[0::2] == (spec, (True, False))


def test_plain_pixels_are_stored_as_uint8_rows():
    rng = np.random.default_rng(8)
    train, test = (rng.integers(0, 256, size=(n, 9, 10)).astype(np.uint8) for n in (12, 3))
    arrays = transform.feature_arrays(train, test, np.arange(6), np.zeros(12, int), 1, FeatureSpec("raw"),
                                      shifts=False, flip=True)
    assert arrays["train"].dtype == np.uint8 and arrays["train"].shape == (12, 90)
    np.testing.assert_array_equal(arrays["test"], test.reshape(3, 90))
    np.testing.assert_array_equal(arrays["augmented"], train[:, :, ::-1].reshape(12, 90))
    assert arrays["test_shifted"].shape == (0, 90)  # no shifts, no shifted test images
    assert FeatureSpec("raw").plain_pixels and not FeatureSpec("raw", pca_components=2).plain_pixels
