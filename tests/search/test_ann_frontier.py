"""The ANN frontier and the hnswlib backend: recall against a naive float64 search, the cheapest setting by
hand, hnswlib's determinism, the ann-index and ann-frontier stages' errors and outputs. No test reads a clock."""

import itertools
import json
from pathlib import Path

import annoy
import numpy as np
import pytest
import yaml

from conftest import REPO
from fmproto.search import ann, ann_eval, ann_files
from fmproto.pipeline import io
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import ann as ann_params
from fmproto.pipeline.inputs import fingerprint
from stages import ann_frontier, ann_index

hnswlib = pytest.importorskip("hnswlib")

# A small clustered set: 8 blobs in 12-D, so neighbours are neither trivial nor random.
_rng = np.random.default_rng(5)
_CENTRES = _rng.normal(scale=4.0, size=(8, 12))
X_TRAIN = (_CENTRES[_rng.integers(0, 8, 400)] + _rng.normal(size=(400, 12))).astype(np.float32)
X_QUERY = (_CENTRES[_rng.integers(0, 8, 50)] + _rng.normal(size=(50, 12))).astype(np.float32)
K = 5
LINE = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [10, 0]], dtype=np.float32)


def naive_distances(X_query, X, metric="euclidean"):
    """Every query-to-row distance in float64 (angular: Annoy's sqrt(2 - 2 cos)), shape (n_queries, n)."""
    Q, X = np.asarray(X_query, np.float64), np.asarray(X, np.float64)
    if metric == "angular":
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))


def naive_recall(found_distances, X_query, X, k, rtol=1e-3):
    """ann-benchmarks' recall, written out: hits within the true k-th distance, over all k * n_queries places."""
    kth = np.sort(naive_distances(X_query, X), axis=1)[:, k - 1]
    hits = sum(sum(1 for d in row[:k] if d <= t * (1 + rtol)) for row, t in zip(found_distances, kth))
    return hits / (k * len(found_distances))


def annoy_direct(n_trees, search_k, seed):
    """Annoy called directly, as its README does (seeded, one build thread): each query's distances."""
    index = annoy.AnnoyIndex(X_TRAIN.shape[1], "euclidean")
    index.set_seed(seed)
    for i, row in enumerate(X_TRAIN):
        index.add_item(i, row.tolist())
    index.build(n_trees, n_jobs=1)
    return [index.get_nns_by_vector(q.tolist(), K, search_k, True)[1] for q in X_QUERY]


def hnswlib_direct(m, ef, seed, ef_construction):
    """hnswlib called directly (one thread, seeded): each query's euclidean distances."""
    index = hnswlib.Index(space="l2", dim=X_TRAIN.shape[1])
    index.init_index(max_elements=len(X_TRAIN), ef_construction=ef_construction, M=m, random_seed=seed)
    index.add_items(X_TRAIN, np.arange(len(X_TRAIN)), num_threads=1)
    index.set_ef(ef)
    _, squared = index.knn_query(X_QUERY, k=K, num_threads=1)
    return np.sqrt(np.maximum(squared, 0))


