"""The pipeline's own files: .npz arrays, JSON metrics and CSV tables.

Writers go through ``atomic_path`` (all or nothing); readers raise a one-line ``DataError`` naming the file.
"""

import gzip
import json
import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmproto.pipeline.atomic import TEMP_MARK, PathLike, atomic_path, output_problem, remove_leftovers, transaction
from fmproto.pipeline.checks import DataError, data_error as _error, require_file as _require_file

__all__ = ["TEMP_MARK", "PathLike", "DataError", "atomic_path", "output_problem", "remove_leftovers", "transaction",
           "save_arrays", "array_headers", "load_arrays", "write_json", "read_json", "write_csv", "read_csv"]
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
_NPY_MAGIC = b"\x93NUMPY"


def save_arrays(path: PathLike, /, **arrays: np.ndarray) -> None:
    """Write named arrays to an uncompressed ``.npz``; ``ValueError`` for an object array (pickle)."""
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    for name, a in arrays.items():
        if a.dtype == object:
            raise ValueError(f"array {name!r} has dtype object; save numbers or fixed-width strings")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # a file object, so numpy cannot append ".npz" to the name


@contextmanager
def _open_npz(path: PathLike) -> Iterator[tuple[Path, zipfile.ZipFile]]:
    """The ``.npz`` open as a zip; a failure to read it, in the block too, is a ``DataError``."""
    path = _require_file(path)
    try:
        with open(path, "rb") as f:  # our own handle: a corrupt zip must not leak it
            if f.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise _error(path, "is a single .npy array, expected an .npz archive")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                yield path, archive
    except (DataError, MemoryError):
        raise
    except Exception as err:  # zipfile, zlib and numpy's format errors all mean the same here
        raise _error(path, f"not a readable .npz file ({type(err).__name__}: {err})") from None


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype, int]]:
    """Each array's zip entry, shape, dtype and bytes, from the ``.npy`` headers alone; an entry's declared
    size (zipfile reads no further) must match its header, so no deflate bomb is inflated."""
    found = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name == info.filename:
            raise _error(path, f"holds {info.filename[:80]!r}, which is not an .npy array")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise _error(path, f"array {name[:80]!r} has .npy format version {version[0]}.{version[1]}; "
                             "expected 1.0 or 2.0")
            shape, _, dtype = getattr(np.lib.format, f"read_array_header_{version[0]}_0")(member)
            header_size = member.tell()
        if dtype.hasobject:
            raise _error(path, f"array {name[:80]!r} holds Python objects, which would need pickle to load")
        n_bytes = math.prod(shape) * dtype.itemsize
        if info.file_size != header_size + n_bytes:
            raise _error(path, f"array {name[:80]!r} is stored as {info.file_size:,} bytes but its header says "
                         f"{shape} of {dtype} ({header_size + n_bytes:,} bytes); not inflated")
        found[name] = (info, tuple(shape), dtype, n_bytes)
    return found


def array_headers(path: PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype in a ``.npz``, from its ``.npy`` headers; ``DataError`` for a bad file."""
    with _open_npz(path) as (path, archive):
        return {name: (shape, dtype) for name, (_, shape, dtype, _) in _members(path, archive).items()}


def load_arrays(path: PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` in memory; ``DataError`` as ``array_headers``, or when the headers
    declare more than ``max_bytes`` (refused before anything is inflated)."""
    with _open_npz(path) as (path, archive):
        members = _members(path, archive)
        total = sum(n_bytes for *_, n_bytes in members.values())
        if max_bytes is not None and total > max_bytes:
            raise _error(path, f"its arrays would take {total:,} bytes, more than the {max_bytes:,} expected "
                         "of this file; not inflated")
        arrays = {}
        for name, (info, *_) in members.items():
            with archive.open(info) as member:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
        return arrays


def _plain(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays (keys too) as Python numbers and lists."""
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return obj


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, trailing newline); ``ValueError`` naming the key of a NaN or infinity."""
    obj = _plain(obj)
    where = _non_finite(obj)
    if where is not None:
        raise ValueError(f"{path}: {where or 'the value'} is not a finite number; JSON has no NaN or infinity")
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _non_finite(obj: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN or infinity in ``obj``, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where
    if isinstance(obj, dict):
        items = ((f"{where}.{key}" if where else str(key), value) for key, value in obj.items())
    elif isinstance(obj, list):
        items = ((f"{where}[{i}]", value) for i, value in enumerate(obj))
    else:
        return None
    return next((found for key, value in items if (found := _non_finite(value, key)) is not None), None)


def read_json(path: PathLike) -> Any:
    """Parse a JSON file; ``DataError`` for a missing file or invalid JSON (with line and column)."""
    path = _require_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise _error(path, f"not valid JSON (line {err.lineno} column {err.colno}: {err.msg})") from None
    except UnicodeDecodeError:
        raise _error(path, "not valid JSON (invalid UTF-8)") from None


def write_csv(path: PathLike, frame: pd.DataFrame) -> None:
    """Write ``frame`` without its index, ``\\n`` line ends (``.gz`` paths are gzipped)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def read_csv(path: PathLike) -> pd.DataFrame:
    """Read a CSV with a header row; ``DataError`` for a missing, empty or malformed file."""
    path = _require_file(path)
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise _error(path, "empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, *_GZIP_ERRORS) as err:
        raise _error(path, f"not readable as CSV ({err})") from None
