"""The pipeline's own files: .npz arrays, JSON metrics, CSV tables and Annoy indexes.

Writers are atomic: they write a temp file in the destination folder and ``os.replace`` it over the
target, so an interrupted stage never leaves a half-written output for DVC to cache. Readers raise
``DataError`` with one line naming the file and the problem.
"""

import gzip
import json
import math
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmproto.checks import DataError
from fmproto.checks import data_error as _error
from fmproto.checks import require_file as _require_file

PathLike = str | os.PathLike

ANNOY_METRICS = ("angular", "euclidean", "manhattan", "hamming", "dot")
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _file_mode() -> int:
    # mkstemp creates 0600 files; outputs should get the mode a plain open() would give.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


# Temp files carry this mark before their suffix: .gitignore ignores them, and a run that was killed
# before it could clean up has its leftovers removed by the next run (``remove_leftovers``).
TEMP_MARK = ".fmproto-tmp"


class _Transaction:
    """Writes held back until the whole run succeeded: (temp file, target) pairs and created folders."""

    def __init__(self) -> None:
        self.pending: dict[Path, Path] = {}
        self.created_dirs: list[Path] = []


_open_transaction: _Transaction | None = None


@contextmanager
def transaction() -> Iterator[None]:
    """Hold every ``atomic_path`` write inside the block until the block ends.

    On success every target is replaced by its temp file; on any exception (or a signal that raises)
    the temp files and the folders this block created are removed, so no file that existed before
    changes and nothing new is left behind. A SIGKILL leaves temp files, which ``remove_leftovers``
    clears on the next run.
    """
    global _open_transaction
    if _open_transaction is not None:
        raise RuntimeError("a transaction is already open")
    _open_transaction = done = _Transaction()
    try:
        yield
    except BaseException:
        _open_transaction = None
        for tmp in done.pending.values():
            tmp.unlink(missing_ok=True)
        for folder in reversed(done.created_dirs):  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: something else wrote there too
                pass
        raise
    _open_transaction = None
    for target, tmp in done.pending.items():
        os.replace(tmp, target)


def remove_leftovers(path: PathLike) -> None:
    """Delete the temp files an earlier, killed run left for ``path`` (a file, or a folder's files)."""
    path = Path(path)
    patterns = [(path.parent, f".{path.name}.*{TEMP_MARK}*")]
    if path.is_dir() and not path.is_symlink():
        patterns.append((path, f"**/.*{TEMP_MARK}*"))
    for folder, pattern in patterns:
        if folder.is_dir():
            for leftover in folder.glob(pattern):
                if leftover.is_file() and not leftover.is_symlink():
                    leftover.unlink(missing_ok=True)


def _make_parents(folder: Path) -> None:
    """``mkdir -p folder``, remembering in the open transaction which folders were new."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        if _open_transaction is not None:
            _open_transaction.created_dirs.append(new)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on error it is deleted.

    Parent folders are created. The temp name keeps ``path``'s suffix, so libraries that add a
    suffix when it is missing (numpy, matplotlib) or choose compression by it (pandas) behave.
    Inside ``transaction()`` the replacement waits for the transaction's end.

    Examples
    --------
    >>> with atomic_path("reports/fig.png") as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp)
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{os.fspath(path)}: is a folder; an output file cannot replace it")
    _make_parents(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARK + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield tmp
        if _open_transaction is None:
            os.replace(tmp, path)
        else:
            earlier = _open_transaction.pending.pop(path.absolute(), None)
            if earlier is not None:  # written twice in one run: the last write wins
                earlier.unlink(missing_ok=True)
            _open_transaction.pending[path.absolute()] = tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_arrays(path: PathLike, /, **arrays: np.ndarray) -> None:
    """Write named arrays to an uncompressed ``.npz``, atomically. Object arrays are refused.

    Raises
    ------
    ValueError
        An array of dtype object, which would need pickle to load.
    """
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    for name, a in arrays.items():
        if a.dtype == object:
            raise ValueError(f"array {name!r} has dtype object; save numbers or fixed-width strings")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # a file object, so numpy cannot append ".npz" to the name


def load_arrays(path: PathLike) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` fully into memory and close the file.

    Raises
    ------
    DataError
        Missing file, or one that is not a readable ``.npz`` (pickled arrays are refused).
    """
    path = _require_file(path)
    try:
        # Our own handle: np.load leaks the one it opens when the zip turns out corrupt.
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise _error(path, "is a single .npy array, expected an .npz archive")
            with loaded as npz:
                return {name: npz[name] for name in npz.files}
    except DataError:
        raise
    except Exception as err:  # zipfile, zlib, pickle and format errors all mean the same here
        raise _error(path, f"not a readable .npz file ({type(err).__name__}: {err})") from None


