"""Dataset readers: IDX and Kaggle-layout CSV files, and single images (PNG or .npy) to classify.

Readers validate at the boundary and raise ``DataError`` with one line naming the file and the problem.
They read in bounded pieces and check what a file declares before they allocate for it, so hostile
input (a gzip bomb, a 20 MB line, a 6000x6000 PNG) is refused after little more than the bytes a
well-formed file of the declared size holds, and no message quotes more than 80 characters of it.
"""

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from fmproto.pipeline.checks import DataError
from fmproto.pipeline.checks import data_error as _error
from fmproto.pipeline.checks import require_file as _require_file

PathLike = str | os.PathLike

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# The most bytes of arrays one reader returns: an IDX file's payload, or images (uint8) with their
# labels (int64) from an IDX pair or a CSV. The real train set takes 47,520,000. IDX headers that
# declare more are refused before anything is allocated; a CSV, as soon as its rows pass it.
MAX_DATA_BYTES = 512 * 1024**2
# The most pixels an image may have. Every stage that searches neighbours (dedup-check, knn-scaling,
# ann-index, evaluate's knn) fits a screening projection (fmproto.search.projection) on up to 8,192 rows and
# their n_pixels x n_pixels covariance: measured peak about 20 * 8192 * n_pixels + 16.5 * n_pixels**2
# bytes, 1.7 GB at 6,400 pixels (80x80), within the stages' 2 GiB memory limit (tests/data/test_datasets.py
# checks it); dedup-check's default tile (dedup.chunk 4096) then takes 0.4 GB. 256x256 images would
# need 71 GB. Refused at ingest, before the images are read.
MAX_IMAGE_PIXELS = 6_400
# CSV bounds: header columns (label + pixels), characters of one header name (quotes and spaces
# included), and characters a data line may take per declared column. An integer literal needs at
# most 20 (sign and 19 digits), so 32 leaves room for spaces and leading zeros; a longer line is
# refused as soon as that many bytes are read, without reading the rest of it.
MAX_CSV_COLUMNS = 100_000
MAX_HEADER_CELL_CHARS = 64
MAX_CELL_CHARS = 32

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
_INTEGER = re.compile(r"[+-]?\d+")
_CHUNK = 1 << 20  # bytes read (and inflated) at a time
_QUOTE = 80  # characters of offending content quoted in a message


class _Source:
    """A file read in bounded pieces, gunzipped on the fly when it starts with the bytes ``1f 8b``.

    Compression is detected from the content, not from the file name. Read errors become a
    ``DataError`` naming the file.
    """

    def __init__(self, path: PathLike):
        self.path = path
        _require_file(path)  # a FIFO or a device is named as such, not opened (a FIFO would wait for a writer)
        try:
            self._raw = open(path, "rb")
        except FileNotFoundError:
            raise _error(path, "file not found") from None
        except OSError as err:
            raise _error(path, f"cannot read ({err.strerror or err})") from None
        try:
            self.gz = self._raw.read(2) == _GZIP_MAGIC
            self._raw.seek(0)
            self.size = os.fstat(self._raw.fileno()).st_size  # of the file as stored
        except OSError as err:
            self._raw.close()
            raise _error(path, f"cannot read ({err.strerror or err})") from None
        # GzipFile inflates only as much as each read asks for, and reads concatenated members.
        self._file = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.gz else self._raw

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()
        self._raw.close()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (after gunzip); fewer only at the end of the file."""
        parts, left = [], n
        while left > 0:
            part = self._call(self._file.read, min(left, _CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def fill(self, out: np.ndarray) -> int:
        """Read into the uint8 array ``out`` in pieces; return how many bytes it got (fewer at the end)."""
        view, got = memoryview(out).cast("B"), 0
        while got < len(view):
            n = self._call(self._file.readinto, view[got: got + _CHUNK])
            if not n:
                break
            got += n
        return got

    def _call(self, read, arg):
        try:
            return read(arg)
        except _GZIP_ERRORS as err:  # gzip.BadGzipFile is an OSError: caught first
            raise _error(self.path, f"corrupt or truncated gzip ({_cut(str(err))})") from None
        except OSError as err:
            raise _error(self.path, f"cannot read ({err.strerror or err})") from None


def _cut(text: str) -> str:
    """At most ``_QUOTE`` characters of ``text``, ending ``...`` when cut."""
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


def _quote(text: str | bytes) -> str:
    """``repr`` of ``text`` (bytes decoded as UTF-8, bad bytes escaped), cut by ``_cut``."""
    if isinstance(text, bytes):
        text = text[: 4 * _QUOTE].decode("utf-8", "backslashreplace")
    return _cut(repr(text))


def _shape_text(shape: tuple[int, ...]) -> str:
    return _cut("x".join(map(str, shape)))


# ---------------------------------------------------------------------------------------------------- IDX


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzipped or plain.

    Compression is detected from the first two bytes (``1f 8b``), not from the file name. The
    header is read first; a payload over ``MAX_DATA_BYTES`` is refused before anything is allocated,
    and a gzip is inflated at most to the size its header declares plus one byte.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    ndarray of uint8, of the shape the header declares, e.g. ``(n, H, W)`` for idx3, ``(n,)`` for idx1.

    Raises
    ------
    DataError
        Missing or empty file, corrupt or truncated gzip, a magic number other than ``00 00 08 ndim``,
        a zero dimension, a declared payload over ``MAX_DATA_BYTES``, or a payload shorter or longer
        than the dimensions need.
    """
    with _Source(path) as src:
        dims = _idx_header(src)
        return _idx_payload(src, dims)


