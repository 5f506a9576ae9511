"""One-line errors and all-or-nothing outputs for every stage script and every ``fmproto`` command.

``stage_errors`` runs the body inside ``fmproto.io.transaction``: the outputs are written to temp
files and replace their targets only when the whole body succeeded. So a failure (bad input, a bug,
Ctrl-C) changes no file that existed before and leaves nothing new behind, and cleanup never
touches a path this run did not create: not a folder the user named, not a file that was there.
"""

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fmproto import io

MAX_MESSAGE = 300  # characters of the one error line


class UsageError(ValueError):
    """A flag that cannot work (an output file path that is an existing folder)."""


def one_line(err: BaseException) -> str:
    """The first line of ``err``'s message, cut to ``MAX_MESSAGE`` characters."""
    text = str(err).strip()
    message = text.splitlines()[0] if text else type(err).__name__
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def check_outputs(files: Sequence[str | Path] = (), folders: Sequence[str | Path] = ()) -> None:
    """``UsageError`` for an output file path that is an existing folder, or a folder path that is a file."""
    for path in map(Path, files):
        if path.is_dir():
            raise UsageError(f"{path}: is an existing folder; give a file path for this output")
    for path in map(Path, folders):
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path}: is an existing file; give a folder path for this output")


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


@contextmanager
def stage_errors(stage: str, files: Sequence[str | Path] = (), folders: Sequence[str | Path] = ()) -> Iterator[None]:
    """Run a stage or command body: outputs all or nothing, bad input as one line and exit status 1.

    ``files`` and ``folders`` are the outputs named on the command line; they are checked before any
    work and leftovers of an earlier killed run are removed from them. Expected failures are
    ``ValueError`` (bad data, bad params, core validation), ``OSError`` (missing or unreadable
    files) and ``MemoryError``; anything else is a bug and keeps its traceback, but still leaves no
    partial output.
    """
    previous = signal.signal(signal.SIGTERM, _interrupted)  # dvc and CI stop a stage with SIGTERM
    try:
        check_outputs(files, folders)
        for path in [*files, *folders]:
            io.remove_leftovers(path)
        with io.transaction():
            yield
    except (ValueError, OSError, MemoryError, KeyboardInterrupt) as err:
        if isinstance(err, MemoryError):
            what = "out of memory"
        elif isinstance(err, KeyboardInterrupt):
            what = f"interrupted ({one_line(err)})" if str(err) else "interrupted"
        else:
            what = one_line(err)
        print(f"{stage}: error: {what}", file=sys.stderr)
        raise SystemExit(130 if isinstance(err, KeyboardInterrupt) else 1) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
