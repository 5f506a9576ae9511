"""fmproto.data.datasets on small files written by hand in the real formats: every reader and every error branch."""

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmproto.data import datasets

from conftest import raises_one_line

REPO = Path(__file__).resolve().parents[2]
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



# VmHWM, the peak resident memory of this process image: ``ru_maxrss`` would carry over the parent's
# peak through fork and exec, so a large pytest process would fail the bound whatever the reader does.
PEAK_MEMORY = """
import re
from pathlib import Path
from fmproto.data import datasets
from fmproto.pipeline.checks import DataError
peak = lambda: re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
before = peak()
try:
    datasets.{call}
    print("no error")
except DataError as err:
    print(err)
print(before, peak())
"""


def peak_memory(call: str) -> tuple[str, float, float]:
    """Run ``datasets.<call>`` in a fresh interpreter: its one-line message, and the peak resident
    memory in MB after the imports and after the call (VmHWM)."""
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY.format(call=call)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    message, numbers = done.stdout.splitlines()
    before, after = (int(n) / 1024 for n in numbers.split())
    return message, before, after


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
    # A gzip is inflated one byte past the declared payload, not to its end: no count of the rest.
    "trailing bytes gz": (GOOD_IDX + b"\x07", True, r"trailing bytes after the 140 data bytes of dimensions 4x5x7 "
                          r"\(not inflated further\)"),
}


@pytest.mark.parametrize("data, compress, match", IDX_ERRORS.values(), ids=IDX_ERRORS.keys())
def test_read_idx_errors(tmp_path, data, compress, match):
    path = write(tmp_path / "train-images-idx3-ubyte.gz", data, compress)
    raises_one_line(path, match, datasets.read_idx, path)


def test_read_idx_missing_file(tmp_path):
    raises_one_line(tmp_path / "nope.gz", "file not found", datasets.read_idx, tmp_path / "nope.gz")


def test_read_idx_refuses_a_header_over_the_limit_before_reading(tmp_path):
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 60_000, 28_000, 28_000)  # 47 TB declared, 16 bytes given
    path = write(tmp_path / "huge.idx", header, compress=True)
    raises_one_line(path, r"IDX header declares dimensions 60000x28000x28000, 47,040,000,000,000 data bytes, "
                    r"over the limit of 536,870,912 \(MAX_DATA_BYTES\); nothing read$", datasets.read_idx, path)
    many = write(tmp_path / "many.idx", struct.pack(">BBBB", 0, 0, 8, 255) + struct.pack(">255I", *[4_000_000_000] * 255))
    raises_one_line(many, r"IDX header declares dimensions (4000000000x){7}\.\.\., about 1e2448 data bytes",
                    datasets.read_idx, many)  # 255 dimensions: the shape and the count are cut short


def test_read_idx_pair_checks_both_headers_before_the_payloads(tmp_path, monkeypatch):
    images = write(tmp_path / "i", struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 5, 7))  # header only
    labels = write(tmp_path / "l", struct.pack(">BBBBI", 0, 0, 8, 1, 3))
    raises_one_line(labels, "3 labels but 4 images", datasets.read_idx_pair, images, labels)
    # 1x1 images: 200,000,000 pixel bytes fit MAX_DATA_BYTES, but not with 1.6 GB of int64 labels
    images = write(tmp_path / "i", struct.pack(">BBBBIII", 0, 0, 8, 3, 200_000_000, 1, 1))
    labels = write(tmp_path / "l", struct.pack(">BBBBI", 0, 0, 8, 1, 200_000_000))
    raises_one_line(images, r"200000000 images of 1x1 and their int64 labels need 1,800,000,000 bytes, "
                    r"over the limit of 536,870,912", datasets.read_idx_pair, images, labels)


def test_read_idx_stops_a_gzip_bomb_one_byte_past_the_declared_size(tmp_path):
    """A valid header for 60,000 28x28 images, then 2 GiB of zeros: 47 MB are read, not 2 GiB.

    The file stays ~2 MB: gzip members may be concatenated, so one member of 64 MiB of zeros is
    compressed once and repeated.
    """
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 60_000, 28, 28)
    member = gzip.compress(bytes(64 * 1024**2), compresslevel=9, mtime=0)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header, mtime=0) + member * 32)  # 2 GiB + 16 bytes inflated
    assert path.stat().st_size < 3_000_000
    message, before, after = peak_memory(f"read_idx({str(path)!r})")
    assert message == (f"{path}: trailing bytes after the 47040000 data bytes of dimensions 60000x28x28 "
                       "(not inflated further)")
    assert after < 1000, f"peak {after:.0f} MB"
    assert after - before < 47 + 100, f"peak {after:.0f} MB, {before:.0f} MB after the imports"


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