def read_idx_pair(images_path: PathLike, labels_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files.

    Both headers are checked (dimensions, counts, size) before either payload is read.

    Returns
    -------
    images : ndarray of shape (n, H, W), uint8
    labels : ndarray of shape (n,), int64

    Raises
    ------
    DataError
        Anything ``read_idx`` rejects, images that are not 3-D or of more than ``MAX_IMAGE_PIXELS``
        pixels, labels that are not 1-D, counts that disagree (named on the labels file), or images
        and their int64 labels together over ``MAX_DATA_BYTES``.
    """
    with _Source(images_path) as images_src, _Source(labels_path) as labels_src:
        image_dims = _idx_header(images_src)
        if len(image_dims) != 3:
            raise _error(images_path, f"images must be 3-D (n, H, W) idx3 data; got {len(image_dims)}-D "
                         f"{_shape_text(image_dims)}")
        label_dims = _idx_header(labels_src)
        if len(label_dims) != 1:
            raise _error(labels_path, f"labels must be 1-D (n,) idx1 data; got {len(label_dims)}-D "
                         f"{_shape_text(label_dims)}")
        n = image_dims[0]
        if label_dims[0] != n:
            raise _error(labels_path, f"{label_dims[0]} labels but {n} images in {os.fspath(images_path)}")
        _check_image_pixels(images_path, image_dims[1:])
        n_bytes = n * (image_dims[1] * image_dims[2] + 8)  # uint8 pixels and int64 labels
        if n_bytes > MAX_DATA_BYTES:
            raise _error(images_path, f"{n} images of {_shape_text(image_dims[1:])} and their int64 labels "
                         f"need {n_bytes:,} bytes, over the limit of {MAX_DATA_BYTES:,} (MAX_DATA_BYTES)")
        images = _idx_payload(images_src, image_dims)
        labels = _idx_payload(labels_src, label_dims)
    return images, labels.astype(np.int64)


def _check_image_pixels(path: PathLike, shape: tuple[int, ...]) -> None:
    """``DataError`` naming ``path`` for images of more than ``MAX_IMAGE_PIXELS`` pixels."""
    n_pixels = math.prod(shape)
    if n_pixels > MAX_IMAGE_PIXELS:
        raise _error(path, f"images of {_shape_text(shape)} ({n_pixels:,} pixels) are larger than the "
                     f"{MAX_IMAGE_PIXELS:,} pixels (e.g. 80x80) that the stages handle within their memory "
                     "limit (MAX_IMAGE_PIXELS)")


def _idx_header(src: _Source) -> tuple[int, ...]:
    """Read and check the magic number and dimensions; leave ``src`` at the first data byte."""
    path = src.path
    magic = src.read(4)
    if not magic:
        raise _error(path, "empty file (after gunzip)" if src.gz else "empty file")
    if len(magic) < 4:
        raise _error(path, f"{len(magic)} bytes is too short for an IDX header (4 bytes of magic)")
    if magic[:2] != b"\x00\x00":
        raise _error(path, f"not an IDX file: starts with 0x{magic[:2].hex().upper()}, expected 0x0000")
    type_code, ndim = magic[2], magic[3]
    if type_code != _IDX_UBYTE:
        raise _error(path, f"unsupported IDX type code 0x{type_code:02X} (only 0x08, unsigned byte, is supported)")
    if ndim == 0:
        raise _error(path, "IDX header declares 0 dimensions")
    raw_dims = src.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _error(path, f"truncated IDX header: {ndim} dimensions need {4 + 4 * ndim} bytes, "
                     f"file has {4 + len(raw_dims)}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    if 0 in dims:
        raise _error(path, f"IDX dimensions {_shape_text(dims)} include a 0")
    n_bytes = math.prod(dims)
    if n_bytes > MAX_DATA_BYTES:
        size = f"{n_bytes:,}" if n_bytes < 10**18 else f"about 1e{len(str(n_bytes)) - 1}"
        raise _error(path, f"IDX header declares dimensions {_shape_text(dims)}, {size} data bytes, "
                     f"over the limit of {MAX_DATA_BYTES:,} (MAX_DATA_BYTES); nothing read")
    return dims


def _idx_payload(src: _Source, dims: tuple[int, ...]) -> np.ndarray:
    """The ``prod(dims)`` data bytes after the header as an array of shape ``dims``; nothing may follow."""
    path, expected = src.path, math.prod(dims)
    header_len = 4 + 4 * len(dims)
    if not src.gz:  # a plain file's size is known: check it before allocating
        actual = src.size - header_len
        if actual < expected:
            raise _error(path, f"truncated: dimensions {_shape_text(dims)} need {expected} data bytes, "
                         f"file has {actual}")
        if actual > expected:
            raise _error(path, f"{actual - expected} trailing bytes after the {expected} data bytes of "
                         f"dimensions {_shape_text(dims)}")
    # np.empty takes pages only as they are written, so a truncated gzip costs what it inflated to.
    data = np.empty(expected, dtype=np.uint8)
    got = src.fill(data)
    if got < expected:
        raise _error(path, f"truncated: dimensions {_shape_text(dims)} need {expected} data bytes, "
                     f"file has {got}")
    if src.read(1):  # one byte past the declared size: the rest is never inflated
        raise _error(path, f"trailing bytes after the {expected} data bytes of dimensions {_shape_text(dims)} "
                     "(not inflated further)")
    return data.reshape(dims)


# ---------------------------------------------------------------------------------------------------- CSV images

_MAX_DIGITS = 18  # significant digits of a cell: 10**18 - 1 fits int64
_INTEGER_BYTES = re.compile(rb"[+-]?[0-9]+")
_BOM = b"\xef\xbb\xbf"
_CR, _LF, _COMMA, _ZERO = b"\r\n,0"


def read_csv_images(path: PathLike, image_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read images in the Kaggle CSV layout, plain or gzipped (detected from the first bytes).

    The header is exactly ``label,pixel1,...,pixelN`` (a UTF-8 byte-order mark, spaces and
    double quotes around names are allowed); every row holds a label and N pixels in 0..255,
    row-major, each a plain integer literal: optional spaces, an optional sign and decimal digits.
    ``1.0``, ``1e2``, ``0x1F``, ``True``, ``nan``, quoted or empty cells are refused. Lines end with
    ``\\n`` or ``\\r\\n``. The file is read in pieces of 1 MiB: a header of more than
    ``MAX_CSV_COLUMNS`` columns, or a data line longer than ``MAX_CELL_CHARS`` characters per
    column, is refused as soon as it is seen, without reading the rest of it.

    Parameters
    ----------
    path : str or PathLike
    image_shape : (H, W), optional
        Needed when N is not a square; ``H * W`` must equal N. Without it, ``H = W = sqrt(N)``.

    Returns
    -------
    images : ndarray of shape (n, H, W), uint8
    labels : ndarray of shape (n,), int64

    Raises
    ------
    DataError
        One line naming the file and, for a bad row, the 1-based data row, its file line and the
        column: empty file, missing, wrong or oversized header, no data rows, a row with missing or
        extra cells, a line too long, a cell that is not an integer literal, a label of more than 18
        digits, a pixel outside 0..255, rows past ``MAX_DATA_BYTES``, N not a square without
        ``image_shape``, ``image_shape`` not matching N, or N over ``MAX_IMAGE_PIXELS``.
    """
    path = _require_file(path)
    with _Source(path) as src:
        header, rest = _csv_header(src)
        names = _check_csv_header(path, header)
        shape = _csv_image_shape(path, len(names) - 1, image_shape)
        _check_image_pixels(path, shape)
        labels, pixels = _csv_rows(src, rest, names)
    return pixels.reshape(len(pixels), *shape), labels


def _csv_header(src: _Source) -> tuple[str, bytes]:
    """The header line (decoded, without byte-order mark and line end) and the bytes read past it.

    Read in pieces; refused as soon as it has more than ``MAX_CSV_COLUMNS`` columns or a name
    longer than ``MAX_HEADER_CELL_CHARS``, so a header line of any length costs at most about
    ``MAX_CSV_COLUMNS * MAX_HEADER_CELL_CHARS`` bytes.
    """
    line, n_commas = bytearray(), 0
    while True:
        piece = src.read(1 << 16)
        end = piece.find(b"\n")
        new = piece if end < 0 else piece[:end]
        cell_start = line.rfind(b",") + 1  # the name that continues into this piece starts here
        line += new
        n_commas += new.count(b",")
        if n_commas + 1 > MAX_CSV_COLUMNS:
            raise _error(src.path, f"header has more than {MAX_CSV_COLUMNS:,} columns (MAX_CSV_COLUMNS); "
                         f"starts {_quote(bytes(line[:_QUOTE]))}")
        longest = max(bytes(line[cell_start:]).split(b","), key=len)
        if len(longest) > MAX_HEADER_CELL_CHARS:
            column = line.count(b",", 0, line.find(longest, cell_start)) + 1
            raise _error(src.path, f"header column {column} is longer than {MAX_HEADER_CELL_CHARS} characters: "
                         f"{_quote(longest)}")
        if end >= 0 or not piece:
            break
    rest = piece[end + 1:] if end >= 0 else b""
    line = bytes(line).removeprefix(_BOM).removesuffix(b"\r")
    if not line.strip():
        if end < 0 or not (rest or src.read(1)):
            raise _error(src.path, "empty file")
        raise _error(src.path, "line 1 is blank; expected the header 'label,pixel1,...,pixelN'")
    try:
        return line.decode("utf-8"), rest
    except UnicodeDecodeError:
        raise _error(src.path, "not a text CSV file (invalid UTF-8)") from None


def _check_csv_header(path: Path, header: str) -> list[str]:
    names = [cell.strip().strip('"') for cell in header.split(",")]
    if _INTEGER.fullmatch(names[0]):
        raise _error(path, f"missing header: line 1 starts with the number {names[0]}; "
                     "expected 'label,pixel1,...,pixelN'")
    if len(names) < 2:
        raise _error(path, f"header {_quote(header)} has no pixel columns; expected 'label,pixel1,...,pixelN'")
    expected = ["label"] + [f"pixel{j}" for j in range(1, len(names))]
    for column, (name, want) in enumerate(zip(names, expected), start=1):
        if name != want:
            raise _error(path, f"header column {column} is {_quote(name)}, expected {want!r} "
                         "(layout 'label,pixel1,...,pixelN')")
    return names


def _csv_image_shape(path: Path, n_pixels: int, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    if image_shape is not None:
        shape = _check_image_shape(image_shape)
        if math.prod(shape) != n_pixels:
            raise _error(path, f"image_shape {_shape_text(shape)} needs {math.prod(shape)} pixel columns "
                         f"but the header has {n_pixels}")
        return shape
    side = math.isqrt(n_pixels)
    if side * side != n_pixels:
        raise _error(path, f"{n_pixels} pixel columns is not a square number; give image_shape (height, width)")
    return side, side


def _check_image_shape(image_shape) -> tuple[int, int]:
    shape = tuple(image_shape)
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (height, width) of positive ints; got {image_shape!r}")
    return int(shape[0]), int(shape[1])


def _csv_rows(src: _Source, rest: bytes, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` int64 and pixels ``(n, N)`` uint8 of the data lines, read in pieces.

    Each piece's complete lines are checked and parsed at once (``_csv_block``); the incomplete
    last line is carried to the next piece, and refused once it is longer than any valid line.
    """
    max_line = len(names) * (MAX_CELL_CHARS + 1)  # cells, commas and the line end
    row_bytes = len(names) - 1 + 8  # uint8 pixels and an int64 label
    labels, pixels, n_rows, carry = [], [], 0, rest
    while True:
        piece = src.read(_CHUNK)
        buf = carry + piece
        cut = buf.rfind(b"\n") + 1 if piece else len(buf)
        block, carry = buf[:cut], buf[cut:]
        if block:
            if not block.endswith(b"\n"):  # the last line of a file without a final line end
                block += b"\n"
            block_labels, block_pixels = _csv_block(src.path, block, names, n_rows, max_line)
            labels.append(block_labels)
            pixels.append(block_pixels)
            n_rows += len(block_labels)
            if n_rows * row_bytes > MAX_DATA_BYTES:
                raise _error(src.path, f"rows 1 to {n_rows} take {n_rows * row_bytes:,} bytes as images and "
                             f"int64 labels, over the limit of {MAX_DATA_BYTES:,} (MAX_DATA_BYTES)")
        if len(carry) >= max_line:  # with its line end, longer than max_line
            raise _csv_row_error(src.path, n_rows + 1, _csv_line_problem(names, carry, max_line))
        if not piece:
            break
    if not n_rows:
        raise _error(src.path, "header but no data rows")
    return _stack(labels), _stack(pixels)


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(parts)``, freeing each part once copied: the peak is the result and one part,
    as ``np.empty`` takes pages only when they are written."""
    out = np.empty((sum(map(len, parts)), *parts[0].shape[1:]), dtype=parts[0].dtype)
    start = 0
    for i, part in enumerate(parts):
        out[start: start + len(part)] = part
        start += len(part)
        parts[i] = None
    return out


def _csv_block(path: Path, block: bytes, names: list[str], row0: int,
               max_line: int) -> tuple[np.ndarray, np.ndarray]:
    """Check and parse complete data lines (``block`` ends with ``\\n``); rows count from ``row0 + 1``.

    The vectorised pass only knows that some line is bad; the first one is then found and
    explained on its raw bytes by ``_csv_line_problem``.
    """
    a = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(a == _LF)  # one per line
    starts = np.r_[0, ends[:-1] + 1]
    parsed = _parse_lines(a, len(ends), len(names)) if ((ends - starts) < max_line).all() else None
    if parsed is not None:
        values, too_big = parsed
        pixels = values[:, 1:]
        bad = too_big.any(axis=1) | ((pixels < 0) | (pixels > 255)).any(axis=1)
        if not bad.any():
            return values[:, 0].copy(), pixels.astype(np.uint8)
        starts, ends = starts[bad], ends[bad]  # only these need explaining
        row0 += int(np.flatnonzero(bad)[0])
    for row, (start, end) in enumerate(zip(starts, ends), start=row0 + 1):
        problem = _csv_line_problem(names, block[start:end], max_line)
        if problem:
            raise _csv_row_error(path, row, problem)
    raise _error(path, f"rows {row0 + 1} to {row0 + len(ends)} could not be read as integers")


def _parse_lines(a: np.ndarray, n_lines: int, n_cols: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Values ``(n_lines, n_cols)`` int64 and which cells have over 18 significant digits (their
    values are junk), or None unless every line is ``n_cols`` integer literals.

    ``a``: the bytes of whole lines, ending with ``\\n``. A literal is spaces, an optional sign,
    digits, spaces (``\\r`` only just before ``\\n``). Spaces and ``+`` signs carry no value, so they
    are dropped once checked, leaving digits, commas and line ends; each cell's digits are then
    summed with the powers of ten of their places, counted back from the byte that ends the cell.
    """
    cr = np.flatnonzero(a == _CR)
    if len(cr) and not (a[cr + 1] == _LF).all():
        return None
    space = (a == ord(" ")) | (a == ord("\t")) | (a == _CR)
    if space.any():
        after_space = np.r_[False, space[:-1]][~space]
        a = a[~space]
        token = ((a - _ZERO) < 10) | (a == ord("+")) | (a == ord("-"))  # uint8 wraps below "0"
        if (token & after_space & np.r_[False, token[:-1]]).any():  # "1 2", "- 1": a space inside
            return None
    minus = a == ord("-")
    sign = minus | (a == ord("+"))
    if sign.any():
        after_separator = np.r_[True, (a[:-1] == _COMMA) | (a[:-1] == _LF)]
        before_digit = np.r_[(a[1:] - _ZERO) < 10, False]
        if not (after_separator & before_digit)[sign].all():  # one sign, first, then digits
            return None
        negative = np.r_[False, minus[:-1]][~sign]  # the first digit of a negative cell
        a = a[~sign]
    ends = np.flatnonzero((a - _ZERO) >= 10)  # the byte after each cell: any non-digit
    if len(ends) != n_lines * n_cols or not (a[ends[n_cols - 1:: n_cols]] == _LF).all():
        return None
    if np.count_nonzero(a[ends] == _COMMA) != n_lines * (n_cols - 1):  # a separator other than ","
        return None
    widths = np.diff(ends, prepend=-1) - 1
    if widths.min(initial=1) < 1:  # an empty cell
        return None
    values = np.zeros(len(ends), dtype=np.int64)
    for place in range(1, min(int(widths.max(initial=0)), _MAX_DIGITS) + 1):  # units first
        has = np.flatnonzero(widths >= place)
        values[has] += (a[ends[has] - place].astype(np.int64) - _ZERO) * 10 ** (place - 1)
    too_big = np.zeros(len(ends), dtype=bool)
    for cell in np.flatnonzero(widths > _MAX_DIGITS):  # leading zeros, or a number too big
        too_big[cell] = (a[ends[cell] - widths[cell]: ends[cell] - _MAX_DIGITS] != _ZERO).any()
    if sign.any():
        values[np.searchsorted(ends, np.flatnonzero(negative))] *= -1
    return values.reshape(n_lines, n_cols), too_big.reshape(n_lines, n_cols)


def _csv_line_problem(names: list[str], line: bytes, max_line: int) -> str | None:
    """What is wrong with one data line (its bytes without ``\\n``), or None if it is fine.

    ``line`` may be only the first ``max_line`` bytes or more of a line too long to read whole.
    """
    if len(line) + 1 > max_line:
        return (f"is longer than {max_line:,} characters ({len(names)} cells of at most {MAX_CELL_CHARS}); "
                f"starts {_quote(line[:_QUOTE])}")
    text = line.removesuffix(b"\r")
    if not text.strip():
        return f"is blank; expected {len(names)} cells"
    cells = text.split(b",")
    if len(cells) != len(names):
        kind = "missing" if len(cells) < len(names) else "extra"
        hint = "; a '\\r' inside it does not end a line" if b"\r" in text else ""
        return (f"has {len(cells)} cells, expected {len(names)} (label + {len(names) - 1} pixels): "
                f"{kind} cells{hint}")
    for name, cell in zip(names, cells):
        literal = cell.strip(b" \t")
        if not _INTEGER_BYTES.fullmatch(literal):
            return f", column {name}: {_quote(cell)} is not an integer"
        if len(literal.lstrip(b"+-").lstrip(b"0")) > _MAX_DIGITS:
            if name == "label":
                return f", column label: label {_cut(literal.decode())} has more than {_MAX_DIGITS} digits"
            return f", column {name}: pixel {_cut(literal.decode())} outside 0..255"
        if name != "label" and not 0 <= int(literal) <= 255:
            return f", column {name}: pixel {int(literal)} outside 0..255"
    return None


def _csv_row_error(path: Path, row: int, problem: str) -> DataError:
    """``DataError`` for 1-based data row ``row``; ``problem`` follows ``row r (line l)``."""
    return _error(path, f"row {row} (line {row + 1})" + ("" if problem.startswith(",") else " ") + problem)


# ---------------------------------------------------------------------------------------------------- datasets


def find_dataset(directory: PathLike) -> dict:
    """Locate a dataset in ``directory``: the four IDX files, or else one train and one test CSV.

    IDX files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``, each plain or with ``.gz``. CSVs are the one file whose name
    contains ``train`` and the one containing ``test`` (case-insensitive), ending ``.csv`` or ``.csv.gz``.

    Returns
    -------
    dict
        ``{"format": "idx", "train": (images_path, labels_path), "test": (images_path, labels_path)}``
        or ``{"format": "csv", "train": path, "test": path}``, with ``Path`` values.

    Raises
    ------
    DataError
        The folder is missing, holds neither layout, holds only part of the IDX set (the missing
        names are listed) or a file both plain and gzipped, or several CSV candidates for a split.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise _error(directory, "dataset folder not found" if not directory.exists() else "not a folder")

    found_idx, missing = {}, []
    for base in (name for pair in IDX_NAMES.values() for name in pair):
        present = [p for p in (directory / base, directory / f"{base}.gz") if os.path.lexists(p)]  # a FIFO too: read_idx names it
        if len(present) == 2:
            raise _error(directory, f"both {base} and {base}.gz are present; keep one")
        if present:
            found_idx[base] = present[0]
        else:
            missing.append(f"{base}[.gz]")
    if found_idx and missing:
        raise _error(directory, f"incomplete IDX dataset: missing {', '.join(missing)}")
    if found_idx:
        return {"format": "idx", **{split: tuple(found_idx[n] for n in names) for split, names in IDX_NAMES.items()}}

    csvs = sorted(p for p in directory.iterdir() if not p.is_dir() and p.name.lower().endswith((".csv", ".csv.gz")))
    candidates = {split: [p for p in csvs if split in p.name.lower()] for split in ("train", "test")}
    if not csvs or not any(candidates.values()):
        raise _error(directory, "no dataset found: expected the four IDX files "
                     f"({', '.join(n for pair in IDX_NAMES.values() for n in pair)}, each [.gz]) "
                     "or one *train*.csv and one *test*.csv (or .csv.gz)")
    for split, paths in candidates.items():
        if not paths:
            raise _error(directory, f"no *{split}*.csv (or .csv.gz) next to {_paths_text(csvs)}")
        if len(paths) > 1:
            raise _error(directory, f"several {split} CSV candidates: {_paths_text(paths)}; keep one")
    if candidates["train"][0] == candidates["test"][0]:
        raise _error(candidates["train"][0], "name matches both *train* and *test*; rename it")
    return {"format": "csv", "train": candidates["train"][0], "test": candidates["test"][0]}


def _paths_text(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths)


def read_dataset_split(
    found: dict, split: Literal["train", "test"], image_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of a dataset located by ``find_dataset``.

    Parameters
    ----------
    found : dict
        As returned by ``find_dataset``.
    split : {"train", "test"}
    image_shape : (H, W), optional
        Needed for CSVs with non-square images. IDX files carry their own shape; when given,
        it must agree with it.

    Returns
    -------
    images : ndarray of shape (n, H, W), uint8
    labels : ndarray of shape (n,), int64
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if found.get("format") == "csv":
        return read_csv_images(found[split], image_shape)
    if found.get("format") != "idx":
        raise ValueError(f"found['format'] must be 'idx' or 'csv'; got {found.get('format')!r}")
    images, labels = read_idx_pair(*found[split])
    if image_shape is not None and images.shape[1:] != _check_image_shape(image_shape):
        raise _error(found[split][0], f"images are {_shape_text(images.shape[1:])} but image_shape is "
                     f"{_shape_text(_check_image_shape(image_shape))}")
    return images, labels


def check_labels(labels: np.ndarray, n_classes: int, source: PathLike) -> None:
    """Raise ``DataError`` naming ``source`` unless every label is an integer in ``0..n_classes - 1``.

    Parameters
    ----------
    labels : ndarray of shape (n,)
    n_classes : int
    source : str or PathLike
        The file the labels came from, for the message.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise _error(source, f"labels must be 1-D integers; got {labels.dtype} of shape {labels.shape}")
    outside = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if outside.size:
        first = outside[0]
        raise _error(source, f"label {labels[first]} outside the {n_classes} classes (0..{n_classes - 1}) "
                     f"at index {first}; {outside.size} labels out of range")


# ---------------------------------------------------------------------------------------------------- images

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A PNG of an HxW image: 16-bit RGBA pixels stored raw are 8 H W bytes plus a byte a row; the rest
# (metadata chunks, an ICC profile) gets 1 MiB. A larger file is refused before any chunk is read.
_PNG_SLACK = 1 << 20


def read_image_file(path: PathLike, image_shape: tuple[int, int]) -> np.ndarray:
    """Read one image to classify: a PNG or a ``.npy`` array.

    The size is checked before anything is decoded: a PNG's from its IHDR chunk, a ``.npy``'s shape
    and dtype from its header. PNGs are read with ``matplotlib.image.imread``; colour is turned to
    grey with the ITU-R 601 luma weights (as PIL's ``"L"`` mode), and alpha composites over black,
    the Fashion-MNIST background. ``.npy`` arrays must hold whole numbers in 0..255.

    Parameters
    ----------
    path : str or PathLike
        Ending ``.png`` or ``.npy`` (any case).
    image_shape : (H, W)
        The dataset's image size; the file must match it.

    Returns
    -------
    ndarray of shape (H, W), uint8
    """
    path = _require_file(path)
    shape = _check_image_shape(image_shape)
    suffix = path.suffix.lower()
    if suffix == ".png":
        _check_size(path, _png_size(path), shape)
        limit = _PNG_SLACK + shape[0] * (8 * shape[1] + 1)
        size = path.stat().st_size
        if size > limit:
            raise _error(path, f"is {size:,} bytes, more than a PNG of a {_shape_text(shape)} image needs "
                               f"(at most {limit:,}); not decoded")
        image = _read_png_grey(path)
    elif suffix == ".npy":
        _check_size(path, _npy_shape(path), shape)
        try:
            image = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise _error(path, f"not a readable .npy file ({err})") from None
        if image.size and not (np.all(image == np.round(image)) and image.min() >= 0 and image.max() <= 255):
            raise _error(path, "array values must be whole numbers in 0..255")
    else:
        raise _error(path, f"unsupported image file type {_quote(path.suffix)} (use .png or .npy)")
    _check_size(path, image.shape, shape)
    return image.astype(np.uint8)


def _check_size(path: Path, got: tuple[int, ...], shape: tuple[int, int]) -> None:
    if got != shape:
        size = _shape_text(got) if len(got) == 2 else _cut(f"an array of shape {got}")
        raise _error(path, f"image is {size} but the dataset's images are {_shape_text(shape)}")


def _png_size(path: Path) -> tuple[int, int]:
    """(height, width) from the IHDR chunk, the first after the 8-byte signature."""
    try:
        with path.open("rb") as f:
            head = f.read(24)  # signature, chunk length, "IHDR", width, height (big-endian)
    except OSError as err:
        raise _error(path, f"cannot read ({err.strerror or err})") from None
    if head[:8] != _PNG_SIGNATURE:
        raise _error(path, "not a readable PNG (no PNG signature)")
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise _error(path, "not a readable PNG (no IHDR chunk after the signature)")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The shape in a ``.npy`` header, after checking its dtype is numbers; the data is not read."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
    except (ValueError, TypeError, OSError, EOFError) as err:  # numpy raises these for a bad header
        raise _error(path, f"not a readable .npy file ({_cut(str(err))})") from None
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise _error(path, f"array has dtype {_cut(str(dtype))}; expected numbers 0..255")
    return tuple(shape)


def _read_png_grey(path: Path) -> np.ndarray:
    """PNG as grey levels, float in 0..255, shape (H, W)."""
    from matplotlib import image as mpimg  # only the explain CLI reads pictures; keep import light

    try:
        pixels = mpimg.imread(path, format="png")
    except Exception as err:  # PIL raises several unrelated types for a bad file
        raise _error(path, f"not a readable PNG ({type(err).__name__}: {_cut(str(err))})") from None
    # matplotlib gives floats in 0..1 for PNGs; integer arrays would already be 0..255.
    scale = 255.0 if np.issubdtype(pixels.dtype, np.floating) else 1.0
    pixels = pixels.astype(np.float64) * scale
    if pixels.ndim == 3:
        if pixels.shape[2] in (2, 4):  # grey+alpha or RGBA: composite over black
            pixels = pixels[..., :-1] * (pixels[..., -1:] / 255.0)
        pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels[..., :3] @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(pixels), 0, 255)


def read_dataset(
    directory: PathLike, n_classes: int, image_shape: tuple[int, int] | None = None,
    class_names: list[str] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of the dataset in ``directory``: ``{"train": (images, labels), "test": (images, labels)}``.

    Labels are checked against ``n_classes`` (named on the file they came from), every class must
    have training images (``check_every_class``; the test set may lack a class), and the two
    splits must share one image shape. ``class_names`` (``n_classes`` of them) name the classes in
    messages.
    """
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names must hold n_classes ({n_classes}) names; got {len(class_names)}")
    found = find_dataset(directory)
    splits = {}
    for name in ("train", "test"):
        images, labels = read_dataset_split(found, name, image_shape=image_shape)
        source = found[name][-1] if found["format"] == "idx" else found[name]
        check_labels(labels, n_classes, source=source)
        if name == "train":
            check_every_class(labels, n_classes, source, class_names)
        splits[name] = (images, labels)
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise _error(directory, f"train images are {_shape_text(splits['train'][0].shape[1:])} "
                     f"but test images are {_shape_text(splits['test'][0].shape[1:])}")
    return splits


def check_every_class(labels: np.ndarray, n_classes: int, source: PathLike,
                      class_names: list[str] | None = None) -> None:
    """Raise ``DataError`` naming ``source`` and the first class without images among ``labels``.

    Parameters
    ----------
    labels : ndarray of shape (n,), ints in ``0..n_classes-1``
    n_classes : int
    source : str or PathLike
        The file the labels came from, for the message.
    class_names : list of str, optional
        Names in label order: ``"...: class 'Dress' (label 3) has no images; ..."``; without them
        ``"...: class 3 has no images; ..."``.
    """
    counts = np.bincount(np.asarray(labels), minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        first = int(empty[0])
        what = f"class {_cut(repr(class_names[first]))} (label {first})" if class_names else f"class {first}"
        more = f" ({len(empty) - 1} more classes have none)" if len(empty) > 1 else ""
        raise _error(source, f"{what} has no images{more}; every class needs at least one training image")
