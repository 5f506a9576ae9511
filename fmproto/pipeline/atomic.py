"""All-or-nothing outputs: each file goes to a temp file beside it, then is renamed over it.

Inside ``transaction()`` the renames wait for the end of the block and are all or none, so a killed
stage never leaves a half-written output for DVC to cache. An ``OSError`` while writing names the output.
"""

import errno
import os
import secrets
import signal
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from fmproto.pipeline.checks import kind_of, path_kind

PathLike = str | os.PathLike

_MASK = os.umask(0)
os.umask(_MASK)
_FILE_MODE = 0o666 & ~_MASK  # mkstemp makes 0600 files; outputs get what a plain open() would give

# In every temp file's name: .gitignore ignores them; the next run removes a killed run's leftovers.
TEMP_MARK = ".fmproto-tmp"


class _Transaction:
    """``pending``: a target's absolute path -> (the target as named, its temp file)."""

    def __init__(self) -> None:
        self.pending: dict[Path, tuple[Path, Path]] = {}
        self.created_dirs: list[Path] = []

    def discard(self) -> None:
        for _, tmp in self.pending.values():
            _unlink_quietly(tmp)
        for folder in reversed(self.created_dirs):  # deepest first
            with suppress(OSError):  # not empty: something else wrote there too
                folder.rmdir()


_open_transaction: _Transaction | None = None


@contextmanager
def transaction(before_commit: Callable[[], None] | None = None,
                exact_folders: Sequence[PathLike] = ()) -> Iterator[None]:
    """Hold back every ``atomic_path`` write in the block (and ``before_commit``), then commit all or none:
    if one replacement fails, every target gets its old file back and an ``OSError`` names the target.
    Files and links in ``exact_folders`` the block did not write are removed. SIGINT/SIGTERM wait."""
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
        outcome = "could not put back " + "; ".join(not_restored) if not_restored else "no output was changed"
        raise OSError(err.errno, f"{err.strerror or err}; {outcome}", err.filename) from err
    for _, backup in undo:
        if backup is not None:
            _unlink_quietly(backup)


def _put_back(undo: list[tuple[Path, Path | None]]) -> list[str]:
    """Undo ``_commit``'s steps, last first; return the targets that could not be restored."""
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
    with suppress(OSError):  # its folder turned read-only: the next run's remove_leftovers deletes it
        path.unlink(missing_ok=True)


def _keep_aside(target: Path, in_place: bool) -> Path:
    """``target`` under a new temp name: hard-linked when ``in_place`` (it stays until replaced), else renamed."""
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
    """The files and links under ``folders`` that are neither a target nor a temp file of ``done``."""
    ours = set()  # (device, inode): a target named by another spelling of its path is still ours
    for path in (path for pair in done.pending.values() for path in pair):
        with suppress(FileNotFoundError):
            info = os.lstat(path)
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
    """What ``lsattr`` shows, or 0 where it cannot be read."""
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
    """``OSError`` naming ``path`` when a rename cannot replace (or, ``removing``, delete) it now."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    folder = path.parent
    problem = None
    if info is not None and not stat.S_ISREG(info.st_mode) and not (removing and stat.S_ISLNK(info.st_mode)):
        problem = errno.EEXIST, f"it is now {kind_of(info.st_mode)}"
    for what, at in (("the file", path if info is not None and stat.S_ISREG(info.st_mode) else None),
                     (f"its folder {folder}", folder)):
        flags = _inode_flags(at) if at is not None and problem is None else 0
        if flags & (_IMMUTABLE | _APPEND_ONLY):
            problem = errno.EPERM, f"{what} is {'immutable (chattr +i)' if flags & _IMMUTABLE else 'append-only (chattr +a)'}"
    if problem is None and not os.access(folder, os.W_OK | os.X_OK):
        problem = ((errno.EROFS, f"its folder {folder} is on a read-only file system")
                   if os.statvfs(folder).f_flag & os.ST_RDONLY else (errno.EACCES, f"its folder {folder} is not writable"))
    if problem is None and info is not None and os.stat(folder).st_mode & stat.S_ISVTX:
        if os.geteuid() not in (0, info.st_uid, os.stat(folder).st_uid):  # the rule of /tmp
            problem = errno.EPERM, f"its folder {folder} is sticky and the file belongs to another user"
    if problem is not None:
        raise OSError(problem[0], f"cannot {'remove' if removing else 'replace'} it: {problem[1]}", os.fspath(path))


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is over, then their handlers run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not None:  # None: set outside Python; left alone
            previous[signum] = signal.signal(signum, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def remove_leftovers(path: PathLike) -> None:
    """Delete the temp and kept-aside files a killed run left for ``path`` (a file, or a folder's files)."""
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
    """Why ``path`` cannot be an output file (or ``folder``), or None; a link to a folder is written through,
    a link to a file refused (a rename would replace the link)."""
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
    """Yield a temp path beside ``path`` with its suffix (numpy, matplotlib and pandas act on it); on success
    it replaces ``path`` (at the end of an open ``transaction``). ``ValueError`` if ``output_problem``."""
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