def test_real_fashion_mnist_test_labels(fashion_dir):
    labels = datasets.read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
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
    # Only plain integer literals: pandas used to read 1.0 as 1 and 1e2 as 100.
    "1.0": (HEADER + "1,0,0,0,0\n2,0,1.0,0,0\n", r"row 2 \(line 3\), column pixel2: '1.0' is not an integer$"),
    "1e2": (HEADER + "1,0,0,0,1e2\n", r"row 1 \(line 2\), column pixel4: '1e2' is not an integer$"),
    "True": (HEADER + "1,True,0,0,0\n", r"row 1 \(line 2\), column pixel1: 'True' is not an integer$"),
    "inf": (HEADER + "1,0,0,inf,0\n", r"row 1 \(line 2\), column pixel3: 'inf' is not an integer$"),
    "nan label": (HEADER + "1,0,0,0,0\nnan,0,0,0,0\n", r"row 2 \(line 3\), column label: 'nan' is not an integer$"),
    "0x1F": (HEADER + "1,0x1F,0,0,0\n", r"row 1 \(line 2\), column pixel1: '0x1F' is not an integer$"),
    "space cell": (HEADER + "1,0,0, ,0\n", r"row 1 \(line 2\), column pixel3: ' ' is not an integer$"),
    "space inside": (HEADER + "1,0,0,1 2,0\n", r"column pixel3: '1 2' is not an integer$"),
    "two signs": (HEADER + "1,0,+-1,0,0\n", r"column pixel2: '\+-1' is not an integer$"),
    "sign apart": (HEADER + "1,0,- 1,0,0\n", r"column pixel2: '- 1' is not an integer$"),
    "quoted cell": (HEADER + '1,0,"5",0,0\n', r"""column pixel2: '"5"' is not an integer$"""),
    "lone CR": (HEADER + "1,0,0,0,0\r2,0,0,0,0\n", r"row 1 \(line 2\) has 9 cells, .*a '\\r' inside it does not end"),
    "unicode digit": (HEADER + "1,0,0,0,\u0663\n", r"column pixel4: '\u0663' is not an integer$"),
    "long label": (HEADER + "1000000000000000000,0,0,0,0\n", r"column label: label 1000000000000000000 has more "
                   r"than 18 digits"),
    "later row first": (HEADER + "1,0,0,0,0\n" * 3 + "1,0,0,0,256\n1,0,0,0,x\n",
                        r"row 4 \(line 5\), column pixel4: pixel 256 outside 0..255$"),
    "long cell quoted short": (HEADER + "1,0,0,0," + "x" * 100 + "\n", r"column pixel4: 'x{76}\.\.\. is not"),
    "blank header line": ("\n" + HEADER + "1,0,0,0,0\n", "line 1 is blank; expected the header"),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("text, match", CSV_ERRORS.values(), ids=CSV_ERRORS.keys())
def test_read_csv_images_errors(tmp_path, compress, text, match):
    path = write(tmp_path / "fashion-mnist_train.csv", text, compress)
    raises_one_line(path, match, datasets.read_csv_images, path)


def test_read_csv_images_accepts_integer_literals_with_spaces_and_signs(tmp_path):
    text = HEADER + " +1 , -0 ,\t7\t,0003,255 \r\n-2,0000000000000000000000000000009,0,0,0\n"
    images, labels = datasets.read_csv_images(write(tmp_path / "x.csv", text))
    np.testing.assert_array_equal(labels, [1, -2])
    np.testing.assert_array_equal(images.reshape(2, 4), [[0, 7, 3, 255], [9, 0, 0, 0]])


def test_read_csv_images_many_rows_across_pieces(tmp_path):
    """Rows that straddle the 1 MiB pieces, with and without a final line end."""
    images = RNG.integers(0, 256, size=(1500, 28, 28), dtype=np.uint8)  # 4 MB of text
    labels = RNG.integers(0, 10, size=1500)
    text = csv_text(images, labels)
    for name, data, compress in (("a.csv", text, False), ("b.csv.gz", text, True), ("c.csv", text[:-1], False)):
        got_images, got_labels = datasets.read_csv_images(write(tmp_path / name, data, compress))
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
    bad = text.splitlines()
    bad[1300] = bad[1300][:-1] + "1.5"
    raises_one_line(tmp_path / "d.csv", r"row 1300 \(line 1301\), column pixel784: '.*1.5' is not an integer$",
                    datasets.read_csv_images, write(tmp_path / "d.csv", "\n".join(bad) + "\n"))


def test_read_csv_images_stops_past_max_data_bytes(tmp_path, monkeypatch):
    path = write(tmp_path / "x.csv", csv_text(IMAGES_5x7, LABELS_4))
    monkeypatch.setattr(datasets, "MAX_DATA_BYTES", 3 * (35 + 8))  # room for 3 rows of 35 pixels
    raises_one_line(path, r"rows 1 to 4 take 172 bytes as images and int64 labels, over the limit of 129 "
                    r"\(MAX_DATA_BYTES\)$", datasets.read_csv_images, path, image_shape=(5, 7))


