"""Property-based tests of the dataset readers on hostile input (hypothesis).

Every input must end in one of two ways: a parse equal to an independent expectation, or one
``DataError`` whose message is one line, under 300 characters, naming the file. Any other exception
is a bug. Valid files are generated from arrays and then mutated; the expectation for a mutated
file comes from a reference parser written here in plain Python from the format's rules (the gzip
layer is the standard library's in both).
"""

import gzip
import io
import math
import re
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmproto.data import datasets
from fmproto.data.images import read_image_file
from fmproto.pipeline.checks import DataError

# Each example is small; the deadline catches a reader that would read or inflate far too much. No
# example database: nothing is written into the working tree (a failure prints its example).
FUZZ = settings(max_examples=150, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
GZIP_FAILURES = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def outcome(path: Path, read, *args):
    """``read(path, *args)``, or the ``DataError`` it raised after checking its message."""
    try:
        return read(path, *args)
    except DataError as err:
        check_message(err, path)
        return err


@contextmanager
def pieces_of(size: int | None, cell_chars: int | None = None):
    """Read in pieces of ``size`` bytes instead of 1 MiB, so that small files cross many pieces, and
    allow ``cell_chars`` characters a CSV column instead of 32, so that short lines can be too long."""
    saved = datasets.CHUNK_BYTES, datasets.MAX_CELL_CHARS
    datasets.CHUNK_BYTES, datasets.MAX_CELL_CHARS = size or saved[0], cell_chars or saved[1]
    try:
        yield
    finally:
        datasets.CHUNK_BYTES, datasets.MAX_CELL_CHARS = saved


PIECES = st.sampled_from([None, 1, 3, 16])
CELL_CHARS = st.sampled_from([None, None, 2, 4])


def check_message(err: DataError, *paths: Path) -> None:
    message = str(err)
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 300, message
    assert any(message.startswith(f"{p}: ") for p in paths), message


def gunzip(raw: bytes) -> bytes | None:
    """The content of ``raw`` (decompressed when it starts with the gzip magic), None if damaged."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.GzipFile(fileobj=io.BytesIO(raw)).read()
    except GZIP_FAILURES:
        return None


@st.composite
def damaged(draw, data: bytes, inserts=st.binary(min_size=1, max_size=8)) -> bytes:
    """``data`` unchanged, truncated, extended, or with bytes flipped, inserted or deleted."""
    kind = draw(st.sampled_from(["none", "truncate", "extend", "flip", "insert", "delete"]))
    at = draw(st.integers(0, len(data)))
    if kind == "truncate":
        return data[:at]
    if kind == "extend":
        return data + draw(st.binary(min_size=1, max_size=20))
    if kind == "flip" and at < len(data):
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if kind == "insert":
        return data[:at] + draw(inserts) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 4)):]
    return data


@st.composite
def maybe_gzipped(draw, data: bytes) -> bytes:
    """``data`` as it is, or gzipped, and then perhaps with the gzip stream itself damaged."""
    if not draw(st.booleans()):
        return data
    packed = gzip.compress(data, compresslevel=draw(st.integers(1, 9)), mtime=0)
    return draw(damaged(packed)) if draw(st.integers(0, 3)) == 0 else packed


# ---------------------------------------------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def reference_idx(raw: bytes) -> np.ndarray | None:
    """IDX by the letter: 00 00 08 ndim, ndim big-endian uint32 dims, exactly prod(dims) bytes."""
    data = gunzip(raw)
    if data is None or len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        return None
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
    n_bytes = math.prod(dims)
    if 0 in dims or n_bytes > datasets.MAX_DATA_BYTES or len(data) != 4 + 4 * ndim + n_bytes:
        return None
    return np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


@st.composite
def idx_arrays(draw) -> np.ndarray:
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    n = math.prod(shape)
    return np.frombuffer(draw(st.binary(min_size=n, max_size=n)), dtype=np.uint8).reshape(shape)


@st.composite
def idx_files(draw) -> tuple[bytes, np.ndarray]:
    """A valid IDX file's bytes (perhaps damaged, perhaps gzipped) and the array it was made from."""
    array = draw(idx_arrays())
    return draw(maybe_gzipped(draw(damaged(idx_bytes(array))))), array


IDX_PREFIXES = [b"", b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x0b\x01"]


@FUZZ
@given(case=idx_files(), piece=PIECES)
def test_idx_valid_or_one_data_error(tmp_path, case, piece):
    raw, array = case
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(raw)
    expected = reference_idx(raw)
    if gunzip(raw) == idx_bytes(array):  # undamaged: the reference must agree with the generator
        np.testing.assert_array_equal(expected, array)
    with pieces_of(piece):
        got = outcome(path, datasets.read_idx)
    if expected is None:
        assert isinstance(got, DataError)
    else:
        assert isinstance(got, np.ndarray) and got.dtype == np.uint8 and got.flags.writeable
        np.testing.assert_array_equal(got, expected)


@FUZZ
@given(prefix=st.sampled_from(IDX_PREFIXES), body=st.binary(max_size=300), compress=st.booleans())
def test_idx_random_bytes(tmp_path, prefix, body, compress):
    raw = prefix + body
    raw = gzip.compress(raw, mtime=0) if compress else raw
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(raw)
    expected = reference_idx(raw)
    got = outcome(path, datasets.read_idx)
    if expected is None:
        assert isinstance(got, DataError)
    else:
        np.testing.assert_array_equal(got, expected)


@FUZZ
@given(images=idx_files(), labels=idx_files())
def test_idx_pair_valid_or_one_data_error(tmp_path, images, labels):
    images_path, labels_path = tmp_path / "images", tmp_path / "labels"
    images_path.write_bytes(images[0])
    labels_path.write_bytes(labels[0])
    X, y = reference_idx(images[0]), reference_idx(labels[0])
    valid = (X is not None and y is not None and X.ndim == 3 and y.ndim == 1 and len(X) == len(y))
    try:
        got_X, got_y = datasets.read_idx_pair(images_path, labels_path)
    except DataError as err:
        check_message(err, images_path, labels_path)
        assert not valid
    else:
        assert valid
        np.testing.assert_array_equal(got_X, X)
        assert got_y.dtype == np.int64
        np.testing.assert_array_equal(got_y, y)


# ---------------------------------------------------------------------------------------------------- CSV

INTEGER = re.compile(rb"[+-]?[0-9]+")
BOM = b"\xef\xbb\xbf"


def reference_csv(raw: bytes, image_shape: tuple[int, int]):
    """The Kaggle layout by the letter: ``(labels, images)``, or ``("error", row)`` where ``row`` is
    the first bad 1-based data row (None for a problem of the file or its header)."""
    data = gunzip(raw)
    if data is None:
        return "error", None
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    header = lines[0].removeprefix(BOM).removesuffix(b"\r") if lines else b""
    raw_names = lines[0].split(b",") if lines else []
    if not header.strip() or len(raw_names) > datasets.MAX_CSV_COLUMNS or \
            any(len(name) > datasets.MAX_HEADER_CELL_CHARS for name in raw_names):
        return "error", None
    try:
        names = [name.strip().strip('"') for name in header.decode("utf-8").split(",")]
    except UnicodeDecodeError:
        return "error", None
    n_pixels = math.prod(image_shape)
    if names != ["label"] + [f"pixel{j}" for j in range(1, n_pixels + 1)]:
        return "error", None
    rows = lines[1:]
    if not rows:
        return "error", None
    max_line = (n_pixels + 1) * (datasets.MAX_CELL_CHARS + 1)
    values = []
    for row, line in enumerate(rows, start=1):
        cells = line.removesuffix(b"\r").split(b",")
        if len(line) + 1 > max_line or len(cells) != n_pixels + 1:
            return "error", row
        literals = [cell.strip(b" \t") for cell in cells]
        if not all(INTEGER.fullmatch(literal) for literal in literals):
            return "error", row
        if len(literals[0].lstrip(b"+-").lstrip(b"0")) > 18:  # labels are int64, 18 digits at most
            return "error", row
        numbers = [int(literal) for literal in literals]
        if not all(0 <= p <= 255 for p in numbers[1:]):
            return "error", row
        values.append(numbers)
    values = np.array(values, dtype=np.int64)
    return values[:, 0], values[:, 1:].reshape(len(values), *image_shape)


@st.composite
def csv_files(draw) -> tuple[bytes, tuple[int, int], np.ndarray, np.ndarray]:
    """A valid CSV (bytes) in one of the accepted spellings, its image shape, labels and images."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    n = draw(st.integers(1, 4))
    labels = draw(st.lists(st.integers(-10**18 + 1, 10**18 - 1) | st.integers(0, 9), min_size=n, max_size=n))
    pixels = draw(st.lists(st.integers(0, 255), min_size=n * math.prod(shape), max_size=n * math.prod(shape)))
    style = draw(st.fixed_dictionaries({"space": st.booleans(), "plus": st.booleans(), "zeros": st.booleans(),
                                        "crlf": st.booleans(), "final": st.booleans(), "bom": st.booleans(),
                                        "quoted": st.booleans()}))

    def cell(value: int) -> str:
        text = str(abs(value))
        if style["zeros"]:
            text = "0" * draw(st.integers(0, 3)) + text
        sign = "-" if value < 0 else ("+" if style["plus"] and draw(st.booleans()) else "")
        pad = st.text(alphabet=" \t", max_size=2)
        return (draw(pad) + sign + text + draw(pad)) if style["space"] else sign + text

    names = ["label"] + [f"pixel{j}" for j in range(1, math.prod(shape) + 1)]
    header = ",".join(f'"{name}"' if style["quoted"] else name for name in names)
    end = "\r\n" if style["crlf"] else "\n"
    rows = [",".join(cell(v) for v in [labels[i], *pixels[i * math.prod(shape): (i + 1) * math.prod(shape)]])
            for i in range(n)]
    text = end.join([header, *rows]) + (end if style["final"] else "")
    data = (BOM if style["bom"] else b"") + text.encode()
    return data, shape, np.array(labels, dtype=np.int64), np.array(pixels, dtype=np.uint8).reshape(n, *shape)


CSV_INSERTS = st.sampled_from([".", "e", "1.0", "1e2", "True", "inf", "nan", "0x1F", " ", ",", "\n", "\r", "\r\n",
                               '"', "-", "+", "0", "9", "256", "\t", "\x00", "\u00e9", "\ufeff", "\u0663",
                               "9999999999999999999"]).map(str.encode) | st.binary(min_size=1, max_size=3)


@FUZZ
@given(case=csv_files(), data=st.data(), piece=PIECES, cell_chars=CELL_CHARS)
def test_csv_valid_or_one_data_error(tmp_path, case, data, piece, cell_chars):
    text, shape, labels, images = case
    raw = data.draw(maybe_gzipped(data.draw(damaged(text, inserts=CSV_INSERTS))))
    path = tmp_path / "fashion-mnist_train.csv"
    path.write_bytes(raw)
    if gunzip(raw) == text:  # undamaged: the reference must agree with the generator
        expected = reference_csv(raw, shape)
        np.testing.assert_array_equal(expected[0], labels)
        np.testing.assert_array_equal(expected[1], images)
    with pieces_of(piece, cell_chars):
        expected = reference_csv(raw, shape)
        got = outcome(path, datasets.read_csv_images, shape)
    if isinstance(expected[0], str):  # ("error", row)
        assert isinstance(got, DataError), f"accepted, but the reference refuses row {expected[1]}"
        if expected[1] is not None:
            row = expected[1]
            assert f": row {row} (line {row + 1})" in str(got), str(got)
    else:
        assert not isinstance(got, DataError), str(got)
        np.testing.assert_array_equal(got[1], expected[0])
        np.testing.assert_array_equal(got[0], expected[1])
        assert got[0].dtype == np.uint8 and got[1].dtype == np.int64


CSV_ALPHABET = st.sampled_from(list("0123456789,,,,\n\n\r \t+-.e\"x") + ["\u00e9", "\x00"])


@FUZZ
@given(body=st.text(alphabet=CSV_ALPHABET, max_size=120) | st.binary(max_size=120).map(
    lambda b: b.decode("latin-1")), with_header=st.booleans(), compress=st.booleans(), piece=PIECES)
def test_csv_random_text(tmp_path, body, with_header, compress, piece):
    text = ("label,pixel1,pixel2,pixel3,pixel4\n" if with_header else "") + body
    raw = text.encode("utf-8", "surrogatepass")
    raw = gzip.compress(raw, mtime=0) if compress else raw
    path = tmp_path / "test.csv.gz"
    path.write_bytes(raw)
    expected = reference_csv(raw, (2, 2))
    with pieces_of(piece):
        got = outcome(path, datasets.read_csv_images, (2, 2))
    if isinstance(expected[0], str):  # ("error", row)
        assert isinstance(got, DataError)
        if expected[1] is not None:
            assert f": row {expected[1]} (line {expected[1] + 1})" in str(got), str(got)
    else:
        np.testing.assert_array_equal(got[1], expected[0])
        np.testing.assert_array_equal(got[0], expected[1])


# ---------------------------------------------------------------------------------------------------- images

PNG_5x7 = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 7, 5, 8, 0, 0, 0, 0)
IMAGE_PREFIXES = [(".png", b""), (".png", b"\x89PNG\r\n\x1a\n"), (".png", PNG_5x7),
                  (".npy", b"\x93NUMPY\x01\x00"), (".npy", b"\x93NUMPY\x02\x00"),
                  (".npy", b"\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (5, 7), }")]


@settings(FUZZ, max_examples=100)
@given(prefix=st.sampled_from(IMAGE_PREFIXES), body=st.binary(max_size=200))
def test_image_file_random_bytes(tmp_path, prefix, body):
    suffix, head = prefix
    path = tmp_path / f"image{suffix}"
    path.write_bytes(head + body)
    got = outcome(path, read_image_file, (5, 7))
    assert isinstance(got, DataError) or (got.shape == (5, 7) and got.dtype == np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_reference_parsers_accept_what_they_should(tmp_path, compress):
    """The references themselves, on files written by hand (a check of the checker)."""
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = gzip.compress(idx_bytes(array)) if compress else idx_bytes(array)
    np.testing.assert_array_equal(reference_idx(raw), array)
    assert reference_idx(raw[:-1] if not compress else gzip.compress(idx_bytes(array) + b"\x00")) is None
    text = b"\xef\xbb\xbflabel, pixel1,pixel2\r\n 7,+0,255\r\n-3,1,2"
    labels, images = reference_csv(gzip.compress(text) if compress else text, (1, 2))
    np.testing.assert_array_equal(labels, [7, -3])
    np.testing.assert_array_equal(images, [[[0, 255]], [[1, 2]]])
    assert reference_csv(text + b"\n\n", (1, 2)) == ("error", 3)
    assert reference_csv(text.replace(b"255", b"1.0"), (1, 2)) == ("error", 1)
