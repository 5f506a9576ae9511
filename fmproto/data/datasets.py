"""IDX and Kaggle-layout CSV readers, plain or gzipped (``fmproto.data.folder`` finds them in a dataset folder).

Bad input raises one ``DataError`` line naming the file (and CSV row and column), quoting at most 80 characters;
headers are checked before allocating, so a gzip bomb or a 20 MB line costs little more than a valid file."""

import gzip
import io
import math
import os
import re
import struct
import zlib
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from fmproto.pipeline.checks import DataError, data_error as _error, require_file as _require_file

PathLike = str | os.PathLike

MAX_DATA_BYTES = 512 * 1024**2  # most bytes a reader returns: uint8 images, int64 labels (real train: 47,520,000)
# Neighbour searches fit a projection on up to 8,192 rows, 20 * 8192 * p + 16.5 * p**2 bytes: 1.7 GB at 80x80 (tested).
MAX_IMAGE_PIXELS = 6_400
# CSV bounds: columns, characters of a header name, characters per column of a data line (an int64 needs 20).
MAX_CSV_COLUMNS, MAX_HEADER_CELL_CHARS, MAX_CELL_CHARS = 100_000, 64, 32
CHUNK_BYTES = 1 << 20  # read (and inflated) at a time
_QUOTE = 80  # characters of offending content quoted in a message


@contextmanager
def _open(path: PathLike):
    """``(file, gz)``: ``path``, gunzipped only as far as it is read when its content starts ``1f 8b``."""
    _require_file(path)  # a FIFO is named, not opened: it would wait for a writer
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise _error(path, f"cannot read ({err.strerror or err})") from None
    with raw:
        gz = _read(path, raw, 2) == b"\x1f\x8b"
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw) if gz else nullcontext(raw) as f:
            yield f, gz


def _fill(path: PathLike, f, out: np.ndarray) -> int:
    """Read into the uint8 array ``out``, ``CHUNK_BYTES`` at a time; return how many bytes it got."""
    view, got = memoryview(out).cast("B"), 0
    try:
        while got < len(view) and (n := f.readinto(view[got: got + CHUNK_BYTES])):
            got += n
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # gzip.BadGzipFile is an OSError: caught first
        raise _error(path, f"corrupt or truncated gzip ({cut(str(err))})") from None
    except OSError as err:
        raise _error(path, f"cannot read ({err.strerror or err})") from None
    return got


def _read(path: PathLike, f, n: int) -> bytes:
    out = np.empty(n, np.uint8)  # fewer than n bytes only at the end of the file
    return out[: _fill(path, f, out)].tobytes()


def cut(text: str) -> str:
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


def _quote(text: str | bytes) -> str:
    """``repr`` of ``text`` (bytes as UTF-8, bad bytes escaped), cut to 80 characters."""
    if isinstance(text, bytes):
        text = text[: 4 * _QUOTE].decode("utf-8", "backslashreplace")
    return cut(repr(text))


def shape_text(shape: tuple[int, ...]) -> str:
    return cut("x".join(map(str, shape)))


def read_idx(path: PathLike) -> np.ndarray:
    """IDX unsigned bytes (type 0x08), gzipped or plain (told by content): uint8 of the declared shape. Refused:
    a payload not as declared or over ``MAX_DATA_BYTES`` (from the header; gzip inflated at most a byte past)."""
    with _open(path) as (f, gz):
        return _idx_payload(path, f, gz, _idx_header(path, f, gz))


