"""Seconds and queries per second, written to ``--timings``: no stage declares it as an output, since
its hash in ``dvc.lock`` would change on every rerun."""

import time
from contextlib import contextmanager, suppress
from pathlib import Path

from fmproto.pipeline import io


class Stopwatch:
    """Named laps: ``with watch("fit"): ...`` adds the block's wall time to ``watch.seconds["fit"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def write(path: str | Path | None, figures: dict) -> None:
    """Write ``figures`` to ``path`` as JSON; nothing when ``path`` is None."""
    if path is not None:
        io.write_json(path, figures)


def read_all(folder: str | Path) -> dict[str, dict]:
    """Every ``<stage>.json`` in ``folder``, by stage name (an unreadable file is skipped)."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        with suppress(ValueError):
            found[path.stem] = io.read_json(path)
    return found
