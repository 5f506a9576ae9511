"""fmproto.datasets on small files written by hand in the real formats: every reader and every error branch."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from fmproto import datasets
from fmproto.checks import DataError

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)
IMAGES_5x7 = RNG.integers(0, 256, size=(4, 5, 7), dtype=np.uint8)
LABELS_4 = np.array([3, 0, 9, 3], dtype=np.uint8)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX as specified: two zero bytes, type code, ndim, big-endian uint32 dims, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write(path: Path, data: bytes | str, compress: bool = False) -> Path:
    data = data.encode() if isinstance(data, str) else data
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def csv_text(images: np.ndarray, labels: np.ndarray) -> str:
    """Kaggle layout: ``label,pixel1,...,pixelN`` then one row per image."""
    n_pixels = images[0].size
    rows = np.column_stack([labels, images.reshape(len(images), -1)])
    header = ",".join(["label"] + [f"pixel{j}" for j in range(1, n_pixels + 1)])
    return "\n".join([header] + [",".join(map(str, row)) for row in rows]) + "\n"


def raises_one_line(path: Path, match: str, call, *args, **kwargs) -> str:
    """Call, expect a DataError matching ``match``, and check it is one line naming ``path``."""
    with pytest.raises(DataError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ") or str(path) in message
    return message


# ---------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array", [IMAGES_5x7, LABELS_4, np.zeros((1, 1, 1), np.uint8)], ids=["idx3", "idx1", "1x1x1"]
)
def test_read_idx_round_trip(tmp_path, compress, array):
    path = write(tmp_path / "data.idx", idx_bytes(array), compress)
    got = datasets.read_idx(path)
    assert got.dtype == np.uint8 and got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    got[...] = 1  # an ordinary writable array, not a view of the file's bytes


def test_read_idx_detects_gzip_from_content_not_name(tmp_path):
    gz_without_suffix = write(tmp_path / "images", idx_bytes(IMAGES_5x7), compress=True)
    plain_with_suffix = write(tmp_path / "images.gz", idx_bytes(IMAGES_5x7))
    np.testing.assert_array_equal(datasets.read_idx(gz_without_suffix), IMAGES_5x7)
    np.testing.assert_array_equal(datasets.read_idx(plain_with_suffix), IMAGES_5x7)


GOOD_IDX = idx_bytes(IMAGES_5x7)
IDX_ERRORS = {
    "empty file": (b"", False, "empty file"),
    "empty gzip": (b"", True, r"empty file \(after gunzip\)"),
    "truncated gzip": (gzip.compress(GOOD_IDX)[:-12], False, "corrupt or truncated gzip"),
    "corrupt gzip": (b"\x1f\x8b" + b"not really deflate data" * 3, False, "corrupt or truncated gzip"),
    "non-gzip garbage": (b"GIF89a some picture bytes", False, "not an IDX file: starts with 0x4749, expected 0x0000"),
    "too short": (b"\x00\x00\x08", False, "too short for an IDX header"),
    "wrong magic": (b"\x00\x01" + GOOD_IDX[2:], False, "not an IDX file: starts with 0x0001"),
    "unsupported type": (idx_bytes(IMAGES_5x7, type_code=0x0B), False, "unsupported IDX type code 0x0B"),
    "float type": (idx_bytes(IMAGES_5x7, type_code=0x0D), True, "unsupported IDX type code 0x0D"),
    "zero ndim": (b"\x00\x00\x08\x00", False, "declares 0 dimensions"),
    "truncated header": (GOOD_IDX[:10], False, "truncated IDX header: 3 dimensions need 16 bytes, file has 10"),
    "zero dimension": (struct.pack(">BBBBIII", 0, 0, 8, 3, 0, 5, 7), False, "dimensions 0x5x7 include a 0"),
    "truncated payload": (GOOD_IDX[:-1], False, "truncated: dimensions 4x5x7 need 140 data bytes, file has 139"),
    "truncated payload gz": (GOOD_IDX[:-30], True, "need 140 data bytes, file has 110"),
    "trailing bytes": (GOOD_IDX + b"\x00\x00\x00", False, "3 trailing bytes after the 140 data bytes"),
    "trailing bytes gz": (GOOD_IDX + b"\x07", True, "1 trailing bytes"),
}


@pytest.mark.parametrize("data, compress, match", IDX_ERRORS.values(), ids=IDX_ERRORS.keys())
def test_read_idx_errors(tmp_path, data, compress, match):
    path = write(tmp_path / "train-images-idx3-ubyte.gz", data, compress)
    raises_one_line(path, match, datasets.read_idx, path)


def test_read_idx_missing_file(tmp_path):
    raises_one_line(tmp_path / "nope.gz", "file not found", datasets.read_idx, tmp_path / "nope.gz")


def test_read_idx_pair_round_trip(tmp_path):
    images = write(tmp_path / "i.gz", idx_bytes(IMAGES_5x7), compress=True)
    labels = write(tmp_path / "l", idx_bytes(LABELS_4))
    got_images, got_labels = datasets.read_idx_pair(images, labels)
    np.testing.assert_array_equal(got_images, IMAGES_5x7)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_labels, [3, 0, 9, 3])


@pytest.mark.parametrize(
    "images, labels, bad, match",
    [
        (IMAGES_5x7, LABELS_4[:3], "labels", r"^{labels}: 3 labels but 4 images in {images}$"),
        (IMAGES_5x7[:, 0], LABELS_4, "images", r"images must be 3-D \(n, H, W\) idx3 data; got 2-D 4x7"),
        (IMAGES_5x7, IMAGES_5x7[:, 0], "labels", r"labels must be 1-D \(n,\) idx1 data; got 2-D 4x7"),
    ],
    ids=["count mismatch", "images 2-D", "labels 2-D"],
)
def test_read_idx_pair_errors(tmp_path, images, labels, bad, match):
    paths = {"images": write(tmp_path / "i.gz", idx_bytes(images), compress=True),
             "labels": write(tmp_path / "l", idx_bytes(labels))}
    raises_one_line(paths[bad], match.format(**paths), datasets.read_idx_pair, paths["images"], paths["labels"])


def test_real_fashion_mnist_test_labels():
    labels = datasets.read_idx(REPO / "data" / "raw" / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10_000,) and labels.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 1_000))


# ---------------------------------------------------------------------------------------------------- CSV images


@pytest.mark.parametrize("compress", [False, True])
def test_read_csv_images_square(tmp_path, compress):
    images = RNG.integers(0, 256, size=(6, 3, 3), dtype=np.uint8)
    images[0, 0, 0], images[1, 2, 2] = 0, 255  # both ends of the range
    labels = np.array([0, 1, 2, 9, 11, 5])  # labels are only range-checked by check_labels
    path = write(tmp_path / ("train.csv.gz" if compress else "train.csv"), csv_text(images, labels), compress)
    got_images, got_labels = datasets.read_csv_images(path)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("compress", [False, True])
def test_read_csv_images_non_square_shape(tmp_path, compress):
    path = write(tmp_path / "x.csv", csv_text(IMAGES_5x7, LABELS_4), compress)
    got_images, got_labels = datasets.read_csv_images(path, image_shape=(5, 7))
    np.testing.assert_array_equal(got_images, IMAGES_5x7)
    np.testing.assert_array_equal(got_labels, LABELS_4)
    np.testing.assert_array_equal(datasets.read_csv_images(path, image_shape=[7, 5])[0], IMAGES_5x7.reshape(4, 7, 5))


def test_read_csv_images_tolerates_crlf_bom_and_spaces(tmp_path):
    images = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    text = "\ufefflabel, pixel1,pixel2,pixel3,pixel4\r\n1,0, 1,2,3\r\n2,4,5,6,7\r\n"
    got_images, got_labels = datasets.read_csv_images(write(tmp_path / "x.csv", text))
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, [1, 2])


HEADER = "label,pixel1,pixel2,pixel3,pixel4\n"
CSV_ERRORS = {
    "empty file": ("", "empty file"),
    "blank file": ("\n", "empty file"),
    "header only": (HEADER, "header but no data rows"),
    "missing header": ("1,0,0,0,0\n2,0,0,0,0\n", "missing header: line 1 starts with the number 1"),
    "wrong first name": ("Label,pixel1,pixel2,pixel3,pixel4\n1,0,0,0,0\n",
                         "header column 1 is 'Label', expected 'label'"),
    "wrong pixel name": ("label,pixel1,pixel2,pixel4,pixel3\n1,0,0,0,0\n",
                         "header column 4 is 'pixel4', expected 'pixel3'"),
    "no pixel columns": ("label\n1\n", "has no pixel columns"),
    "missing cell": (HEADER + "1,0,0,0,0\n2,0,0,0\n3,0,0,0,0\n",
                     r"row 2 \(line 3\) has 4 cells, expected 5 \(label \+ 4 pixels\): missing cells"),
    "missing cell first row": (HEADER + "1,0,0,0\n2,0,0,0,0\n", r"row 1 \(line 2\) has 4 cells, expected 5"),
    "missing cell last row": (HEADER + "1,0,0,0,0\n2,0,0,0,0\n3,0\n", r"row 3 \(line 4\) has 2 cells"),
    "extra cell": (HEADER + "1,0,0,0,0\n2,0,0,0,0\n3,0,0,0,0,0\n",
                   r"row 3 \(line 4\) has 6 cells, expected 5 .*extra cells"),
    "extra cell first row": (HEADER + "1,0,0,0,0,0\n2,0,0,0,0\n", r"row 1 \(line 2\) has 6 cells.*extra"),
    "blank line": (HEADER + "1,0,0,0,0\n\n2,0,0,0,0\n", r"row 2 \(line 3\) is blank; expected 5 cells"),
    "empty cell": (HEADER + "1,0,0,0,0\n2,0,,0,0\n", r"row 2 \(line 3\), column pixel2: '' is not an integer"),
    "float cell": (HEADER + "1,0,0,0,0\n2,0,0,3.5,0\n", r"row 2 \(line 3\), column pixel3: '3.5' is not an integer"),
    "text cell": (HEADER + "1,0,0,0,abc\n2,0,0,0,0\n", r"row 1 \(line 2\), column pixel4: 'abc' is not an integer"),
    "text label": (HEADER + "1,0,0,0,0\ncat,0,0,0,0\n", r"row 2 \(line 3\), column label: 'cat' is not an integer"),
    "pixel 256": (HEADER + "1,0,0,0,0\n2,0,256,0,0\n", r"row 2 \(line 3\), column pixel2: pixel 256 outside 0..255"),
    "pixel -1": (HEADER + "1,-1,0,0,0\n", r"row 1 \(line 2\), column pixel1: pixel -1 outside 0..255"),
    "huge pixel": (HEADER + "1,0,0,0,99999999999999999999\n", r"column pixel4: pixel 99999999999999999999 outside"),
    "non-square": ("label,pixel1,pixel2,pixel3\n1,0,0,0\n",
                   "3 pixel columns is not a square number; give image_shape"),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("text, match", CSV_ERRORS.values(), ids=CSV_ERRORS.keys())
def test_read_csv_images_errors(tmp_path, compress, text, match):
    path = write(tmp_path / "fashion-mnist_train.csv", text, compress)
    raises_one_line(path, match, datasets.read_csv_images, path)


def test_read_csv_images_shape_mismatch(tmp_path):
    path = write(tmp_path / "x.csv", csv_text(IMAGES_5x7, LABELS_4))
    raises_one_line(path, "image_shape 6x6 needs 36 pixel columns but the header has 35",
                    datasets.read_csv_images, path, image_shape=(6, 6))
    with pytest.raises(ValueError, match=r"image_shape must be \(height, width\) of positive ints; got \(5, 0\)"):
        datasets.read_csv_images(path, image_shape=(5, 0))


def test_read_csv_images_truncated_gzip(tmp_path):
    images = RNG.integers(0, 256, size=(300, 4, 4), dtype=np.uint8)
    data = gzip.compress(csv_text(images, np.zeros(300, int)).encode())
    path = write(tmp_path / "x.csv.gz", data[: len(data) // 2])
    raises_one_line(path, "corrupt or truncated gzip", datasets.read_csv_images, path)


def test_read_csv_images_missing_and_binary(tmp_path):
    raises_one_line(tmp_path / "no.csv", "file not found", datasets.read_csv_images, tmp_path / "no.csv")
    path = write(tmp_path / "x.csv", b"\xff\xfe\x00\x81binary")
    raises_one_line(path, "not a text CSV file", datasets.read_csv_images, path)


# ---------------------------------------------------------------------------------------------------- datasets


def write_idx_set(directory: Path, names=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")) -> None:
    directory.mkdir(exist_ok=True)
    for name in names:
        array = IMAGES_5x7 if "images" in name else LABELS_4
        write(directory / name, idx_bytes(array), compress=name.endswith(".gz"))


def test_find_and_read_idx_dataset(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "fashion-mnist_train.csv").write_text("ignored: IDX files come first\n")
    found = datasets.find_dataset(tmp_path)
    assert found == {
        "format": "idx",
        "train": (tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz"),
        "test": (tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"),
    }
    for split in ("train", "test"):
        images, labels = datasets.read_dataset_split(found, split)
        np.testing.assert_array_equal(images, IMAGES_5x7)
        np.testing.assert_array_equal(labels, LABELS_4)
    assert datasets.read_dataset_split(found, "test", image_shape=[5, 7])[0].shape == (4, 5, 7)
    raises_one_line(found["test"][0], "images are 5x7 but image_shape is 7x5",
                    datasets.read_dataset_split, found, "test", image_shape=(7, 5))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'; got 'valid'"):
        datasets.read_dataset_split(found, "valid")


def test_find_and_read_csv_dataset(tmp_path):
    write(tmp_path / "fashion-mnist_train.csv", csv_text(IMAGES_5x7, LABELS_4))
    write(tmp_path / "Fashion-MNIST_Test.csv.gz", csv_text(IMAGES_5x7[:2], LABELS_4[:2]), compress=True)
    (tmp_path / "notes.txt").write_text("not a candidate")
    found = datasets.find_dataset(tmp_path)
    assert found == {"format": "csv", "train": tmp_path / "fashion-mnist_train.csv",
                     "test": tmp_path / "Fashion-MNIST_Test.csv.gz"}
    images, labels = datasets.read_dataset_split(found, "test", image_shape=(5, 7))
    np.testing.assert_array_equal(images, IMAGES_5x7[:2])
    np.testing.assert_array_equal(labels, LABELS_4[:2])


def test_find_dataset_errors(tmp_path):
    raises_one_line(tmp_path / "nowhere", "dataset folder not found", datasets.find_dataset, tmp_path / "nowhere")
    file = write(tmp_path / "file", "x")
    raises_one_line(file, "not a folder", datasets.find_dataset, file)

    empty = tmp_path / "empty"
    empty.mkdir()
    raises_one_line(empty, r"no dataset found: expected the four IDX files .* or one \*train\*.csv",
                    datasets.find_dataset, empty)

    partial = tmp_path / "partial"
    write_idx_set(partial, names=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"))
    raises_one_line(partial, r"incomplete IDX dataset: missing t10k-images-idx3-ubyte\[.gz\], "
                             r"t10k-labels-idx1-ubyte\[.gz\]$", datasets.find_dataset, partial)

    both = tmp_path / "both"
    write_idx_set(both)
    write(both / "t10k-labels-idx1-ubyte.gz", idx_bytes(LABELS_4), compress=True)
    raises_one_line(both, "both t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz are present",
                    datasets.find_dataset, both)

    several = tmp_path / "several"
    several.mkdir()
    for name in ("a_train.csv", "b_train.csv.gz", "test.csv"):
        (several / name).write_text(HEADER)
    raises_one_line(several, "several train CSV candidates: a_train.csv, b_train.csv.gz; keep one",
                    datasets.find_dataset, several)

    no_test = tmp_path / "no_test"
    no_test.mkdir()
    (no_test / "train.csv").write_text(HEADER)
    raises_one_line(no_test, r"no \*test\*.csv \(or .csv.gz\) next to train.csv", datasets.find_dataset, no_test)


def test_check_labels(tmp_path):
    datasets.check_labels(np.array([0, 9, 4]), 10, source="x")
    source = tmp_path / "train-labels-idx1-ubyte.gz"
    raises_one_line(source, r"label 12 outside the 10 classes \(0..9\) at index 1; 2 labels out of range",
                    datasets.check_labels, np.array([0, 12, 3, -1]), 10, source)
    raises_one_line(source, "labels must be 1-D integers", datasets.check_labels, np.array([0.5]), 10, source)


# ---------------------------------------------------------------------------------------------------- images


def test_read_image_file_png_and_npy(tmp_path):
    import matplotlib.image as mpimg

    grey = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)
    mpimg.imsave(tmp_path / "grey.png", np.stack([grey] * 3, axis=-1))  # saved as RGBA, opaque
    got = datasets.read_image_file(tmp_path / "grey.png", (5, 7))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, grey)

    colour = np.zeros((5, 7, 4), np.uint8)
    colour[..., 0], colour[..., 3] = 255, 255  # pure red, opaque
    colour[0, 0, 3] = 0  # one transparent pixel: over black
    mpimg.imsave(tmp_path / "red.PNG", colour)
    expected = np.full((5, 7), 76, np.uint8)  # round(0.299 * 255)
    expected[0, 0] = 0
    np.testing.assert_array_equal(datasets.read_image_file(tmp_path / "red.PNG", (5, 7)), expected)

    np.save(tmp_path / "x.npy", grey.astype(np.int64))
    np.testing.assert_array_equal(datasets.read_image_file(tmp_path / "x.npy", (5, 7)), grey)


def test_read_image_file_errors(tmp_path):
    import matplotlib.image as mpimg

    png = tmp_path / "x.png"
    mpimg.imsave(png, np.zeros((32, 32, 3), np.uint8))
    raises_one_line(png, r"^{}: image is 32x32 but the dataset's images are 28x28$".format(png),
                    datasets.read_image_file, png, (28, 28))
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((1, 5, 7)))
    raises_one_line(npy, r"image is an array of shape \(1, 5, 7\) but the dataset's images are 5x7",
                    datasets.read_image_file, npy, (5, 7))
    np.save(npy, np.full((5, 7), 0.5))
    raises_one_line(npy, "whole numbers in 0..255", datasets.read_image_file, npy, (5, 7))
    raises_one_line(tmp_path / "no.png", "file not found", datasets.read_image_file, tmp_path / "no.png", (5, 7))
    jpg = write(tmp_path / "x.jpg", b"\xff\xd8")
    raises_one_line(jpg, r"unsupported image file type '.jpg' \(use .png or .npy\)", datasets.read_image_file, jpg, (5, 7))
    fake = write(tmp_path / "fake.png", b"not a png")
    raises_one_line(fake, "not a readable PNG", datasets.read_image_file, fake, (5, 7))
