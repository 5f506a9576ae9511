"""Messages that name the thing to fix: a class by its name, a param by its key, each stage's limits.

The stage scripts run in subprocesses on a small dataset of four classes whose test set has no
'Dress' image (a user's own data may lack a class in test). Expected figures are computed here from
the stage inputs (class counts from the split, macro F1 with scikit-learn), not copied from a run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score

from conftest import REPO, synthetic_dataset, write_idx
from fmproto.cli import report
from fmproto.data.datasets import read_idx_pair
from repos import BIN

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress"]
DRESS = CLASSES.index("Dress")
OVERRIDES = {
    "data": {"dir": "rawdata", "verify": "none", "classes": CLASSES},
    "ingest": {"n_samples": 8, "per_class": 3},
    "dedup": {"n_show": 4},
    "split": {"stratify": True},
    "centroids": {"n_show": 4},
    "kmeans": {"n_prototypes": 2, "n_show": 4},
    "knn_scaling": {"ks": [1, 3], "repeats": 1},
    "evaluate": {"k": 3, "n_explain": 2},
}


def write_params(folder: Path, **sections) -> Path:
    """``folder/params.yaml``: the project's params with the small-data overrides and ``sections`` on top."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for overrides in (OVERRIDES, sections):
        for section, values in overrides.items():
            params[section].update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stage(name: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m stages.<name> --params params.yaml ARGS`` in ``cwd`` (so messages say ``params.yaml``)."""
    return subprocess.run([sys.executable, "-m", f"stages.{name}", "--params", "params.yaml", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def assert_refused(result: subprocess.CompletedProcess, out: Path, expected: str) -> None:
    """Exit 1, exactly the line ``expected`` on stderr, nothing written under ``out``."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [expected]
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Ingested, split and featured data (read-only for the tests): 30 training images a class, no Dress in test."""
    ws = tmp_path_factory.mktemp("messages")
    raw = synthetic_dataset(ws / "rawdata", n_train=120, n_test=48, shape=(6, 5))
    test_images, test_labels = read_idx_pair(raw / "t10k-images-idx3-ubyte.gz", raw / "t10k-labels-idx1-ubyte.gz")
    keep = test_labels != DRESS
    write_idx(raw / "t10k-images-idx3-ubyte.gz", test_images[keep])
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", test_labels[keep])
    write_params(ws)
    d = "data"
    for name, *args in (
        ("ingest", "--data-dir", "rawdata", "--train-out", f"{d}/train.npz", "--test-out", f"{d}/test.npz",
         "--metrics", "metrics/ingest.json", "--figures", "reports/ingest"),
        ("dedup_check", "--train", f"{d}/train.npz", "--test", f"{d}/test.npz", "--pairs", f"{d}/pairs.csv",
         "--metrics", "metrics/dedup.json", "--figure", "reports/dedup.png"),
        ("split", "--train", f"{d}/train.npz", "--pairs", f"{d}/pairs.csv", "--out", f"{d}/split.npz",
         "--metrics", "metrics/split.json"),
        ("features", "--train", f"{d}/train.npz", "--test", f"{d}/test.npz", "--split", f"{d}/split.npz",
         "--out", f"{d}/features.npz", "--curves", f"{d}/curves.csv", "--training", f"{d}/training.json"),
    ):
        result = stage(name, *args, cwd=ws)
        assert result.returncode == 0, result.stderr
    return ws


def training_counts(ws: Path) -> np.ndarray:
    """Images per class in the training split, from the stage inputs."""
    with np.load(ws / "data" / "train.npz") as train, np.load(ws / "data" / "split.npz") as split:
        return np.bincount(train["labels"][split["train"]], minlength=len(CLASSES))


def evaluate_args(ws: Path, out: Path, name: str) -> list:
    data = ws / "data"
    args = ["--train", data / "train.npz", "--split", data / "split.npz", "--features", data / "features.npz",
            "--metrics", out / "metrics.json"]
    if name == "evaluate_test":
        args += ["--test", data / "test.npz", "--plots", out / "plots", "--figures", out / "figures",
                 "--prototypes", out / "prototypes.npz"]
    return args


def prototype_args(ws: Path, out: Path, split: Path | None = None, train: Path | None = None) -> list:
    return ["--train", train or ws / "data" / "train.npz", "--split", split or ws / "data" / "split.npz",
            "--model", out / "model.npz", "--metrics", out / "metrics.json", "--plots", out / "plots",
            "--figures", out / "figures"]


# ----------------------------------------------------------------------------------- classes by name


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["centroids", "kmeans"])
def test_a_class_missing_from_the_training_split_is_named(ws, tmp_path, name):
    with np.load(ws / "data" / "split.npz") as loaded, np.load(ws / "data" / "train.npz") as train:
        split = {key: loaded[key] for key in loaded.files}
        dress = train["labels"][split["train"]] == DRESS
    split["valid"] = np.sort(np.concatenate([split["valid"], split["train"][dress]]))
    split["train"] = split["train"][~dress]
    np.savez(tmp_path / "split-no-dress.npz", **split)
    write_params(tmp_path)
    out = tmp_path / "out"
    result = stage(name, *prototype_args(ws, out, split=tmp_path / "split-no-dress.npz"), cwd=tmp_path)
    assert_refused(result, out, f"{name}: error: {tmp_path / 'split-no-dress.npz'}: class 'Dress' (label 3) "
                                "has no images in the training split")


@pytest.mark.e2e
def test_kmeans_n_prototypes_names_the_param_and_the_class(ws, tmp_path):
    counts = training_counts(ws)
    write_params(tmp_path, kmeans={"n_prototypes": {"Pullover": int(counts[2]) + 1}})
    out = tmp_path / "out"
    result = stage("kmeans", *prototype_args(ws, out), cwd=tmp_path)
    assert_refused(result, out, f"kmeans: error: params.yaml: kmeans.n_prototypes: class 'Pullover' needs "
                                f"1..{counts[2]} prototypes (it has {counts[2]} training images); got {counts[2] + 1}")


@pytest.mark.e2e
def test_evaluate_with_method_knn_leaves_unfitting_kmeans_out_of_the_summary(ws, tmp_path):
    n = int(training_counts(ws)[0])
    write_params(tmp_path, kmeans={"n_prototypes": 50}, evaluate={"method": "knn"})
    why = (f"params.yaml: kmeans.n_prototypes: class 'T-shirt/top' needs 1..{n} prototypes "
           f"(it has {n} training images); got 50")
    out = tmp_path / "test"
    result = stage("evaluate_test", *evaluate_args(ws, out, "evaluate_test"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"evaluate-test: warning: {why}; the summary leaves kmeans out (null)"]
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert summary["kmeans"] is None and all(summary[m]["accuracy"] > 0 for m in ("centroids", "knn", "ann"))
    assert "kmeans skipped" in result.stdout

    result = stage("evaluate_valid", *evaluate_args(ws, tmp_path / "valid", "evaluate_valid"), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    data = ws / "data"
    result = subprocess.run([BIN / "fmproto", "explain", "0", "--params", "params.yaml", "--train", data / "train.npz",
                             "--test", data / "test.npz", "--split", data / "split.npz", "--features",
                             data / "features.npz", "--out", tmp_path / "explain.png"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["evaluate_test", "evaluate_valid"])
def test_evaluate_with_method_kmeans_refuses_counts_that_do_not_fit(ws, tmp_path, name):
    n = int(training_counts(ws)[0])
    write_params(tmp_path, kmeans={"n_prototypes": 50}, evaluate={"method": "kmeans"})
    out = tmp_path / "out"
    result = stage(name, *evaluate_args(ws, out, name), cwd=tmp_path)
    assert_refused(result, out, f"{name.replace('_', '-')}: error: params.yaml: kmeans.n_prototypes: class "
                                f"'T-shirt/top' needs 1..{n} prototypes (it has {n} training images); got 50")


@pytest.mark.e2e
def test_an_unknown_class_in_n_prototypes_is_an_error_whatever_the_method(ws, tmp_path):
    write_params(tmp_path, kmeans={"n_prototypes": {"Sandle": 2}}, evaluate={"method": "knn"})
    out = tmp_path / "out"
    result = stage("evaluate_test", *evaluate_args(ws, out, "evaluate_test"), cwd=tmp_path)
    assert_refused(result, out, "evaluate-test: error: params.yaml: kmeans.n_prototypes: unknown class name "
                                "'Sandle' in n_prototypes; allowed: 'T-shirt/top', 'Trouser', 'Pullover', 'Dress'")


@pytest.mark.e2e
def test_class_names_that_break_a_line_are_refused(ws, tmp_path):
    with np.load(ws / "data" / "train.npz") as train:
        arrays = {key: train[key] for key in train.files}
    arrays["classes"] = np.array(["T-shirt/top", "Trou\tser", "Pull\nover", "Dress"])
    np.savez(tmp_path / "train.npz", **arrays)
    write_params(tmp_path)
    out = tmp_path / "out"
    result = stage("centroids", *prototype_args(ws, out, train=tmp_path / "train.npz"), cwd=tmp_path)
    assert_refused(result, out, f"centroids: error: {tmp_path / 'train.npz'}: class names must be a list of "
                                "printable one-line names; got 'Trou\\tser'")


# ----------------------------------------------------------------------------------- empty test classes


@pytest.mark.e2e
def test_a_class_with_no_test_images_is_null_and_left_out_of_macro_f1(ws, tmp_path):
    write_params(tmp_path)
    out = tmp_path / "test"
    result = stage("evaluate_test", *evaluate_args(ws, out, "evaluate_test"), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr

    def no_nan(name):
        raise AssertionError(f"{name} in metrics")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=no_nan)
    assert metrics["per_class_accuracy"]["Dress"] is None
    assert all(isinstance(metrics["per_class_accuracy"][name], float) for name in CLASSES if name != "Dress")
    # The confusion counts give back every (true, predicted) pair; scikit-learn scores them.
    cm = pd.read_csv(out / "plots" / "confusion_test.csv")
    y_true = np.repeat(cm["actual"].map(CLASSES.index).to_numpy(), cm["count"])
    y_pred = np.repeat(cm["predicted"].map(CLASSES.index).to_numpy(), cm["count"])
    with np.load(ws / "data" / "test.npz") as test:
        np.testing.assert_array_equal(np.bincount(y_true, minlength=4), np.bincount(test["labels"], minlength=4))
    present = np.unique(y_true)
    assert DRESS not in present
    assert metrics["macro_f1"] == round(f1_score(y_true, y_pred, labels=present, average="macro"), 5)
    assert report.classes_without_test_images(out / "metrics.json") == ["Dress"]


def test_report_names_classes_without_test_images_and_escapes_table_cells(tmp_path):
    diff = {"metrics/test.json": {"per_class_accuracy.a|b\nc": {"old": 0.5, "new": 0.75, "diff": 0.25}}}
    rows = report.metric_tables(diff, "main")["detail"]
    assert rows == ["| `per_class_accuracy.a\\|b c` | metrics/test.json | 0.5 | 0.75 | +0.25 |"]
    text = report.render("main", {"quality": [], "detail": rows, "setting": []}, "", [], None, ["Dress", "x|y"])
    assert "No test images of 2 classes: `Dress`, `x\\|y`" in text
    assert report.classes_without_test_images(tmp_path / "missing.json") == []


# ----------------------------------------------------------------------------------- knn-scaling ks


def scaling_args(ws: Path, out: Path) -> list:
    return ["--train", ws / "data" / "train.npz", "--split", ws / "data" / "split.npz", "--metrics",
            out / "metrics.json", "--rows", out / "rows.csv", "--figures", out / "figures",
            "--timings", out / "timings.json"]


@pytest.mark.e2e
@pytest.mark.parametrize(("ks", "sizes", "problem"), [
    ([1, 5, 500], "auto", "knn_scaling.ks: 500 exceeds the {n} training images of the split"),
    ([500, 1000], "auto", "knn_scaling.ks: 500, 1000 exceed the {n} training images of the split"),
    ([20, 30], [10, 40], "knn_scaling.sizes: 10 is below every k of knn_scaling.ks (the smallest is 20): "
                         "no k can be measured on it"),
])
def test_knn_scaling_refuses_ks_the_data_cannot_measure(ws, tmp_path, ks, sizes, problem):
    n = int(training_counts(ws).sum())
    write_params(tmp_path, knn_scaling={"ks": ks, "sizes": sizes})
    out = tmp_path / "out"
    assert_refused(stage("knn_scaling", *scaling_args(ws, out), cwd=tmp_path), out,
                   f"knn-scaling: error: params.yaml: {problem.format(n=n)}")


@pytest.mark.e2e
def test_knn_scaling_measures_each_k_from_the_first_size_that_holds_it(ws, tmp_path):
    n = int(training_counts(ws).sum())
    write_params(tmp_path, knn_scaling={"ks": [1, 30], "sizes": [20, 40, n]})
    out = tmp_path / "out"
    result = stage("knn_scaling", *scaling_args(ws, out), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    rows = pd.read_csv(out / "rows.csv")
    assert sorted(set(rows.loc[rows["k"] == 30, "n"])) == [40, n]
    assert sorted(set(rows.loc[rows["k"] == 1, "n"])) == [20, 40, n]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["by_k"]) == {"1", "30"} and "measured_error_full" in metrics["by_k"]["30"]
    assert set(json.loads((out / "timings.json").read_text())["seconds_by_n"]) == {"20", "40", str(n)}
