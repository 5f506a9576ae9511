"""Where long work is, on stderr (stdout keeps the stages' summaries).

On a terminal: a tqdm bar, erased when the work ends (``leave=False``), so ``dvc repro`` keeps only the
summaries. Elsewhere (a log, CI, a pipe), plain lines, ``dedup-check: near duplicates 12/40 chunks (30%),
14 s``: once the work has run ``interval`` seconds, at most one every ``interval`` seconds and one at the end;
work done sooner prints nothing, so small data and tests stay quiet. A terminal is a stream whose
``isatty()`` is true while ``CI`` is unset or empty. ``FMPROTO_PROGRESS`` overrides the choice: ``bar``,
``plain``, or ``off`` (nothing at all, ``line`` included); unset, empty or ``auto``: as above.
"""

import os
import sys
import time
from collections.abc import Callable

MODES: tuple[str, ...] = ("auto", "bar", "plain", "off")


class Progress:
    """Where long work is, on stderr: a tqdm bar on a terminal; elsewhere (a log, CI, a pipe) a plain line
    at most every ``interval`` seconds and one at the end."""

    def __init__(self, what: str, total: int | None, unit: str, *, stream=None, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        """``total`` None: unknown until ``advance_to`` gives it (the core's hooks know their totals)."""
        self.what, self.total, self.unit, self.done = what, None if total is None else int(total), unit, 0
        self.stream = sys.stderr if stream is None else stream  # at call time: pytest swaps sys.stderr
        self.interval, self.clock, self.note = float(interval), clock, ""
        self.mode, self.bar = _mode(self.stream), None
        self.start = self.last = clock()
        self.shown = None  # the count of the last plain line; None before the first

    def __enter__(self) -> "Progress":
        if self.mode == "bar":
            from tqdm import tqdm  # loaded only for a bar: logs, pipes and tests never need it

            # A terminal of no size (a pty nobody sized, as `script` makes) hides the bar: 80x24 then.
            sized = _columns(self.stream) > 0
            self.bar = tqdm(total=self.total, desc=self.what, unit=self.unit, file=self.stream, leave=False,
                            dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif (self.mode == "plain" and exc[0] is None and self.shown != self.done
              and (self.shown is not None or self.clock() - self.start >= self.interval)):
            self._plain()

    def advance(self, n: int = 1, note: str = "") -> None:
        """``n`` more units done; ``note``: a short status, the bar's postfix or the end of the plain line."""
        self.done += int(n)
        self.note = note or self.note
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(int(n))
        elif self.mode == "plain" and self.clock() - self.last >= self.interval:
            self._plain()

    def advance_to(self, done: int, total: int | None = None, note: str = "") -> None:
        """Advance to ``done`` of ``total`` (if given): the shape of the core's ``on_chunk(done, total)`` hooks."""
        if total is not None and total != self.total:
            self.total = int(total)
            if self.bar is not None:
                self.bar.total = self.total
        self.advance(int(done) - self.done, note)

    def line(self, text: str) -> None:
        """A line that stays in the output, above the bar on a terminal."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.mode != "off":
            print(text, file=self.stream, flush=True)

    def _plain(self) -> None:
        self.last, self.shown = self.clock(), self.done
        count = f"{self.done:,}" if self.total is None else f"{self.done:,}/{self.total:,}"
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        note = f", {self.note}" if self.note else ""
        self.line(f"{self.what} {count} {self.unit}{share}, {self.last - self.start:.0f} s{note}")


def _mode(stream) -> str:
    """``bar``, ``plain`` or ``off``, from ``FMPROTO_PROGRESS``, else the stream and ``CI``."""
    chosen = os.environ.get("FMPROTO_PROGRESS", "").strip().lower() or "auto"
    if chosen not in MODES:
        raise ValueError(f"FMPROTO_PROGRESS must be one of {', '.join(map(repr, MODES))} (or unset); got {chosen!r}")
    if chosen != "auto":
        return chosen
    terminal = getattr(stream, "isatty", None)
    return "bar" if callable(terminal) and terminal() and not os.environ.get("CI") else "plain"


def _columns(stream) -> int:
    """The width of the terminal behind ``stream``; 0 when it has none or tells none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0