def big_line_file(path: Path, head: str, line: bytes, repeats: int, compress: bool) -> Path:
    """``head`` then ``line * repeats`` (20 MB and more), written in pieces; gzipped to ~100 KB."""
    with (gzip.open(path, "wb", compresslevel=6) if compress else open(path, "wb")) as f:
        f.write(head.encode())
        for _ in range(repeats // 10_000):
            f.write(line * 10_000)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_read_csv_images_refuses_a_20_mb_header_in_little_memory(tmp_path, compress):
    many = big_line_file(tmp_path / "many.csv", "label", b",pixel1", 3_000_000, compress)  # 21 MB, 3M columns
    message, before, after = peak_memory(f"read_csv_images({str(many)!r})")
    starts = "'" + ("label" + ",pixel1" * 20)[:76] + "..."  # 80 characters quoted, cut with "..."
    assert message == f"{many}: header has more than 100,000 columns (MAX_CSV_COLUMNS); starts {starts}"
    assert after - before < 10, f"peak {after:.0f} MB, {before:.0f} MB after the imports"
    wide = big_line_file(tmp_path / "wide.csv", "label,pixel", b"1" * 10, 2_000_000, compress)  # one 20 MB name
    message, before, after = peak_memory(f"read_csv_images({str(wide)!r})")
    assert message == f"{wide}: header column 2 is longer than 64 characters: 'pixel{'1' * 71}..."
    assert after - before < 10, f"peak {after:.0f} MB, {before:.0f} MB after the imports"


@pytest.mark.parametrize("compress", [False, True])
def test_read_csv_images_refuses_a_20_mb_data_line_early(tmp_path, compress):
    header = ",".join(["label"] + [f"pixel{j}" for j in range(1, 785)]) + "\n"
    good = "\n".join(["3" + ",0" * 784] * 2) + "\n"
    path = big_line_file(tmp_path / "x.csv", header + good, b"0,", 10_000_000, compress)  # a 20 MB row 3
    message, before, after = peak_memory(f"read_csv_images({str(path)!r})")
    assert message == (f"{path}: row 3 (line 4) is longer than 25,905 characters (785 cells of at most 32); "
                       f"starts '{('0,' * 40)[:76]}...")
    assert after - before < 10, f"peak {after:.0f} MB, {before:.0f} MB after the imports"
    # a line just over the bound, in the middle of a piece, is refused the same way
    path = write(tmp_path / "y.csv", header + good + "9," * 12_953 + "\n" + good, compress)
    raises_one_line(path, r"row 3 \(line 4\) is longer than 25,905 characters", datasets.read_csv_images, path)


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


@pytest.mark.parametrize("compress", [False, True])
def test_images_over_max_image_pixels_are_refused_before_the_payload(tmp_path, compress):
    # 81x80 is just over the limit: the header alone is refused (no payload is written at all).
    header = idx_bytes(np.zeros((2, 81, 80), np.uint8))[:16]
    images = write(tmp_path / "train-images-idx3-ubyte", header, compress=compress)
    labels = write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(2, np.uint8)), compress=compress)
    message = raises_one_line(images, r"images of 81x80 \(6,480 pixels\) are larger than the 6,400 pixels",
                              datasets.read_idx_pair, images, labels)
    assert "MAX_IMAGE_PIXELS" in message
    at_limit = write(tmp_path / "ok-images", idx_bytes(np.zeros((2, 80, 80), np.uint8)))
    assert datasets.read_idx_pair(at_limit, labels)[0].shape == (2, 80, 80)


def test_csv_images_over_max_image_pixels_are_refused_after_the_header(tmp_path):
    header = ",".join(["label"] + [f"pixel{j}" for j in range(1, 256 * 256 + 1)])
    path = write(tmp_path / "big-train.csv", header + "\n0,not even read\n")
    raises_one_line(path, r"images of 256x256 \(65,536 pixels\) are larger than the 6,400 pixels",
                    datasets.read_csv_images, path)


def _projection_peak(n_pixels: int) -> int:
    """Peak bytes traced while a screening projection is fitted on 8,192 rows (what it samples at most)."""
    import tracemalloc

    from fmproto.search import projection

    X = np.random.default_rng(0).integers(0, 256, size=(8192, n_pixels), dtype=np.uint8)
    tracemalloc.start()
    try:
        projection.Projection(128).fit(X)  # knn's components; dedup's 32 take less
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_max_image_pixels_fits_the_neighbour_stages_memory_limit():
    """The limit's proof: the projection's peak is a * n_pixels + b * n_pixels**2 (its rows, its
    covariance); two measurements give a and b, and the peak at MAX_IMAGE_PIXELS must fit the limit."""
    from fmproto.data import dedup
    from fmproto.pipeline.params import MEMORY_LIMIT

    p = 400
    small, large = _projection_peak(p), _projection_peak(2 * p)
    b = (large - 2 * small) / (2 * p**2)
    a = (small - b * p**2) / p
    assert a > 0 and b > 0
    n = datasets.MAX_IMAGE_PIXELS
    assert a * n + b * n**2 < MEMORY_LIMIT
    assert a * 1.2 * n + b * (1.2 * n) ** 2 > 0.8 * MEMORY_LIMIT  # and the limit is not far below what fits
    assert dedup.tile_bytes(4096, n) < MEMORY_LIMIT
