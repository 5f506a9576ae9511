"""One-line errors and all-or-nothing outputs (``atomic.transaction``) for every stage and ``fmproto`` command.

Under DVC (``DVC_STAGE`` set) the stage does not outlive the ``dvc`` process running it (once it is
gone: SIGTERM, then ``os._exit`` after ``DVC_EXIT_GRACE`` seconds stuck in native code), and each output
folder holds exactly this run's files, as if DVC had deleted it before the run."""

import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fmproto.pipeline import atomic

MAX_MESSAGE = 300  # characters of the one error line
DVC_POLL_SECONDS = 0.5  # how often the stage looks for its dvc process
DVC_EXIT_GRACE = 10.0  # seconds a stage stuck in native code gets to stop once dvc is gone
_MAX_ANCESTORS = 8  # how far up the process tree the dvc process is looked for


class DvcExited(KeyboardInterrupt):
    """The ``dvc`` process running this stage exited (a ``KeyboardInterrupt``: ``except Exception`` lets it by)."""

    def __init__(self, pid: int):
        super().__init__(f"stopped: dvc (pid {pid}) exited; no output written")


def one_line(err: BaseException | str) -> str:
    text = str(err).strip()
    message = text.splitlines()[0] if text else ""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def _describe(err: BaseException) -> str:
    """An ``OSError`` naming a file reads ``path: No space left on device``."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        where = os.fsdecode(err.filename)
        if err.filename2 is not None:
            where += f" -> {os.fsdecode(err.filename2)}"
        return one_line(f"{where}: {err.strerror}")
    return one_line(err) or type(err).__name__


@contextmanager
def stage_errors(stage: str, files: Sequence[str | Path] = (), folders: Sequence[str | Path] = ()) -> Iterator[None]:
    """Run a stage or command body: outputs (``files``, ``folders``) all or nothing, checked first; ``ValueError``,
    ``OSError`` or ``MemoryError`` is one line, exit status 1 (a bug keeps its traceback); Ctrl-C, SIGTERM: 130."""
    under_dvc = bool(os.environ.get("DVC_STAGE"))
    watch, committing = None, False

    def interrupted(signum, frame):
        if watch is not None and watch.gone:
            raise DvcExited(watch.pid)
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    def before_commit() -> None:
        nonlocal committing
        if watch is not None:
            watch.stop(check=True)  # raises DvcExited when dvc is gone
        committing = True

    previous = signal.signal(signal.SIGTERM, interrupted)  # dvc and CI stop a stage with SIGTERM
    try:
        if under_dvc:
            watch = _DvcWatch.find()
        for path, folder in [*((p, False) for p in files), *((p, True) for p in folders)]:
            if (problem := atomic.output_problem(path, folder=folder)) is not None:
                raise ValueError(f"{path}: {problem}")
        for path in [*files, *folders]:
            atomic.remove_leftovers(path)
        with atomic.transaction(before_commit, exact_folders=folders if under_dvc else ()):
            yield
    except DvcExited as err:
        print(f"{stage}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except (ValueError, OSError, MemoryError, KeyboardInterrupt) as err:
        if isinstance(err, MemoryError):
            what = "out of memory"
        elif isinstance(err, KeyboardInterrupt):
            what = f"interrupted ({one_line(err)})" if str(err) else "interrupted"
            if committing:  # the signal waited for the commit to finish
                what += " after every output was written"
        else:
            what = _describe(err)
        print(f"{stage}: error: {what}", file=sys.stderr)
        raise SystemExit(130 if isinstance(err, KeyboardInterrupt) else 1) from None
    finally:
        if watch is not None:
            watch.stop()
        signal.signal(signal.SIGTERM, previous)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks), or None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # the command name, in brackets, may hold spaces
    return fields[0].decode(), int(fields[1]), int(fields[19])


def _is_dvc(pid: int) -> bool:
    """Whether the process runs ``dvc ...``, ``python .../bin/dvc ...`` or ``python -m dvc ...``."""
    try:
        args = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return False
    return "dvc" in [os.path.basename(a) for a in args[:3]] or any(args[i:i + 2] == ["-m", "dvc"] for i in range(3))


class _DvcWatch:
    """The ``dvc`` process above this one, polled from a daemon thread until ``stop``; known by pid and start
    time, so a reused pid does not pass for it."""

    def __init__(self, pid: int, started: int):
        self.pid, self.started, self.gone = pid, started, False
        self._lock = threading.Lock()
        self._stopped = threading.Event()  # no more polling
        self._finished = threading.Event()  # stage_errors is done with this stage
        threading.Thread(target=self._poll, name="dvc-watch", daemon=True).start()

    @classmethod
    def find(cls) -> "_DvcWatch | None":
        pid = os.getppid()
        for _ in range(_MAX_ANCESTORS):
            found = _proc_stat(pid) if pid > 1 else None
            if found is None:
                return None
            if _is_dvc(pid):
                return cls(pid, found[2])
            pid = found[1]
        return None

    def alive(self) -> bool:
        found = _proc_stat(self.pid)
        return found is not None and found[0] not in ("Z", "X") and found[2] == self.started

    def stop(self, check: bool = False) -> None:
        """Stop watching; with ``check``, raise ``DvcExited`` first if dvc is gone."""
        with self._lock:
            self._stopped.set()
            if not check:
                self._finished.set()
            elif self.gone or not self.alive():
                self.gone = True
                raise DvcExited(self.pid)

    def _poll(self) -> None:
        while not self._stopped.wait(DVC_POLL_SECONDS):
            with self._lock:
                if self._stopped.is_set() or self.alive():
                    continue
                self.gone = True
                os.kill(os.getpid(), signal.SIGTERM)
            if not self._finished.wait(DVC_EXIT_GRACE):  # the signal's handler never got to run
                print(f"{DvcExited(self.pid)} (forced after {DVC_EXIT_GRACE:g} s)", file=sys.stderr)
                os._exit(1)
            return
