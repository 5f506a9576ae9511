"""fmproto.pipeline.progress: plain lines in a log, a tqdm bar on a terminal, nothing on stdout; and the core's
progress hooks, which are called with rising counts that end at the total and change no result."""

import io
import os
import select

import numpy as np
import pytest

from fmproto.data import dedup
from fmproto.evaluation import estimators, final
from fmproto.pipeline.progress import Progress
from fmproto.search import ann, ann_eval
from fmproto.search.engine import KnnIndex
from fmproto.search.scaling import error_curve


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    """The tests choose the mode themselves, whatever CI or the caller's shell set."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("FMPROTO_PROGRESS", raising=False)


def run(stream, steps, *, total=5, end=None, interval=10.0, notes=None):
    """Advance one unit at each time in ``steps`` (with ``notes``), leave the block at ``end``."""
    clock = Clock()
    with Progress("stage: work", total, "chunks", stream=stream, interval=interval, clock=clock) as progress:
        for n, t in enumerate(steps):
            clock.now = t
            progress.advance(note=notes[n] if notes else "")
        clock.now = steps[-1] if end is None else end
    return stream.getvalue()


# ----------------------------------------------------------------------------------------------- plain lines


def test_plain_lines_are_throttled_by_interval_and_end_with_a_final_line():
    text = run(io.StringIO(), [4, 8, 12, 16, 20], end=21)
    assert text.splitlines() == ["stage: work 3/5 chunks (60%), 12 s", "stage: work 5/5 chunks (100%), 21 s"]


def test_a_line_every_interval_and_no_repeat_of_the_last():
    text = run(io.StringIO(), [10, 15, 20, 25, 30], interval=10)
    assert text.splitlines() == ["stage: work 1/5 chunks (20%), 10 s", "stage: work 3/5 chunks (60%), 20 s",
                                 "stage: work 5/5 chunks (100%), 30 s"]


def test_work_done_within_the_first_interval_prints_nothing():
    assert run(io.StringIO(), [1, 2, 3, 4, 5], end=9.9) == ""


def test_work_past_the_interval_without_a_line_still_gets_the_final_one():
    assert run(io.StringIO(), [1, 2, 3, 4, 5], end=10).splitlines() == ["stage: work 5/5 chunks (100%), 10 s"]


def test_the_plain_line_ends_with_the_note():
    text = run(io.StringIO(), [11], total=1, notes=["train"])
    assert text.splitlines() == ["stage: work 1/1 chunks (100%), 11 s, train"]


def test_no_final_line_after_an_exception():
    stream, clock = io.StringIO(), Clock()
    with pytest.raises(RuntimeError, match="boom"):
        with Progress("stage: work", 4, "chunks", stream=stream, clock=clock) as progress:
            clock.now = 12
            progress.advance()
            clock.now = 15
            progress.advance()
            clock.now = 40  # past the interval: a final line would be due
            raise RuntimeError("boom")
    assert stream.getvalue().splitlines() == ["stage: work 1/4 chunks (25%), 12 s"]


def test_advance_to_takes_the_total_from_the_hook():
    stream, clock = io.StringIO(), Clock()
    with Progress("stage: work", None, "rows", stream=stream, clock=clock) as progress:
        clock.now = 10
        progress.advance_to(1200, 4800)
        clock.now = 25
        progress.advance_to(4800, 4800)
    assert stream.getvalue().splitlines() == ["stage: work 1,200/4,800 rows (25%), 10 s",
                                              "stage: work 4,800/4,800 rows (100%), 25 s"]
    assert progress.done == 4800 and progress.total == 4800


def test_line_is_printed_as_is():
    stream = io.StringIO()
    with Progress("stage: work", 2, "chunks", stream=stream) as progress:
        progress.line("60,000 exact: done")
    assert stream.getvalue() == "60,000 exact: done\n"


# ----------------------------------------------------------------------------------------------- terminal


def test_a_terminal_gets_a_tqdm_bar_that_is_erased_at_the_end():
    stream = Terminal()
    with Progress("stage: work", 3, "chunks", stream=stream) as progress:
        progress.advance(note="train")
        progress.line("kept line")
        progress.advance(2)
    text = stream.getvalue()
    assert "stage: work:" in text and "chunks" in text and "\r" in text  # tqdm's desc, unit and redraws
    assert "%|" in text and "/3 [" in text  # the bar itself, 80 columns wide: this stream tells no size
    assert "train" in text  # the note as the bar's postfix
    assert "kept line\n" in text
    assert text.endswith("\r") and text.split("\r")[-2].strip() == ""  # leave=False: blanked, nothing left


@pytest.mark.parametrize("ci", ["1", "true"])
def test_ci_forces_plain_lines_on_a_terminal(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    text = run(Terminal(), [4, 8, 12, 16, 20], end=21)
    assert "\r" not in text and text.splitlines()[-1] == "stage: work 5/5 chunks (100%), 21 s"


def test_an_empty_ci_is_not_ci(monkeypatch):
    monkeypatch.setenv("CI", "")
    assert "\r" in run(Terminal(), [1, 2, 3, 4, 5])


@pytest.mark.parametrize(("mode", "stream", "bar"), [("plain", Terminal, False), ("bar", io.StringIO, True),
                                                     ("auto", Terminal, True), ("", io.StringIO, False)])
def test_fmproto_progress_chooses_the_mode(monkeypatch, mode, stream, bar):
    monkeypatch.setenv("FMPROTO_PROGRESS", mode)
    text = run(stream(), [4, 8, 12, 16, 20], end=21)
    assert ("\r" in text) == bar and "stage: work" in text


def test_fmproto_progress_off_prints_nothing_at_all(monkeypatch):
    monkeypatch.setenv("FMPROTO_PROGRESS", "off")
    for stream in (io.StringIO(), Terminal()):
        with Progress("stage: work", 2, "chunks", stream=stream, clock=Clock()) as progress:
            progress.advance(2)
            progress.line("not shown")
        assert stream.getvalue() == ""


def test_an_unknown_fmproto_progress_names_the_allowed_values(monkeypatch):
    monkeypatch.setenv("FMPROTO_PROGRESS", "bars")
    with pytest.raises(ValueError, match=r"FMPROTO_PROGRESS must be one of 'auto', 'bar', 'plain', 'off'.*'bars'"):
        Progress("stage: work", 2, "chunks", stream=io.StringIO())


@pytest.mark.parametrize("mode", ["plain", "bar"])
def test_nothing_goes_to_stdout(monkeypatch, capsys, mode):
    monkeypatch.setenv("FMPROTO_PROGRESS", mode)
    clock = Clock()
    with Progress("stage: work", 2, "chunks", interval=1, clock=clock) as progress:  # sys.stderr, as pytest set it
        clock.now = 5
        progress.advance(note="first")
        progress.line("a kept line")
        progress.advance()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "a kept line" in captured.err and "stage: work" in captured.err


# ----------------------------------------------------------------------------------------------- core hooks


def near_copies(n: int, shape: tuple, seed: int) -> np.ndarray:
    """``n`` rows of ``shape``: random bases (from ``seed`` alone) in turn, each copy one pixel up by one."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 9, size=(10, *shape)).astype(np.float32)[np.arange(n) % 10].reshape(n, -1)
    rows[np.arange(n), rng.integers(0, rows.shape[1], n)] += 1
    return rows.reshape(n, *shape)


