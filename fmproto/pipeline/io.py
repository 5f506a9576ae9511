"""The pipeline's own files: .npz arrays, JSON metrics and CSV tables.

Writers are atomic: they write a temp file in the destination folder and ``os.replace`` it over the
target, so an interrupted stage never leaves a half-written output for DVC to cache. An output must
be a new path or a regular file (never a folder, a link, a FIFO or a device), and an ``OSError``
while writing it names it. Inside ``transaction()`` the replacements wait for the end of the block
and are all or nothing: every target is checked first, and a replacement that fails puts every
replaced target back. Readers raise ``DataError`` with one line naming the file and the problem.
"""

import errno
import gzip
import json
import math
import os
import secrets
import signal
import stat
import struct
import sys
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmproto.pipeline.checks import DataError
from fmproto.pipeline.checks import data_error as _error
from fmproto.pipeline.checks import kind_of, path_kind
from fmproto.pipeline.checks import require_file as _require_file

PathLike = str | os.PathLike

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
    """Writes held back until the whole run succeeded: each target's temp file, and the folders created.

    ``pending`` maps a target's absolute path to the target as the caller named it (for messages)
    and its temp file.
    """

    def __init__(self) -> None:
        self.pending: dict[Path, tuple[Path, Path]] = {}
        self.created_dirs: list[Path] = []

    def discard(self) -> None:
        """Delete every temp file, then the folders this transaction created (when empty).

        Best effort: a temp file in a folder that turned read-only or immutable stays, for the next
        run's ``remove_leftovers``; the error that stopped the run is the one reported.
        """
        for _, tmp in self.pending.values():
            _unlink_quietly(tmp)
        for folder in reversed(self.created_dirs):  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: something else wrote there too
                pass


_open_transaction: _Transaction | None = None


@contextmanager
def transaction(before_commit: Callable[[], None] | None = None,
                exact_folders: Sequence[PathLike] = ()) -> Iterator[None]:
    """Hold every ``atomic_path`` write inside the block until the block ends; then commit all or none.

    On any exception in the block (or a signal that raises) the temp files and the folders this
    block created are removed, so no file that existed before changes and nothing new is left behind.

    When the block succeeds, ``before_commit`` (if given) is called and may raise to refuse the
    commit, with the same cleanup. Then the commit: every target is checked first (still nothing or
    a regular file, its folder writable, neither immutable nor append-only where the file system
    tells), then each is replaced by its temp file while its old file is kept under a temp name
    (a hard link, or a rename where hard links fail). If a replacement fails, every replaced target
    gets its old file back, the new files and temp files are removed, and an ``OSError`` names the
    target and the cause. On success the kept old files are deleted. Files and links inside
    ``exact_folders`` that this block did not write are removed in the same all-or-nothing step, so
    each of those folders then holds exactly this block's files. SIGINT and SIGTERM arriving during
    the commit take effect once it is over. Only SIGKILL, or a folder that became unwritable during
    the run, leaves temp files, which ``remove_leftovers`` clears on the next run.
    """
    global _open_transaction
    if _open_transaction is not None:
        raise RuntimeError("a transaction is already open")
    _open_transaction = done = _Transaction()
    try:
        yield
        if before_commit is not None:
            before_commit()
    except BaseException:
        done.discard()
        raise
    finally:
        _open_transaction = None
    with _signals_deferred():
        _commit(done, [Path(folder) for folder in exact_folders])


def _commit(done: _Transaction, exact_folders: list[Path]) -> None:
    """Replace every pending target by its temp file and remove ``exact_folders``' stale files: all or none."""
    undo: list[tuple[Path, Path | None]] = []  # (target, its old file kept aside, or None: it was new)
    try:
        steps = [*done.pending.values(), *((path, None) for path in _stale_files(exact_folders, done))]
        for target, new in steps:  # everything checked before anything changes
            _check_replaceable(target, removing=new is None)
        for target, new in steps:
            try:
                backup = _keep_aside(target, in_place=new is not None) if os.path.lexists(target) else None
                undo.append((target, backup))
                if new is not None:
                    os.replace(new, target)
            except OSError as err:
                what = "replace" if new is not None else "remove"
                raise OSError(err.errno, f"cannot {what} it ({err.strerror or err})", os.fspath(target)) from err
    except BaseException as err:
        not_restored = _put_back(undo)
        done.discard()
        if not isinstance(err, OSError):
            raise
        outcome = ("could not put back " + "; ".join(not_restored) if not_restored
                   else "no output was changed")
        raise OSError(err.errno, f"{err.strerror or err}; {outcome}", err.filename) from err
    for _, backup in undo:
        if backup is not None:
            _unlink_quietly(backup)