class FakeClock:
    """Each call returns one second more than the last: every timed block lasts exactly one second."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


GRIDS = {"annoy": ([2, 6], [5, 40, 400]), "hnswlib": ([4, 8], [1, 8, 40])}


@pytest.fixture(scope="module")
def points():
    exact = np.sort(naive_distances(X_QUERY, X_TRAIN), axis=1)[:, :K]
    return ann_eval.frontier(X_TRAIN, X_QUERY, exact, K, GRIDS, seed=3, ef_construction=30, clock=FakeClock())


# ---------------------------------------------------------------- the frontier


def test_frontier_lists_every_setting_in_order(points):
    expected = ([("annoy", n, s) for n, s in itertools.product(*GRIDS["annoy"])]
                + [("hnswlib", m, e) for m, e in itertools.product(*GRIDS["hnswlib"])])
    got = [(p["backend"], p.get("n_trees", p.get("M")), p.get("search_k", p.get("ef"))) for p in points]
    assert got == expected
    assert set(points[0]) == {"backend", "n_trees", "search_k", "recall", "queries_per_second", "build_seconds"}
    assert set(points[-1]) == {"backend", "M", "ef", "recall", "queries_per_second", "build_seconds"}


def test_frontier_rates_come_from_the_clock(points):
    # The fake clock makes every build and every query pass take one second.
    assert all(p["queries_per_second"] == len(X_QUERY) and p["build_seconds"] == 1.0 for p in points)


@pytest.mark.parametrize("backend", ["annoy", "hnswlib"])
def test_frontier_recall_matches_an_independent_computation(points, backend):
    for p in (p for p in points if p["backend"] == backend):
        if backend == "annoy":
            found = annoy_direct(p["n_trees"], p["search_k"], seed=3)
        else:
            found = hnswlib_direct(p["M"], p["ef"], seed=3, ef_construction=30)
        assert p["recall"] == round(naive_recall(found, X_QUERY, X_TRAIN, K), 5), p


def test_frontier_spans_low_and_full_recall(points):
    # search_k 400 >= 400 items: Annoy ranks them all; a tiny search_k on 2 trees misses some.
    annoy_points = {(p["n_trees"], p["search_k"]): p["recall"] for p in points if p["backend"] == "annoy"}
    assert annoy_points[(2, 400)] == annoy_points[(6, 400)] == 1.0
    assert annoy_points[(2, 5)] < 0.9


def test_frontier_skips_an_empty_grid():
    exact = np.sort(naive_distances(X_QUERY, X_TRAIN), axis=1)[:, :K]
    points = ann_eval.frontier(X_TRAIN, X_QUERY, exact, K, {"annoy": ([3], [50]), "hnswlib": ([], [10])})
    assert [p["backend"] for p in points] == ["annoy"] and points[0]["queries_per_second"] > 0


def test_exact_reference_units_and_rate():
    for metric in ("euclidean", "angular"):
        distances, rate = ann_eval.exact_reference(X_TRAIN, X_QUERY, K, metric, clock=FakeClock())
        np.testing.assert_allclose(distances, np.sort(naive_distances(X_QUERY, X_TRAIN, metric), axis=1)[:, :K],
                                   rtol=1e-5, atol=1e-6)
        assert rate == len(X_QUERY)


def test_recall_rows_and_lines(points):
    rows = ann_eval.recall_rows(points, "hnswlib")
    assert rows[0] == {"series": "M=4", "ef": 1, "recall": points[6]["recall"]} and len(rows) == 6
    lines = ann_eval.frontier_lines(points)
    assert list(lines) == ["annoy, n_trees=2", "annoy, n_trees=6", "hnswlib, M=4", "hnswlib, M=8"]
    assert lines["annoy, n_trees=6"] == ([p["recall"] for p in points[3:6]], [50.0] * 3)


# ---------------------------------------------------------------- the cheapest setting, by hand

MADE_UP = [
    {"backend": "annoy", "n_trees": 10, "search_k": 100, "recall": 0.90, "queries_per_second": 3000.0},
    {"backend": "annoy", "n_trees": 10, "search_k": 1000, "recall": 0.96, "queries_per_second": 1500.0},
    {"backend": "annoy", "n_trees": 20, "search_k": 1000, "recall": 0.97, "queries_per_second": 1200.0},
    {"backend": "annoy", "n_trees": 10, "search_k": 10000, "recall": 0.995, "queries_per_second": 300.0},
    {"backend": "hnswlib", "M": 8, "ef": 10, "recall": 0.93, "queries_per_second": 9000.0},
    {"backend": "hnswlib", "M": 16, "ef": 20, "recall": 0.979, "queries_per_second": 5000.0},
    {"backend": "hnswlib", "M": 16, "ef": 40, "recall": 0.99, "queries_per_second": 3800.0},
    {"backend": "hnswlib", "M": 32, "ef": 40, "recall": 0.992, "queries_per_second": 3800.0},
]


@pytest.mark.parametrize("recall, backend, expected", [
    (0.95, "annoy", 1),  # 1,500/s beats 1,200/s; 0.90 at 3,000/s does not reach
    (0.95, "hnswlib", 5),
    (0.99, "annoy", 3),
    (0.99, "hnswlib", 6),  # exactly 0.99 reaches; the equal rate at 0.992 comes later, so the earlier wins
    (0.90, "annoy", 0),
    (0.999, "hnswlib", None),  # nothing reaches it
])
def test_cheapest_by_hand(recall, backend, expected):
    found = ann_eval.crossover(MADE_UP, 0.0, [recall])[str(recall)][backend]
    assert found == (None if expected is None else {**MADE_UP[expected], "beats_exact": True})


def test_crossover_by_hand():
    table = ann_eval.crossover(MADE_UP, 1500.0, [0.95, 0.99, 0.999])
    assert list(table) == ["0.95", "0.99", "0.999"] and list(table["0.95"]) == ["annoy", "hnswlib"]
    assert table["0.95"]["annoy"] == {**MADE_UP[1], "beats_exact": False}  # equal to exact's rate: does not beat it
    assert table["0.95"]["hnswlib"] == {**MADE_UP[5], "beats_exact": True}
    assert table["0.99"]["annoy"] == {**MADE_UP[3], "beats_exact": False}
    assert table["0.99"]["hnswlib"] == {**MADE_UP[6], "beats_exact": True}
    assert table["0.999"] == {"annoy": None, "hnswlib": None}
    assert "beats_exact" not in MADE_UP[1]  # the frontier's entries are not changed


# ---------------------------------------------------------------- hnswlib: determinism, recall, units


def test_hnswlib_same_seed_same_results_and_bytes(tmp_path):
    first = ann.build(X_TRAIN, "hnswlib", m=8, ef_construction=40, seed=11)
    second = ann.build(X_TRAIN, "hnswlib", m=8, ef_construction=40, seed=11)
    a, b = ann.query(first, X_QUERY, 10, ef=12), ann.query(second, X_QUERY, 10, ef=12)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    for name, index in (("a.idx", first), ("b.idx", second), ("c.idx", ann.build(X_TRAIN, "hnswlib", m=8, ef_construction=40, seed=12))):
        index.save_index(str(tmp_path / name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.idx", "b.idx", "c.idx"]  # no suffix added
    assert (tmp_path / "a.idx").read_bytes() == (tmp_path / "b.idx").read_bytes()
    assert (tmp_path / "a.idx").read_bytes() != (tmp_path / "c.idx").read_bytes()  # the seed draws the layers


@pytest.mark.parametrize("metric", ["euclidean", "angular"])
def test_hnswlib_recall_and_distances_against_exact(metric):
    index = ann.build(X_TRAIN, "hnswlib", metric=metric, m=12, ef_construction=100, seed=0)
    distances, indices = ann.query(index, X_QUERY, 10, ef=50)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    D = naive_distances(X_QUERY, X_TRAIN, metric)
    # The distances are the true ones of the returned items, in Annoy's units, ascending.
    np.testing.assert_allclose(distances, np.take_along_axis(D, indices, axis=1), rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(distances, axis=1) >= 0)
    exact = np.sort(D, axis=1)[:, :10]
    assert ann.recall_at_k(distances, exact) >= 0.98  # measured 1.0 on this set


def test_hnswlib_built_by_two_threads_holds_every_row():
    index = ann.build(X_TRAIN, "hnswlib", m=12, ef_construction=100, seed=0, threads=2)
    distances, indices = ann.query(index, X_TRAIN, 1, ef=50)
    assert index.get_current_count() == len(X_TRAIN)
    np.testing.assert_array_equal(distances[:, 0], 0)  # each row finds itself (or an exact duplicate)
    np.testing.assert_array_equal(X_TRAIN[indices[:, 0]], X_TRAIN)


def test_hnswlib_on_the_line_ties_by_id():
    index = ann.build(LINE, "hnswlib", m=4, ef_construction=10, seed=0)
    distances, indices = ann.query(index, np.array([[1.5, 0], [9, 0]]), k=4, ef=10)
    np.testing.assert_array_equal(indices, [[1, 2, 0, 3], [4, 3, 2, 1]])  # 1, 2 at 0.5 and 0, 3 at 1.5: lower id first
    np.testing.assert_allclose(distances, [[0.5, 0.5, 1.5, 1.5], [1, 6, 7, 8]], rtol=1e-6)


@pytest.mark.parametrize("backend, knobs", [("annoy", {"n_trees": 2}), ("hnswlib", {"m": 4, "ef_construction": 10})])
def test_one_api_for_both_backends(backend, knobs):
    index = ann.build(LINE, backend, **knobs)
    distances, indices = ann.query(index, LINE[:1], 2, search_k=100, ef=5)
    np.testing.assert_array_equal(indices, [[0, 1]])
    np.testing.assert_array_equal(distances, np.float32([[0, 1]]))
    with pytest.raises(ValueError, match=r"backend must be one of 'annoy', 'hnswlib'; got 'faiss'"):
        ann.build(LINE, "faiss")


def test_hnswlib_problem_names_what_is_missing(monkeypatch):
    assert ann.hnswlib_problem("euclidean") is None
    assert ann.hnswlib_problem("manhattan") == "metric 'manhattan' has no hnswlib space (euclidean, angular)"
    monkeypatch.setitem(__import__("sys").modules, "hnswlib", None)
    assert ann.hnswlib_problem("angular").startswith("hnswlib is not installed")


@pytest.mark.parametrize("call, match", [
    (lambda: ann.build(LINE, "hnswlib", metric="manhattan"), r"metric must be one of 'euclidean', 'angular'; got 'manhattan'"),
    (lambda: ann.build(LINE, "hnswlib", m=1), r"m must be an integer >= 2; got 1"),
    (lambda: ann.build(LINE, "hnswlib", ef_construction=0), r"ef_construction must be an integer >= 1; got 0"),
    (lambda: ann.build(LINE, "hnswlib", seed=-1), r"seed must be an integer in 0..2147483647; got -1"),
    (lambda: ann.build(LINE[:0], "hnswlib"), r"X must have at least one row; got 0"),
    (lambda: ann.build(LINE, "hnswlib", threads=0), r"threads must be an integer in 1..256; got 0"),
    (lambda: ann.query(ann.build(LINE, "hnswlib"), LINE, k=6), r"k must be an integer in 1..5 \(the items in the index\); got 6"),
    (lambda: ann.query(ann.build(LINE, "hnswlib"), LINE, k=2, ef=0), r"ef must be an integer >= 1; got 0"),
    (lambda: ann.query(ann.build(LINE, "hnswlib"), np.zeros((1, 3)), k=2), r"X_query has 3 features but the index has 2"),
])
def test_hnswlib_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_missing_hnswlib_is_one_line(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "hnswlib", None)  # import hnswlib now raises ImportError
    with pytest.raises(ValueError, match=r"^hnswlib is not installed; it is one of fmproto's dependencies: make env installs them"):
        ann.build(LINE, "hnswlib")


def test_params_backends_match_the_core():
    for backend in ann.BACKENDS:
        assert ann_params.SPEC["backend"]("ann.backend", backend) == backend
    with pytest.raises(P.ParamError):
        ann_params.SPEC["backend"]("ann.backend", "faiss")


# ---------------------------------------------------------------- the stages: params errors and a small run


def write_params(path: Path, frontier=None, **changes) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ann"].update({"ks": [1, 3], "search_k": 100, "recall_k": 3, "hnsw_ef_construction": 20, **changes})
    params["ann_frontier"].update({"search_k": [10, 100], "queries": 20, "n_trees": [2, 4], "hnsw_m": [4],
                                   "hnsw_ef": [5, 20], **(frontier or {})})
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 120-image dataset of 6x6 uint8 images in 3 classes and its split (90 train, 30 valid)."""
    root = tmp_path_factory.mktemp("ann_stage")
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 3
    images = np.clip(rng.normal(80 * labels[:, None, None], 30, size=(120, 6, 6)), 0, 255).astype(np.uint8)
    io.save_arrays(root / "train.npz", images=images, labels=labels, classes=np.array(["a", "b", "c"]))
    order = rng.permutation(120)
    io.save_arrays(root / "split.npz", train=np.sort(order[:90]), valid=np.sort(order[90:]), dropped=np.zeros(0, int),
                   train_fingerprint=np.array(fingerprint(images, labels)))  # what the split stage records
    return root