def recorder():
    calls = []
    return calls, lambda done, total: calls.append((done, total))


def assert_rising_to_the_total(calls, total):
    assert calls and calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and done[0] > 0


@pytest.mark.parametrize("within", [True, False])
def test_radius_pairs_on_chunk_changes_no_result(within):
    X = near_copies(300, (40,), seed=3)
    Q = None if within else X[:130] + np.eye(40, dtype=np.float32)[np.arange(130) % 40]  # one pixel off
    index = KnnIndex(8).fit(X, "sqeuclidean")
    plain = index.radius_pairs(Q, 3.0, max_pairs=500, chunk=32)
    calls, hook = recorder()
    hooked = index.radius_pairs(Q, 3.0, max_pairs=500, chunk=32, on_chunk=hook)
    for a, b in zip(plain[:3], hooked[:3]):
        np.testing.assert_array_equal(a, b)
    assert plain[3] == hooked[3] and len(plain[0]) > 0
    assert_rising_to_the_total(calls, 300 if within else 130)
    assert len(calls) > 2


def test_find_all_on_chunk_counts_the_rows_of_the_three_near_searches():
    train, test = near_copies(60, (4, 4), seed=8), near_copies(25, (4, 4), seed=8)  # test: near copies of train
    train[5] = train[9]  # an exact pair beside the near ones
    y_train, y_test = np.arange(60) % 2, np.arange(25) % 2
    table, metrics = dedup.find_all(train, test, y_train, y_test, ["a", "b"], 0.6, chunk=8, max_pairs=50)
    calls, hook = recorder()
    hooked_table, hooked_metrics = dedup.find_all(train, test, y_train, y_test, ["a", "b"], 0.6, chunk=8,
                                                  max_pairs=50, on_chunk=hook)
    assert hooked_metrics == metrics and metrics["near"]["train"] > 0
    assert hooked_table.equals(table)
    assert_rising_to_the_total(calls, 2 * 60 + 25)
    assert {60, 85} <= {d for d, _ in calls}  # each set's search ends on its own rows