def _plain(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays (also as dict keys) turned into Python numbers and lists."""
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return obj


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, trailing newline), atomically; numpy values become Python ones.

    NaN and infinity are not JSON: a metric that cannot be computed must be left out or None, so
    they raise ``ValueError`` naming the file and the key instead of writing invalid JSON.
    """
    obj = _plain(obj)
    where = _non_finite(obj)
    if where is not None:
        raise ValueError(f"{os.fspath(path)}: {where or 'the value'} is not a finite number; JSON has no NaN or infinity")
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _non_finite(obj: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN or infinity in ``obj``, or None when every number is finite."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where
    if isinstance(obj, dict):
        items = ((f"{where}.{key}" if where else str(key), value) for key, value in obj.items())
    elif isinstance(obj, list):
        items = ((f"{where}[{i}]", value) for i, value in enumerate(obj))
    else:
        return None
    for key, value in items:
        found = _non_finite(value, key)
        if found is not None:
            return found
    return None


def read_json(path: PathLike) -> Any:
    """Parse a JSON file. ``DataError`` for a missing file or invalid JSON (with line and column)."""
    path = _require_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise _error(path, f"not valid JSON (line {err.lineno} column {err.colno}: {err.msg})") from None
    except UnicodeDecodeError:
        raise _error(path, "not valid JSON (invalid UTF-8)") from None


def write_csv(path: PathLike, frame: pd.DataFrame) -> None:
    """Write ``frame`` without its index, ``\\n`` line ends, atomically (``.gz`` paths are gzipped)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def read_csv(path: PathLike) -> pd.DataFrame:
    """Read a CSV with a header row. ``DataError`` for a missing, empty or malformed file."""
    path = _require_file(path)
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise _error(path, "empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, *_GZIP_ERRORS) as err:
        raise _error(path, f"not readable as CSV ({err})") from None


def save_ann_index(index, path: PathLike) -> None:
    """Save a built ``annoy.AnnoyIndex`` or ``hnswlib.Index`` atomically.

    Annoy memory-maps the file it saved to; the rename keeps that mapping valid (same inode).
    hnswlib writes exactly the path it is given (no suffix added).
    """
    with atomic_path(path) as tmp:
        if hasattr(index, "save_index"):  # hnswlib
            index.save_index(os.fspath(tmp))
        elif not index.save(os.fspath(tmp)):
            raise OSError(f"{os.fspath(path)}: annoy could not save the index")


def load_annoy_index(path: PathLike, n_features: int, metric: str):
    """Memory-map a saved Annoy index.

    Parameters
    ----------
    path : str or PathLike
    n_features : int
        Vector length the index was built with.
    metric : {"angular", "euclidean", "manhattan", "hamming", "dot"}

    Returns
    -------
    annoy.AnnoyIndex, loaded and read-only.

    Raises
    ------
    DataError
        Missing file, or one annoy cannot load with this ``n_features`` and ``metric``.
    """
    from annoy import AnnoyIndex  # only the ANN stages need it

    if metric not in ANNOY_METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, ANNOY_METRICS))}; got {metric!r}")
    path = _require_file(path)
    index = AnnoyIndex(int(n_features), metric)
    try:
        index.load(os.fspath(path))
    except OSError as err:
        raise _error(path, f"annoy cannot load it with n_features={n_features}, "
                     f"metric={metric!r} ({err})") from None
    return index
