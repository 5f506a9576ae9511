"""Seconds and queries per second: figures that change from run to run, kept out of git and dvc.lock.

A stage writes them to ``--timings`` (``timings/<stage>.json`` in ``dvc.yaml``), a file that no
stage declares as an output: declared, its hash in ``dvc.lock`` would change on every rerun of an
unchanged commit. ``fmproto report`` and ``make timings`` show them.
"""

import time
from pathlib import Path

from fmproto.pipeline import io


class Stopwatch:
    """Named laps in seconds: ``with watch("fit"): ...`` adds the block's wall time to ``watch.seconds["fit"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        return _Lap(self, name)


class _Lap:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch, self.name = watch, name

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.watch.seconds[self.name] = self.watch.seconds.get(self.name, 0.0) + time.perf_counter() - self.start


def write(path: str | Path | None, figures: dict) -> None:
    """Write ``figures`` (nested dicts of numbers) to ``path`` as JSON; nothing when ``path`` is None."""
    if path is not None:
        io.write_json(path, figures)


def read_all(folder: str | Path) -> dict[str, dict]:
    """Every ``<stage>.json`` in ``folder``, by stage name (an unreadable file is skipped)."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            found[path.stem] = io.read_json(path)
        except ValueError:
            continue
    return found