def run_stage(stage, inputs, params, out, capsys):
    args = ["--params", params, "--train", inputs / "train.npz", "--split", inputs / "split.npz"]
    if stage is ann_index:
        args += ["--index", out / "ann.idx", "--metrics", out / "ann.json", "--plots", out / "plots" / "accuracy_by_k.csv",
                 "--timings", out / "t" / "ann-index.json"]
    else:
        args += ["--recall-search-k", out / "plots" / "recall_vs_search_k.csv", "--recall-ef", out / "plots" / "recall_vs_ef.csv",
                 "--frontier", out / "t" / "frontier.json", "--figure", out / "t" / "frontier.png"]
    try:
        stage.main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr()


@pytest.mark.parametrize("stage, changes, frontier, fragment", [
    (ann_index, {"backend": "faiss"}, {}, "ann.backend must be one of 'annoy', 'hnswlib'; got 'faiss'"),
    (ann_index, {"hnsw_m": 1}, {}, "ann.hnsw_m must be at least 2; got 1"),
    (ann_index, {"hnsw_m": 10_000}, {}, "ann.hnsw_m must be at most 256; got 10000"),
    (ann_index, {"hnsw_ef": 0}, {}, "ann.hnsw_ef must be at least 1; got 0"),
    (ann_index, {"hnsw_ef_construction": 10**6}, {}, "ann.hnsw_ef_construction must be at most 10000"),
    (ann_index, {"backend": "hnswlib", "metric": "manhattan"}, {},
     "ann.backend asks for hnswlib, but metric 'manhattan' has no hnswlib space (euclidean, angular)"),
    (ann_frontier, {"hnsw_ef_construction": 10**6}, {}, "ann.hnsw_ef_construction must be at most 10000"),
    (ann_frontier, {}, {"hnsw_m": [16, 1]}, "ann_frontier.hnsw_m[1] must be at least 2; got 1"),
    (ann_frontier, {}, {"n_trees": [5, 5]}, "ann_frontier.n_trees must not repeat items"),
    (ann_frontier, {}, {"hnsw_ef": []}, "ann_frontier.hnsw_ef must be a list of 1 to 64 items"),
    (ann_frontier, {}, {"recalls": [0.95, 1.5]}, "ann_frontier.recalls[1] must be at most 1; got 1.5"),
    (ann_frontier, {}, {"recalls": [float("nan")]}, "ann_frontier.recalls[0] must be a finite number; got nan"),
    (ann_frontier, {}, {"recalls": [0]}, "ann_frontier.recalls[0] must be greater than 0; got 0"),
    (ann_frontier, {}, {"frontier_recalls": [0.9]}, "unknown param ann_frontier.frontier_recalls"),
    (ann_frontier, {"metric": "manhattan"}, {}, "ann_frontier.hnsw_m asks for hnswlib (set it to [] to leave it out), "
                                                "but metric 'manhattan' has no hnswlib space"),
])
def test_stage_params_errors_are_one_line(inputs, tmp_path, capsys, stage, changes, frontier, fragment):
    params = write_params(tmp_path / "params.yaml", frontier, **changes)
    code, captured = run_stage(stage, inputs, params, tmp_path / "out", capsys)
    name = "ann-index" if stage is ann_index else "ann-frontier"
    err = captured.err
    assert code == 1 and err.startswith(f"{name}: error: {params}: ") and fragment in err, err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_stages_say_when_hnswlib_is_missing(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "hnswlib", None)
    code, captured = run_stage(ann_index, inputs, write_params(tmp_path / "p.yaml", backend="hnswlib"), tmp_path / "out", capsys)
    assert code == 1 and "ann.backend asks for hnswlib, but hnswlib is not installed" in captured.err
    code, captured = run_stage(ann_frontier, inputs, write_params(tmp_path / "p.yaml"), tmp_path / "out", capsys)
    assert code == 1 and "ann_frontier.hnsw_m asks for hnswlib (set it to [] to leave it out), but hnswlib is not" in captured.err
    # Annoy alone needs no hnswlib.
    params = write_params(tmp_path / "p.yaml", {"hnsw_m": []})
    assert run_stage(ann_index, inputs, params, tmp_path / "out", capsys)[0] == 0
    assert run_stage(ann_frontier, inputs, params, tmp_path / "out", capsys)[0] == 0
    assert (tmp_path / "out" / "plots" / "recall_vs_ef.csv").read_text() == "series,ef,recall\n"