def read_idx_pair(images_path: PathLike, labels_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Matching IDX images ``(n, H, W)`` uint8 and labels ``(n,)`` int64, both headers checked first: counts
    must agree (else named on the labels), images within ``MAX_IMAGE_PIXELS``, both within ``MAX_DATA_BYTES``."""
    with _open(images_path) as (images_file, images_gz), _open(labels_path) as (labels_file, labels_gz):
        image_dims = _idx_header(images_path, images_file, images_gz)
        if len(image_dims) != 3:
            raise _error(images_path, f"images must be 3-D (n, H, W) idx3 data; got {len(image_dims)}-D "
                         f"{shape_text(image_dims)}")
        label_dims = _idx_header(labels_path, labels_file, labels_gz)
        if len(label_dims) != 1:
            raise _error(labels_path, f"labels must be 1-D (n,) idx1 data; got {len(label_dims)}-D "
                         f"{shape_text(label_dims)}")
        n = image_dims[0]
        if label_dims[0] != n:
            raise _error(labels_path, f"{label_dims[0]} labels but {n} images in {os.fspath(images_path)}")
        _check_image_pixels(images_path, image_dims[1:])
        n_bytes = n * (image_dims[1] * image_dims[2] + 8)
        if n_bytes > MAX_DATA_BYTES:
            raise _error(images_path, f"{n} images of {shape_text(image_dims[1:])} and their int64 labels "
                         f"need {n_bytes:,} bytes, over the limit of {MAX_DATA_BYTES:,} (MAX_DATA_BYTES)")
        images = _idx_payload(images_path, images_file, images_gz, image_dims)
        labels = _idx_payload(labels_path, labels_file, labels_gz, label_dims)
    return images, labels.astype(np.int64)


def _check_image_pixels(path: PathLike, shape: tuple[int, ...]) -> None:
    n_pixels = math.prod(shape)
    if n_pixels > MAX_IMAGE_PIXELS:
        raise _error(path, f"images of {shape_text(shape)} ({n_pixels:,} pixels) are larger than the "
                     f"{MAX_IMAGE_PIXELS:,} pixels (e.g. 80x80) that the stages handle within their memory "
                     "limit (MAX_IMAGE_PIXELS)")


def _idx_header(path: PathLike, f, gz: bool) -> tuple[int, ...]:
    """The checked dimensions; leaves ``f`` at the first data byte."""
    magic = _read(path, f, 4)
    if not magic:
        raise _error(path, "empty file (after gunzip)" if gz else "empty file")
    if len(magic) < 4:
        raise _error(path, f"{len(magic)} bytes is too short for an IDX header (4 bytes of magic)")
    if magic[:2] != b"\x00\x00":
        raise _error(path, f"not an IDX file: starts with 0x{magic[:2].hex().upper()}, expected 0x0000")
    type_code, ndim = magic[2], magic[3]
    if type_code != 0x08:
        raise _error(path, f"unsupported IDX type code 0x{type_code:02X} (only 0x08, unsigned byte, is supported)")
    if ndim == 0:
        raise _error(path, "IDX header declares 0 dimensions")
    raw_dims = _read(path, f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _error(path, f"truncated IDX header: {ndim} dimensions need {4 + 4 * ndim} bytes, "
                     f"file has {4 + len(raw_dims)}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    if 0 in dims:
        raise _error(path, f"IDX dimensions {shape_text(dims)} include a 0")
    n_bytes = math.prod(dims)
    if n_bytes > MAX_DATA_BYTES:
        size = f"{n_bytes:,}" if n_bytes < 10**18 else f"about 1e{len(str(n_bytes)) - 1}"
        raise _error(path, f"IDX header declares dimensions {shape_text(dims)}, {size} data bytes, "
                     f"over the limit of {MAX_DATA_BYTES:,} (MAX_DATA_BYTES); nothing read")
    return dims


def _idx_payload(path: PathLike, f, gz: bool, dims: tuple[int, ...]) -> np.ndarray:
    """The ``prod(dims)`` bytes after the header, shaped ``dims``; nothing may follow them."""
    expected, shape = math.prod(dims), shape_text(dims)
    truncated = f"truncated: dimensions {shape} need {expected} data bytes, file has "
    actual = -1 if gz else os.fstat(f.fileno()).st_size - 4 - 4 * len(dims)  # a plain file's, before allocating
    if 0 <= actual < expected:
        raise _error(path, f"{truncated}{actual}")
    if actual > expected:
        raise _error(path, f"{actual - expected} trailing bytes after the {expected} data bytes of dimensions {shape}")
    data = np.empty(expected, dtype=np.uint8)  # pages are taken as written: a truncated gzip costs what it held
    if (got := _fill(path, f, data)) < expected:
        raise _error(path, f"{truncated}{got}")
    if _read(path, f, 1):  # the rest is never inflated
        raise _error(path, f"trailing bytes after the {expected} data bytes of dimensions {shape} "
                     "(not inflated further)")
    return data.reshape(dims)


_MAX_DIGITS = 18  # significant digits of a label: 10**18 - 1 fits int64
_INTEGER = re.compile(rb"[+-]?[0-9]+")
_LF, _CR, _COMMA = b"\n\r,"
_CELL_BYTES = np.zeros(256, bool)  # all that lines of integer literals hold
_CELL_BYTES[list(b"0123456789+- \t,\r\n")] = True


def read_csv_images(path: PathLike, image_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, H, W)`` uint8 and labels ``(n,)`` int64 from a Kaggle-layout CSV: header ``label,pixel1,...,
    pixelN`` (BOM, spaces, quoted names allowed), rows of N + 1 integer literals (no ``1.0``, ``nan``, quotes or
    empty cells): pixels 0..255, labels of at most 18 digits. ``image_shape`` (H, W) when N is not a square."""
    path = _require_file(path)
    with _open(path) as (f, _):
        names, rest = _csv_header(path, f)
        n_pixels, side = len(names) - 1, math.isqrt(len(names) - 1)
        if image_shape is None and side * side != n_pixels:
            raise _error(path, f"{n_pixels} pixel columns is not a square number; give image_shape (height, width)")
        shape = (side, side) if image_shape is None else check_image_shape(image_shape)
        if math.prod(shape) != n_pixels:
            raise _error(path, f"image_shape {shape_text(shape)} needs {math.prod(shape)} pixel columns "
                         f"but the header has {n_pixels}")
        _check_image_pixels(path, shape)
        labels, pixels = _csv_rows(path, f, rest, names)
    return pixels.reshape(len(pixels), *shape), labels


def check_image_shape(image_shape) -> tuple[int, int]:
    shape = tuple(image_shape)
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (height, width) of positive ints; got {image_shape!r}")
    return int(shape[0]), int(shape[1])


def _csv_header(path: Path, f) -> tuple[list[str], bytes]:
    """The checked column names and the bytes read past the header line. Not pandas: read_csv(nrows=0) on a 21 MB
    header of 3 million columns still ran after 5 minutes at 490 MB; this stops past MAX_CSV_COLUMNS in 10 MB."""
    line, n_commas = bytearray(), 0
    while True:
        piece = _read(path, f, 1 << 16)
        end = piece.find(b"\n")
        new = piece if end < 0 else piece[:end]
        cell_start = line.rfind(b",") + 1  # the name that continues into this piece
        line += new
        n_commas += new.count(b",")
        if n_commas + 1 > MAX_CSV_COLUMNS:
            raise _error(path, f"header has more than {MAX_CSV_COLUMNS:,} columns (MAX_CSV_COLUMNS); "
                         f"starts {_quote(bytes(line[:_QUOTE]))}")
        longest = max(bytes(line[cell_start:]).split(b","), key=len)
        if len(longest) > MAX_HEADER_CELL_CHARS:
            column = line.count(b",", 0, line.find(longest, cell_start)) + 1
            raise _error(path, f"header column {column} is longer than {MAX_HEADER_CELL_CHARS} characters: "
                         f"{_quote(longest)}")
        if end >= 0 or not piece:
            break
    rest = piece[end + 1:] if end >= 0 else b""
    line = bytes(line).removeprefix(b"\xef\xbb\xbf").removesuffix(b"\r")
    if not line.strip():
        if end < 0 or not (rest or _read(path, f, 1)):
            raise _error(path, "empty file")
        raise _error(path, "line 1 is blank; expected the header 'label,pixel1,...,pixelN'")
    try:
        names = [cell.strip().strip('"') for cell in line.decode("utf-8").split(",")]
    except UnicodeDecodeError:
        raise _error(path, "not a text CSV file (invalid UTF-8)") from None
    if re.fullmatch(r"[+-]?\d+", names[0]):
        raise _error(path, f"missing header: line 1 starts with the number {names[0]}; "
                     "expected 'label,pixel1,...,pixelN'")
    if len(names) < 2:
        raise _error(path, f"header {_quote(line.decode())} has no pixel columns; expected 'label,pixel1,...,pixelN'")
    for column, (name, want) in enumerate(zip(names, ["label"] + [f"pixel{j}" for j in range(1, len(names))]), 1):
        if name != want:
            raise _error(path, f"header column {column} is {_quote(name)}, expected {want!r} "
                         "(layout 'label,pixel1,...,pixelN')")
    return names, rest


def _csv_rows(path: Path, f, rest: bytes, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` int64 and pixels ``(n, N)`` uint8 of the data lines. Split here, not by pandas: its
    read_csv(chunksize=1000) took 96 MB to refuse one 20 MB line; refusing a carried-over line takes under 10."""
    max_line = len(names) * (MAX_CELL_CHARS + 1)  # cells, commas and the line end
    row_bytes = len(names) - 1 + 8  # uint8 pixels and an int64 label
    parts, n_rows, carry = [], 0, rest
    while True:
        piece = _read(path, f, CHUNK_BYTES)
        buf = carry + piece
        cut = buf.rfind(b"\n") + 1 if piece else len(buf)
        block, carry = buf[:cut], buf[cut:]
        if block:
            if not block.endswith(b"\n"):  # the last line of a file without a final line end
                block += b"\n"
            parts.append(_csv_block(path, block, names, n_rows, max_line))
            n_rows += len(parts[-1][0])
            if n_rows * row_bytes > MAX_DATA_BYTES:
                raise _error(path, f"rows 1 to {n_rows} take {n_rows * row_bytes:,} bytes as images and "
                             f"int64 labels, over the limit of {MAX_DATA_BYTES:,} (MAX_DATA_BYTES)")
        if len(carry) >= max_line:  # with its line end, longer than max_line
            raise _csv_line_error(path, n_rows + 1, names, carry, max_line)
        if not piece:
            break
    if not n_rows:
        raise _error(path, "header but no data rows")
    return tuple(map(np.concatenate, zip(*parts)))


def _csv_block(path: Path, block: bytes, names: list[str], row0: int, max_line: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and pixels of complete data lines (``block`` ends with ``\\n``), rows from ``row0 + 1``."""
    # pandas parses only blocks it would not accept more of than the format: integer literal bytes, \r only
    # before \n, lines short enough and with N commas. Else the first bad row is named.
    a = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(a == _LF)
    commas = np.searchsorted(np.flatnonzero(a == _COMMA), ends)
    if (_CELL_BYTES[a].all() and (a[np.flatnonzero(a == _CR) + 1] == _LF).all()
            and (np.diff(ends, prepend=-1) <= max_line).all() and (np.diff(commas, prepend=0) == len(names) - 1).all()):
        try:
            values = pd.read_csv(io.BytesIO(block), header=None, dtype=np.int64, na_filter=False).to_numpy()
        except (ValueError, OverflowError):  # a cell not an int64 literal; pandas' ParserError is a ValueError
            pass
        else:
            labels, pixels = values[:, 0], values[:, 1:]
            if ((labels > -10**_MAX_DIGITS) & (labels < 10**_MAX_DIGITS)).all() and 0 <= pixels.min() <= pixels.max() <= 255:
                return labels.copy(), pixels.astype(np.uint8)
    lines = block.split(b"\n")[:-1]
    for row, line in enumerate(lines, start=row0 + 1):
        if error := _csv_line_error(path, row, names, line, max_line):
            raise error
    raise _error(path, f"rows {row0 + 1} to {row0 + len(lines)} could not be read as integers")


def _csv_line_error(path: Path, row: int, names: list[str], line: bytes, max_line: int) -> DataError | None:
    """The ``DataError`` of data row ``row`` (its bytes without ``\\n``, perhaps only its start), or None."""
    at = f"row {row} (line {row + 1})"
    if len(line) + 1 > max_line:
        return _error(path, f"{at} is longer than {max_line:,} characters ({len(names)} cells of at most "
                      f"{MAX_CELL_CHARS}); starts {_quote(line[:_QUOTE])}")
    text = line.removesuffix(b"\r")
    if not text.strip():
        return _error(path, f"{at} is blank; expected {len(names)} cells")
    cells = text.split(b",")
    if len(cells) != len(names):
        kind = "missing" if len(cells) < len(names) else "extra"
        hint = "; a '\\r' inside it does not end a line" if b"\r" in text else ""
        return _error(path, f"{at} has {len(cells)} cells, expected {len(names)} (label + {len(names) - 1} "
                      f"pixels): {kind} cells{hint}")
    for name, cell in zip(names, cells):
        literal = cell.strip(b" \t")
        if not _INTEGER.fullmatch(literal):
            return _error(path, f"{at}, column {name}: {_quote(cell)} is not an integer")
        if len(literal.lstrip(b"+-").lstrip(b"0")) > _MAX_DIGITS:
            value = cut(literal.decode())
            what = f"label {value} has more than {_MAX_DIGITS} digits" if name == "label" else f"pixel {value} outside 0..255"
            return _error(path, f"{at}, column {name}: {what}")
        if name != "label" and not 0 <= int(literal) <= 255:
            return _error(path, f"{at}, column {name}: pixel {int(literal)} outside 0..255")
    return None