def test_near_duplicates_reports_its_rows_when_there_is_nothing_to_search():
    calls, hook = recorder()
    pairs = dedup.near_duplicates(np.zeros((7, 2, 2)), 0.0, on_chunk=hook)
    assert len(pairs) == 0 and calls == [(7, 7)]


def test_frontier_on_build_changes_no_point():
    rng = np.random.default_rng(5)
    X_train, X_query = rng.normal(size=(200, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    exact, _ = ann_eval.exact_reference(X_train, X_query, 3, "euclidean")
    grids = {"annoy": ([2, 4], [20, 60])}
    if ann.hnswlib_problem("euclidean") is None:
        grids["hnswlib"] = ([4], [10])

    def still():  # a clock that never moves: equal rates in both runs
        return 0.0

    plain = ann_eval.frontier(X_train, X_query, exact, 3, grids, seed=1, ef_construction=20, clock=still)
    calls, hook = recorder()
    hooked = ann_eval.frontier(X_train, X_query, exact, 3, grids, seed=1, ef_construction=20, clock=still,
                               on_build=hook)
    assert hooked == plain
    n_builds = sum(len(sizes) for sizes, _ in grids.values())
    assert calls == [(n, n_builds) for n in range(1, n_builds + 1)]


def test_error_curve_on_search_changes_no_row():
    rng = np.random.default_rng(5)
    X_train, y_train = rng.normal(size=(120, 6)), rng.integers(0, 3, 120)
    X_valid, y_valid = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    args = (X_train, y_train, X_valid, y_valid, 3, [30, 60, 120], [1, 3])
    options = {"repeats": 2, "metric": "euclidean", "weights": "uniform", "seed": 4}
    rows, timings = error_curve(*args, **options)
    calls, hook = recorder()
    hooked_rows, hooked_timings = error_curve(*args, **options, on_search=hook)
    assert hooked_rows == rows
    assert [(t["n"], t["repeat"]) for t in hooked_timings] == [(t["n"], t["repeat"]) for t in timings]
    assert calls == [(n, 5) for n in range(1, 6)]  # 2 samples of 30 and of 60, the full set once


def test_score_methods_on_method_changes_no_score():
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    X = (rng.normal(size=(90, 4)) + 3 * y[:, None]).astype(np.float32)
    fit_sets = {m: (X[:60], y[:60], np.arange(60)) for m in estimators.METHODS}
    settings = {"knn": {"k": 3}, "ann": {"k": 3, "n_trees": 2, "search_k": 100}}

    def score(**hook):
        return final.score_methods(fit_sets, X[60:], y[60:], ["a", "b", "c"], settings, skip=["kmeans"],
                                   clock=iter(range(100)).__next__, **hook)

    summary, predictions, seconds, _ = score()
    calls, hook = recorder()
    hooked_summary, hooked_predictions, hooked_seconds, _ = score(on_method=hook)
    assert hooked_summary == summary and hooked_seconds == seconds
    assert predictions.keys() == hooked_predictions.keys()
    for method in predictions:
        np.testing.assert_array_equal(predictions[method], hooked_predictions[method])
    n = len(estimators.METHODS)
    assert calls == [(done, n) for done in range(1, n + 1)]  # the skipped method counts as done


def test_a_bar_on_a_terminal_of_no_size(monkeypatch):
    """A pseudo-terminal nobody sized (as `script` or a CI runner's pty): 0x0, where tqdm would hide the bar."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("FMPROTO_PROGRESS", raising=False)
    master, slave = os.openpty()
    with os.fdopen(slave, "w", encoding="utf-8") as stream:
        assert stream.isatty() and os.get_terminal_size(stream.fileno()).columns == 0
        with Progress("stage: work", 2, "epochs", stream=stream) as progress:
            progress.line("epoch 1")
            progress.advance()
            progress.advance()
        stream.flush()
        text = b""
        while select.select([master], [], [], 0.2)[0]:
            text += os.read(master, 1 << 16)
    os.close(master)
    assert "epoch 1" in text.decode() and "stage: work:   0%|" in text.decode() and "/2 [" in text.decode()