def _put_back(undo: list[tuple[Path, Path | None]]) -> list[str]:
    """Undo ``_commit``'s steps, last first; each target that could not be restored, as text."""
    failed = []
    for target, backup in reversed(undo):
        try:
            if backup is None:
                target.unlink(missing_ok=True)  # it was new
            else:
                os.replace(backup, target)
        except OSError as err:
            kept = f"; its old content is in {backup}" if backup is not None else ""
            failed.append(f"{target} ({err.strerror or err}{kept})")
        else:
            if backup is not None:
                _unlink_quietly(backup)  # still there when both were links to one file
    return failed


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # its folder turned read-only: the next run's remove_leftovers deletes it
        pass


def _keep_aside(target: Path, in_place: bool) -> Path:
    """Keep ``target``'s file under a new temp name beside it, and return that name.

    ``in_place``: as a hard link, so the target stays where it is until its replacement lands
    (a rename where the file system or its protections refuse hard links). Otherwise, a rename.
    """
    while True:
        backup = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_MARK}.old")
        if in_place:
            try:
                os.link(target, backup, follow_symlinks=False)
                return backup
            except FileExistsError:
                continue
            except OSError:
                pass
        if not os.path.lexists(backup):
            os.rename(target, backup)
            return backup


def _stale_files(folders: list[Path], done: _Transaction) -> list[Path]:
    """The files and links inside ``folders`` (at any depth) that are neither a target nor a temp file of ``done``."""
    ours = set()  # (device, inode): a target named by another spelling of its path is still ours
    for target, tmp in done.pending.values():
        for path in (target, tmp):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            ours.add((info.st_dev, info.st_ino))
    stale = []
    for folder in folders:
        for parent, subfolders, files in os.walk(folder):  # links to folders are listed, not followed
            for name in [*files, *subfolders]:
                info = os.lstat(os.path.join(parent, name))
                if ((stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode))
                        and (info.st_dev, info.st_ino) not in ours):
                    stale.append(Path(parent, name))
    return stale


_IMMUTABLE, _APPEND_ONLY = 0x10, 0x20  # FS_IMMUTABLE_FL and FS_APPEND_FL from linux/fs.h
_FS_IOC_GETFLAGS = 0x80000000 | struct.calcsize("l") << 16 | ord("f") << 8 | 1  # _IOR('f', 1, long)


