"""Argument checks the core shares (one ``ValueError`` naming the argument), and the files a reader opens."""

import os
import re
import stat
from pathlib import Path

import numpy as np

_LINE_BREAKS = re.compile(r"\s*\n\s*")
_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def is_int(value) -> bool:
    """True for Python and numpy integers; False for bools, floats and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` and the allowed range."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        span = (f"in {low}..{high}" if low is not None and high is not None
                else f">= {low}" if low is not None else f"<= {high}" if high is not None else "")
        raise ValueError(f"{name} must be an integer {span}".rstrip() + f"; got {value!r}")
    return int(value)


def labels(y, n_classes: int, name: str = "y", n: int | None = None) -> np.ndarray:
    """``y`` as int64 class labels in ``0..n_classes-1`` (``n`` of them when given), or a ``ValueError``
    naming ``name`` and the first label out of range."""
    check_int(n_classes, "n_classes", low=1)
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)) or (n is not None and len(y) != n):
        raise ValueError(f"{name} must be 1-D integer labels{f' of length {n}' if n is not None else ''}; "
                         f"got {y.dtype} of shape {y.shape}")
    y = y.astype(np.int64, copy=False)
    outside = np.flatnonzero((y < 0) | (y >= n_classes))
    if len(outside):
        raise ValueError(f"{name} must lie in 0..{n_classes - 1}; got {y[outside[0]]}")
    return y


def rows(X, name: str = "X", dtype=None) -> np.ndarray:
    """``(n, ...)`` finite numbers as ``(n, n_features)`` rows (a copy only if ``dtype`` casts), or a ``ValueError``."""
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"{name} must have shape (n, n_features) or (n, H, W); got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):
        raise ValueError(f"{name} must hold integers or floats; got dtype {X.dtype}")
    X = X.reshape(len(X), int(np.prod(X.shape[1:])))  # not -1: that fails for zero rows
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return X


class DataError(ValueError):
    """Bad input data; one line naming the file and the problem (``data/x.gz: 59999 labels but 60000 images``)."""


def data_error(path, problem: str) -> DataError:
    """``DataError("<path>: <problem>")`` on one line."""
    return DataError(f"{os.fspath(path)}: {_LINE_BREAKS.sub(' ', str(problem))}")


def kind_of(mode: int) -> str:
    """What an ``os.stat`` mode is: ``"a regular file"``, ``"a FIFO"``..."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def path_kind(path) -> str | None:
    """What is at ``path`` following links (``kind_of``), None when nothing is, or ``"a symbolic link to nothing"``."""
    try:
        return kind_of(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: a file on the way
        return "a symbolic link to nothing" if os.path.lexists(path) else None


def require_file(path) -> Path:
    """``path`` if it is a regular file (or a link to one), else a ``DataError``; opening a FIFO would hang."""
    path = Path(path)
    try:
        kind = path_kind(path)
    except OSError as err:
        raise data_error(path, f"cannot read ({err.strerror or err})") from None
    if kind is None:
        raise data_error(path, "file not found")
    if kind != "a regular file":
        raise data_error(path, f"is {kind}, not a regular file")
    return path
