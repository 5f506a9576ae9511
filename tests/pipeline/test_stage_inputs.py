"""Stage scripts run in-process on a small workspace: hostile params and wrong input files give one line
naming the file or param, exit status 1, and leave no output; odd but valid params give valid JSON."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, synthetic_dataset
from fmproto.pipeline import io
from fmproto.cli import main as cli
from stages import (ann_index, centroids, evaluate_valid, explain_test, features, ingest, kmeans,
                    knn_scaling, split)

CLASSES = ["circle", "square", "ring", "cross"]


def write_params(path: Path, data_dir: Path, **changes) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(dir=str(data_dir), verify="none", classes=CLASSES)
    params["ingest"].update(n_samples=8, per_class=3)
    params["kmeans"].update(n_prototypes=2, n_show=4)
    params["knn_scaling"].update(ks=[1, 3], repeats=2)
    params["ann"].update(ks=[1, 3], search_k=100, recall_k=3)
    params["ann_frontier"].update(search_k=[10, 100], queries=20)
    params["evaluate"].update(n_explain=2, explain_confusions=[["circle", "square"]])
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """ingest, split and features outputs of a 600-image synthetic dataset. Tests only read it."""
    root = tmp_path_factory.mktemp("workspace")
    raw = synthetic_dataset(root / "raw")
    params = write_params(root / "params.yaml", raw)
    ingest.main(["--params", str(params), "--data-dir", str(raw), "--train-out", str(root / "train.npz"),
                 "--test-out", str(root / "test.npz"), "--metrics", str(root / "ingest.json"),
                 "--figures", str(root / "figures")])
    pd.DataFrame({"kind": ["exact"], "sets": ["train"], "i": [0], "j": [4]}).to_csv(root / "pairs.csv", index=False)
    split.main(["--params", str(params), "--train", str(root / "train.npz"), "--pairs", str(root / "pairs.csv"),
                "--out", str(root / "split.npz"), "--metrics", str(root / "split.json")])
    features.main(["--params", str(params), "--train", str(root / "train.npz"), "--test", str(root / "test.npz"),
                   "--split", str(root / "split.npz"), "--out", str(root / "features.npz"),
                   "--curves", str(root / "curves.csv"), "--training", str(root / "training.json")])
    return root


def run_stage(module, args: list, capsys) -> tuple[int, str]:
    """Run a stage's main; its exit status (0 when it returned) and its stderr."""
    try:
        module.main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_line_failure(code: int, err: str, *fragments: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1 and len(err) < 300 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def evaluate_valid_args(ws: Path, out: Path, params: Path, **paths) -> list:
    files = {"train": ws / "train.npz", "split": ws / "split.npz", "features": ws / "features.npz", **paths}
    return ["--params", params, "--train", files["train"], "--split", files["split"], "--features", files["features"],
            "--metrics", out / "valid.json", "--timings", out / "timings.json"]


def test_swapped_flags_name_the_file_and_the_missing_array(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code, err = run_stage(centroids, ["--params", params, "--train", workspace / "split.npz",
                                      "--split", workspace / "train.npz", "--model", out / "c.npz",
                                      "--metrics", out / "c.json", "--plots", out / "plots", "--figures", out / "figs"],
                          capsys)
    assert_one_line_failure(code, err, f"{workspace / 'split.npz'}: has no array 'images'")
    assert not out.exists()


def test_split_indices_out_of_range(workspace, tmp_path, capsys):
    bad = tmp_path / "split.npz"  # it says it was made from this training set, but it was not
    record = io.load_arrays(workspace / "split.npz")["train_fingerprint"]
    io.save_arrays(bad, train=np.array([0, 1, 10**6]), valid=np.array([2, 3]), dropped=np.array([], np.int64),
                   train_fingerprint=record)
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code, err = run_stage(evaluate_valid, evaluate_valid_args(workspace, out, params, split=bad), capsys)
    assert_one_line_failure(code, err, f"{bad}: train indices must be 1-D within 0..599")
    assert not out.exists()


def test_wrong_dtype_is_named(workspace, tmp_path, capsys):
    data = io.load_arrays(workspace / "train.npz")
    bad = tmp_path / "train.npz"
    io.save_arrays(bad, images=data["images"].astype(np.float64), labels=data["labels"], classes=data["classes"])
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code, err = run_stage(evaluate_valid, evaluate_valid_args(workspace, tmp_path / "out", params, train=bad), capsys)
    assert_one_line_failure(code, err, "array 'images' has dtype float64, expected uint8")


@pytest.mark.parametrize("changes, fragment", [
    ({"evaluate__k": 5000}, "evaluate.k is 5000 but the model is fitted on 480 rows"),
    ({"evaluate__method": "ann", "evaluate__k": 10_000}, "evaluate.k is 10000 but the model is fitted on 480 rows"),
    ({"kmeans__n_prototypes": {"nope": 2}}, "kmeans.n_prototypes: unknown class name 'nope'"),
    ({"kmeans__lvq_learning_rate": float("inf")}, "kmeans.lvq_learning_rate must be a finite number; got inf"),
    ({"evaluate__explain_confusions": [["Shirt", "T-shirt/top"]]}, "evaluate.explain_confusions needs"),
])
def test_evaluate_params_checked_before_work(workspace, tmp_path, capsys, changes, fragment):
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", workspace / "raw", **changes)
    stage = explain_test if "explain" in str(changes) else evaluate_valid
    args = (evaluate_valid_args(workspace, out, params) if stage is evaluate_valid else
            ["--params", params, "--train", workspace / "train.npz", "--test", workspace / "test.npz",
             "--split", workspace / "split.npz", "--features", workspace / "features.npz",
             "--prototypes", workspace / "prototypes.npz", "--figures", out / "figs"])
    code, err = run_stage(stage, args, capsys)
    assert_one_line_failure(code, err, fragment, str(params))
    assert not out.exists()


def test_ann_ks_beyond_the_training_split(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", workspace / "raw", ann__ks=[1, 1000])
    code, err = run_stage(ann_index, ["--params", params, "--train", workspace / "train.npz", "--split",
                                      workspace / "split.npz", "--index", out / "a.ann", "--metrics", out / "a.json",
                                      "--plots", out / "by_k.csv"], capsys)
    assert_one_line_failure(code, err, "ann.ks and ann.recall_k must not exceed the 480 training images")


def test_kmeans_more_prototypes_than_images(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", workspace / "raw", kmeans__n_prototypes=500)
    code, err = run_stage(kmeans, ["--params", params, "--train", workspace / "train.npz", "--split",
                                   workspace / "split.npz", "--model", out / "k.npz", "--metrics", out / "k.json",
                                   "--plots", out / "plots", "--figures", out / "figs"], capsys)
    assert code == 1 and err.count("\n") == 1 and "500" in err
    assert not out.exists()


def strict_json(path: Path):
    """Parse JSON refusing NaN and Infinity, which Python's json would accept."""
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_sizes_below_the_full_split_leave_the_full_size_figures_out(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", workspace / "raw", knn_scaling__sizes=[100, 200])
    code, err = run_stage(knn_scaling, ["--params", params, "--train", workspace / "train.npz", "--split",
                                        workspace / "split.npz", "--metrics", out / "s.json", "--rows",
                                        out / "rows.csv", "--figures", out / "figs"], capsys)
    assert code == 0, err
    metrics = strict_json(out / "s.json")
    assert "best_k" not in metrics and "measured_error_full" not in metrics
    assert all("measured_error_full" not in v for v in metrics["by_k"].values())
    rows = pd.read_csv(out / "rows.csv")
    assert sorted(rows["n"].unique()) == [100, 200] and "seconds" not in rows.columns


def test_timings_stay_out_of_metrics(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code, err = run_stage(evaluate_valid, evaluate_valid_args(workspace, out, params), capsys)
    assert code == 0, err
    metrics, timings = strict_json(out / "valid.json"), strict_json(out / "timings.json")
    assert not [key for key in metrics if "second" in key]
    assert set(timings) == {"fit_seconds", "predict_seconds", "queries_per_second"}


def explain_args(ws: Path, target: str, out: Path, params: Path) -> list:
    return ["explain", target, "--params", params, "--train", ws / "train.npz", "--test", ws / "test.npz",
            "--split", ws / "split.npz", "--features", ws / "features.npz", "--out", out]


@pytest.mark.parametrize("target, message", [
    ("-1", "-1 is not a test-set index (0..159) nor an existing image file"),
    ("4.0", "4.0 is not a test-set index (0..159) nor an existing image file"),
    ("+3", "+3 is not a test-set index (0..159) nor an existing image file"),
    ("\u0663", "\u0663 is not a test-set index (0..159) nor an existing image file"),  # an Arabic-Indic 3
    ("160", "test index 160 is outside 0..159"),
    ("missing.png", "missing.png: file not found"),
])
def test_explain_says_what_a_target_is_not(workspace, tmp_path, capsys, target, message):
    out = tmp_path / "why.png"
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code, err = run_stage(cli, explain_args(workspace, target, out, params), capsys)
    assert_one_line_failure(code, err)
    assert err == f"fmproto explain: error: {message}\n"
    assert not out.exists()


def test_explain_takes_an_index_with_leading_zeros(workspace, tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code, err = run_stage(cli, explain_args(workspace, "007", tmp_path / "why.png", params), capsys)
    assert code == 0, err
    assert (tmp_path / "why.png").exists()


@pytest.mark.parametrize("changes, fragment", [
    ({"features__kind": "cnn", "features__cnn_embedding": 16, "features__pca_components": 500},
     "features.pca_components must be at most 16 (kind 'cnn' makes 16 features; 480 training images); got 500"),
    ({"features__kind": "cnn+raw", "features__cnn_embedding": 16, "features__pca_components": 137},
     "features.pca_components must be at most 136 (kind 'cnn+raw' makes 136 features; 480 training images)"),
    ({"features__kind": "hog", "features__hog_cell": 2, "features__pca_components": 500},
     "features.pca_components must be at most 480 (kind 'hog' makes 720 features; 480 training images)"),
])
def test_features_params_are_checked_before_the_network_trains(workspace, tmp_path, capsys, monkeypatch, changes,
                                                               fragment):
    """Without PyTorch (``import torch`` fails) a cnn that started training would say so instead."""
    monkeypatch.setitem(sys.modules, "torch", None)
    out = tmp_path / "features.npz"
    params = write_params(tmp_path / "params.yaml", workspace / "raw", **changes)
    code, err = run_stage(features, ["--params", params, "--train", workspace / "train.npz", "--test",
                                     workspace / "test.npz", "--split", workspace / "split.npz", "--out", out,
                                     "--curves", tmp_path / "curves.csv", "--training", tmp_path / "training.json"], capsys)
    assert_one_line_failure(code, err, f"features: error: {params}: {fragment}")
    assert not out.exists() and not (tmp_path / "curves.csv").exists() and not (tmp_path / "training.json").exists()


def test_the_memory_bound_counts_the_test_images_shifted_copies(workspace, tmp_path, capsys, monkeypatch):
    """With shifts the stage keeps five rows of every training image and, for query shifts, of every test image:
    a limit that holds all but the test images' four copies refuses the run before any feature is made."""
    from fmproto.pipeline import params as P

    n_train, n_test = (len(np.load(workspace / name)["labels"]) for name in ("train.npz", "test.npz"))
    width = int(np.prod(np.load(workspace / "train.npz")["images"].shape[1:]))  # raw pixels, a byte each
    monkeypatch.setattr(P, "MEMORY_LIMIT", (5 * n_train + n_test) * width)
    out = tmp_path / "features.npz"
    params = write_params(tmp_path / "params.yaml", workspace / "raw", features__augment_shifts=True)
    code, err = run_stage(features, ["--params", params, "--train", workspace / "train.npz", "--test",
                                     workspace / "test.npz", "--split", workspace / "split.npz", "--out", out,
                                     "--curves", tmp_path / "curves.csv", "--training", tmp_path / "training.json"], capsys)
    assert_one_line_failure(code, err, f"for the features of {5 * (n_train + n_test):,} images x {width:,}")
    assert not out.exists()