def _inode_flags(path: Path) -> int:
    """``path``'s inode flags (what ``lsattr`` shows), or 0 where they cannot be read."""
    if sys.platform != "linux":
        return 0
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
    except OSError:
        return 0
    try:
        return struct.unpack_from("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8)))[0]
    except OSError:  # a file system without flags (tmpfs before Linux 6.0, FUSE...)
        return 0
    finally:
        os.close(fd)


def _check_replaceable(path: Path, removing: bool = False) -> None:
    """``OSError`` naming ``path`` when it cannot be replaced (or, ``removing``, deleted) by a rename now."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode) and not (removing and stat.S_ISLNK(info.st_mode)):
        problem = errno.EEXIST, f"it is now {kind_of(info.st_mode)}"
    else:
        problem = _replace_problem(path, info)
    if problem is not None:
        code, why = problem
        raise OSError(code, f"cannot {'remove' if removing else 'replace'} it: {why}", os.fspath(path))


def _replace_problem(path: Path, info: os.stat_result | None) -> tuple[int, str] | None:
    folder = path.parent
    for what, at in (("the file", path if info is not None and stat.S_ISREG(info.st_mode) else None),
                     (f"its folder {folder}", folder)):
        flags = _inode_flags(at) if at is not None else 0
        if flags & _IMMUTABLE:
            return errno.EPERM, f"{what} is immutable (chattr +i)"
        if flags & _APPEND_ONLY:
            return errno.EPERM, f"{what} is append-only (chattr +a)"
    if not os.access(folder, os.W_OK | os.X_OK):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return errno.EROFS, f"its folder {folder} is on a read-only file system"
        return errno.EACCES, f"its folder {folder} is not writable"
    if info is not None and os.stat(folder).st_mode & stat.S_ISVTX:
        if os.geteuid() not in (0, info.st_uid, os.stat(folder).st_uid):  # the rule of /tmp
            return errno.EPERM, f"its folder {folder} is sticky and the file belongs to another user"
    return None


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is over, then take effect (their handlers run then)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: set outside Python; left alone
            previous[signum] = signal.signal(signum, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def remove_leftovers(path: PathLike) -> None:
    """Delete the temp files and kept-aside old files an earlier, killed run left for ``path`` (a file,
    or a folder's files)."""
    path = Path(path)
    patterns = [(path.parent, f".{path.name}.*{TEMP_MARK}*")]
    if path.is_dir() and not path.is_symlink():
        patterns.append((path, f"**/.*{TEMP_MARK}*"))
    for folder, pattern in patterns:
        if folder.is_dir():
            for leftover in folder.glob(pattern):
                if leftover.is_file() and not leftover.is_symlink():
                    leftover.unlink(missing_ok=True)


def output_problem(path: PathLike, folder: bool = False) -> str | None:
    """Why ``path`` cannot be an output file (or, ``folder``, an output folder); None when it can.

    An output file must be new or a regular file: replacing it puts a new regular file in its
    place, which must not happen to a folder, a device, a FIFO, a socket or a symbolic link (the
    link itself would be replaced, not written through). An output folder must be new or a folder
    (a link to one is written through). The nearest existing folder above a new path must be a folder.
    """
    path = Path(path)
    try:
        kind = path_kind(path)
        link = path.is_symlink()
        if kind is None:
            above = path.parent
            while not os.path.lexists(above) and above != above.parent:
                above = above.parent
            above_kind = path_kind(above)
            if above_kind not in (None, "a folder"):
                return f"cannot be created: {above} is {above_kind}, not a folder"
            return None
    except OSError as err:
        return f"cannot be checked ({err.strerror or err})"
    want = "a folder path for this output" if folder else "a new path or a regular file"
    if link:
        if folder and kind == "a folder":
            return None
        target = "nothing" if kind == "a symbolic link to nothing" else kind
        through = ": it would be replaced by a file, not written through" if kind == "a regular file" and not folder else ""
        return f"is a symbolic link to {target}{through}; give {want}"
    if folder:
        return None if kind == "a folder" else f"is {'an existing file' if kind == 'a regular file' else kind}; give {want}"
    if kind == "a folder":
        return "is an existing folder; give a file path for this output"
    return None if kind == "a regular file" else f"is {kind}; give {want}"


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


def _name_output(err: OSError, path: Path, tmp: str | None) -> OSError:
    """``err`` naming ``path`` when it names no file, or only the temp file written for it."""
    if err.strerror and (err.filename is None or (tmp is not None and os.fsdecode(err.filename) == tmp)):
        err.filename, err.filename2 = os.fspath(path), None
    return err


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on error it is deleted.

    ``path`` must be new or a regular file (``output_problem``; ``ValueError`` otherwise). Parent
    folders are created. The temp name keeps ``path``'s suffix, so libraries that add a suffix when
    it is missing (numpy, matplotlib) or choose compression by it (pandas) behave. Inside
    ``transaction()`` the replacement waits for the transaction's end. An ``OSError`` that names no
    file (a full disk: ``[Errno 28] No space left on device``) or only the temp file is made to
    name ``path``.

    Examples
    --------
    >>> with atomic_path("reports/fig.png") as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp)
    """
    path = Path(path)
    problem = output_problem(path)
    if problem is not None:
        raise ValueError(f"{os.fspath(path)}: {problem}")
    _make_parents(path.parent)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARK + path.suffix)
    except OSError as err:  # it names the temp file it tried to create
        raise _name_output(err, path, err.filename and os.fsdecode(err.filename))
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
                earlier[1].unlink(missing_ok=True)
            _open_transaction.pending[path.absolute()] = (path, tmp)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            _name_output(err, path, name)
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


_NPY_MAGIC = b"\x93NUMPY"


@contextmanager
def _open_npz(path: PathLike) -> Iterator[tuple[Path, zipfile.ZipFile]]:
    """The ``.npz`` at ``path`` open as a zip; a failure to read it, in the block too, is a one-line ``DataError``."""
    path = _require_file(path)
    try:
        # Our own handle: a zip that turns out corrupt must not leak it.
        with open(path, "rb") as f:
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
    """Each array's zip entry, shape, dtype and bytes, from its ``.npy`` header; nothing past the headers is inflated.

    The entry's declared uncompressed size, to which zipfile holds its reads, must be the header plus
    exactly the bytes the shape and dtype need: a deflate stream that would inflate further is never read.
    """
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
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
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
    """The shape and dtype of every array in a ``.npz``, read from the ``.npy`` headers alone.

    A few kilobytes are inflated whatever the file would inflate to, so a reader can check shapes
    against what it expects before ``load_arrays`` allocates them.

    Raises
    ------
    DataError
        Missing file; one that is not a readable ``.npz``; a member that is not an ``.npy`` array or
        holds objects (pickle); a member whose stored size is not what its header says.
    """
    with _open_npz(path) as (path, archive):
        return {name: (shape, dtype) for name, (_, shape, dtype, _) in _members(path, archive).items()}


def load_arrays(path: PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` fully into memory and close the file.

    Memory is what the arrays' headers declare (``array_headers``), and at most ``max_bytes`` when
    given: a larger archive is refused before anything is inflated.

    Raises
    ------
    DataError
        As ``array_headers``, or arrays that would take more than ``max_bytes``.
    """
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