@pytest.mark.parametrize("backend", ["annoy", "hnswlib"])
def test_index_stage_writes_its_metrics_and_index(inputs, tmp_path, capsys, backend):
    out = tmp_path / "out"
    code, captured = run_stage(ann_index, inputs, write_params(tmp_path / "params.yaml", backend=backend), out, capsys)
    assert code == 0, captured.err
    metrics = io.read_json(out / "ann.json")
    assert metrics["backend"] == backend and metrics["recall_at_k"]["k"] == 3 and list(metrics["by_k"]) == ["1", "3"]
    assert ("n_trees" in metrics) == (backend == "annoy") and ("M" in metrics) == (backend == "hnswlib")
    by_k = io.read_csv(out / "plots" / "accuracy_by_k.csv")
    assert by_k["accuracy"].tolist() == [v["accuracy"] for v in metrics["by_k"].values()]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["accuracy_by_k.csv"]
    assert json.loads((out / "t" / "ann-index.json").read_text())["queries_per_second"] > 0
    if backend == "hnswlib":  # the saved index is hnswlib's file and loads as such
        index = hnswlib.Index(space="l2", dim=36)
        index.load_index(str(out / "ann.idx"))
        assert index.get_current_count() == 90
    else:
        assert ann_files.load_annoy_index(out / "ann.idx", 36, "euclidean").get_n_items() == 90


def test_frontier_stage_writes_the_frontier(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code, captured = run_stage(ann_frontier, inputs, write_params(tmp_path / "params.yaml"), out, capsys)
    assert code == 0, captured.err
    frontier = json.loads((out / "t" / "frontier.json").read_text())
    assert len(frontier["frontier"]) == 2 * 2 + 1 * 2 and frontier["n_queries"] == 20 and frontier["k"] == 3
    assert frontier["exact_queries_per_second"] > 0 and set(frontier["cheapest"]) == {"0.95", "0.99"}
    # The versioned CSVs hold the frontier's recalls and nothing that changes run to run.
    annoy_csv = io.read_csv(out / "plots" / "recall_vs_search_k.csv")
    assert list(annoy_csv.columns) == ["series", "search_k", "recall"] and list(annoy_csv["series"].unique()) == ["n_trees=2", "n_trees=4"]
    assert annoy_csv["recall"].tolist() == [p["recall"] for p in frontier["frontier"] if p["backend"] == "annoy"]
    assert io.read_csv(out / "plots" / "recall_vs_ef.csv")["series"].tolist() == ["M=4", "M=4"]
    assert (out / "t" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "ann.idx").exists() and "cheapest reaching recall 0.95: annoy" in captured.out
