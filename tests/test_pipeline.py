"""End to end: the real `dvc repro` of the whole pipeline in a temporary git repository, on a small dataset."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, synthetic_dataset

BIN = Path(sys.executable).parent
CLASSES = ["circle", "square", "ring", "cross"]
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "stages", "fmproto"]

# Small-data settings: the same pipeline, sized for a 600-image dataset of 10x12 images.
OVERRIDES = {
    "data": {"dir": "rawdata", "verify": "none", "classes": CLASSES},
    "ingest": {"n_samples": 8, "per_class": 3},
    "dedup": {"n_show": 4},
    "centroids": {"n_show": 4},
    "kmeans": {"n_prototypes": {"ring": 3}, "n_show": 4},
    "knn_scaling": {"ks": [1, 3], "repeats": 2},
    "ann": {"ks": [1, 3, 5], "search_k": 200, "recall_k": 5, "search_k_sweep": [10, 50, 200], "sweep_queries": 60},
    "evaluate": {"n_explain": 2, "explain_confusions": [["circle", "square"]]},
}


def run(args, cwd, check=True, **kwargs):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(cwd)}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def make_repo(path: Path, overrides: dict) -> Path:
    """A git + DVC repository holding this project's pipeline and the synthetic dataset."""
    path.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, path / name)
    shutil.copytree(REPO / ".dvc", path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    synthetic_dataset(path / "rawdata")
    run(["git", "init", "-q"], path)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], path)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline"], path)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("e2e") / "repo", OVERRIDES)
    result = run([BIN / "dvc", "repro"], repo)
    return repo, result


def metrics(repo: Path, name: str) -> dict:
    return json.loads((repo / "metrics" / f"{name}.json").read_text())


def test_ingest_outputs(built):
    repo, _ = built
    m = metrics(repo, "ingest")
    assert m["image_shape"] == [10, 12]
    assert m["train"] == {"n": 600, "class_counts": dict.fromkeys(CLASSES, 150)}
    assert m["test"] == {"n": 160, "class_counts": dict.fromkeys(CLASSES, 40)}
    for name in ("train_samples", "train_per_class", "test_samples", "test_per_class"):
        assert (repo / "reports" / "ingest" / f"{name}.png").stat().st_size > 1000


def test_dedup_finds_planted_duplicates(built):
    repo, _ = built
    m = metrics(repo, "dedup")
    assert m["exact"] == {"train": 1, "test": 0, "train_test": 1}
    pairs = (repo / "data" / "dedup" / "pairs.csv").read_text().splitlines()
    assert pairs[0].split(",")[:4] == ["kind", "sets", "i", "j"]
    assert any(line.startswith("exact,train,0,4,") for line in pairs)
    assert any(line.startswith("exact,train_test,8,0,") for line in pairs)


def test_split_counts(built):
    repo, _ = built
    m = metrics(repo, "split")
    assert m["valid"]["n"] == 120 and m["train"]["n"] == 480 and m["dropped"]["n"] == 0
    assert sum(m["valid"]["class_counts"].values()) == 120


def test_second_repro_does_nothing(built):
    repo, _ = built
    start = time.perf_counter()
    result = run([BIN / "dvc", "repro"], repo)
    assert "Data and pipelines are up to date." in result.stdout
    assert time.perf_counter() - start < 5
    assert "up to date" in run([BIN / "dvc", "status"], repo).stdout


def test_classifier_stages(built):
    repo, _ = built
    centroids, kmeans = metrics(repo, "centroids"), metrics(repo, "kmeans")
    assert centroids["valid"]["accuracy"] > 0.6  # four overlapping templates: well above chance (0.25)
    assert kmeans["n_prototypes"] == 6 and kmeans["classes"]["ring"]["n_prototypes"] == 3
    assert set(kmeans["valid"]["per_class"]) == set(CLASSES)
    scaling = metrics(repo, "knn_scaling")
    assert scaling["n_full"] == 480 and scaling["best_k"] in (1, 3)
    assert set(scaling["fit"]) >= {"slope", "intercept", "predicted_error_full"}
    ann = metrics(repo, "ann")
    assert ann["recall_at_k"]["k"] == 5 and 0 <= ann["recall_at_k"]["recall"] <= 1
    assert set(ann["by_k"]) == {"1", "3", "5"}
    for name in ("confusion_valid.csv",):
        assert (repo / "plots" / "centroids" / name).read_text().startswith("actual,predicted")


def test_evaluate_test_outputs(built):
    repo, _ = built
    test = metrics(repo, "test")
    assert test["method"] == "knn" and test["k"] == 5 and test["n_fit"] == 600
    assert test["accuracy"] > 0.6
    assert set(test["summary"]) == {"centroids", "kmeans", "knn", "ann"}
    assert set(test["per_class_accuracy"]) == set(CLASSES)
    assert (repo / "reports" / "test" / "explanations.png").exists()


def test_plots_render_offline(built):
    repo, _ = built
    result = run([BIN / "dvc", "plots", "show", "-o", "plots_html"], repo)
    html = (repo / "plots_html" / "index.html").read_text()
    assert "kmeans convergence" in html and "test confusion" in html


def test_remote_push_then_pull_in_a_clone(built, tmp_path):
    repo, _ = built
    run([BIN / "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], repo)
    run([BIN / "dvc", "push"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run([BIN / "dvc", "pull"], clone)
    assert (clone / "data" / "ingested" / "train.npz").exists()
    result = run([BIN / "dvc", "repro"], clone)
    assert "Data and pipelines are up to date." in result.stdout


def test_exp_run_changes_test_metrics(built):
    repo, _ = built
    run([BIN / "dvc", "exp", "run", "-S", "evaluate.k=1"], repo)
    diff = json.loads(run([BIN / "dvc", "metrics", "diff", "--json"], repo).stdout)
    assert diff["metrics/test.json"]["k"] == {"old": 5, "new": 1, "diff": -4}
    report = run([BIN / "fmproto", "report", "--base", "HEAD", "--out", "pr.md"], repo)
    text = (repo / "pr.md").read_text()
    assert "metrics/test.json" in text and "evaluate.k" in text and "![Test confusion matrix]" in text


def test_queued_experiments_run(built):
    """`dvc exp run --queue --copy-paths` + `dvc queue start`, as the README shows for the real repo,
    where the raw data folder is not in git: each queued run gets its own temporary copy."""
    repo, _ = built
    (repo / ".gitignore").write_text((repo / ".gitignore").read_text() + "\n/rawdata\n")
    run(["git", "rm", "-r", "-q", "--cached", "rawdata"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "raw data out of git"], repo)
    for k in (2, 4):
        run([BIN / "dvc", "exp", "run", "--queue", "-S", f"evaluate.k={k}", "--name", f"k{k}",
             "--copy-paths", "rawdata"], repo)
    run([BIN / "dvc", "queue", "start"], repo)
    deadline = time.monotonic() + 300
    while True:  # `dvc queue logs --follow` refuses a task that has not started yet, so poll
        status = run([BIN / "dvc", "queue", "status"], repo).stdout
        if not ("Queued" in status or "Running" in status) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status.count("Success") == 2, status + run([BIN / "dvc", "queue", "logs", "k2"], repo, check=False).stdout
    shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], repo).stdout)
    ks = {exp["name"]: exp["data"]["metrics"]["metrics/test.json"]["data"]["k"]
          for rev in shown for group in (rev.get("experiments") or []) for exp in group["revs"]
          if exp.get("name") in ("k2", "k4")}
    assert ks == {"k2": 2, "k4": 4}


def test_features_and_validation_outputs(built):
    repo, _ = built
    valid = metrics(repo, "valid")
    assert valid["features"] == "raw" and valid["n_fit"] == metrics(repo, "split")["train"]["n"]
    assert 0.5 < valid["accuracy"] <= 1 and valid["queries_per_second"] > 0


@pytest.mark.parametrize("override, fragment", [
    ({"kind": "sift"}, "features.kind must be one or more of raw, standard, hog"),
    ({"kind": "hog", "hog_cell": 6}, "features.hog_cell must leave at least 2x2 cells in 10x12 images"),
    ({"pca_components": 10_000}, "features.pca_components must be at most"),
    ({"augment_flip": "yes"}, "features.augment_flip must be true or false"),
])
def test_features_stage_bad_params(built, tmp_path, override, fragment):
    repo, _ = built
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["features"].update(override)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "features.npz"
    result = run([sys.executable, "-m", "stages.features", "--params", str(tmp_path / "params.yaml"),
                  "--train", "data/ingested/train.npz", "--test", "data/ingested/test.npz",
                  "--split", "data/split/split.npz", "--out", str(out)], repo, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and fragment in result.stderr, result.stderr
    assert not out.exists()


def test_hog_pca_shift_features_through_the_pipeline(built):
    """The issue-6 configuration on the small data: HOG + PCA + shifted copies, scored on valid and test."""
    repo, _ = built
    run([BIN / "dvc", "exp", "run", "-S", "features.kind=hog", "-S", "features.hog_cell=3",
         "-S", "features.pca_components=8", "-S", "features.augment_shifts=true", "-S", "evaluate.method=knn"], repo)
    valid, test = metrics(repo, "valid"), metrics(repo, "test")
    n_train = metrics(repo, "split")["train"]["n"]
    assert valid["features"] == "hog" and valid["n_features"] == 8 and valid["n_fit"] == 5 * n_train
    assert test["features"] == "hog" and test["n_fit"] == 5 * metrics(repo, "ingest")["train"]["n"]
    result = run([BIN / "fmproto", "explain", "3", "--out", "why.png"], repo)
    assert "predicted" in result.stdout and "on hog features" in result.stdout and (repo / "why.png").exists()


def test_explain_bad_target_is_one_line(built):
    repo, _ = built
    result = run([BIN / "fmproto", "explain", "missing.png"], repo, check=False)
    assert result.returncode == 1 and result.stderr.strip() == "fmproto explain: error: missing.png: file not found"
    np.save(repo / "small.npy", np.zeros((5, 5), dtype=np.uint8))
    result = run([BIN / "fmproto", "explain", "small.npy"], repo, check=False)
    assert result.returncode == 1 and "image is 5x5 but the dataset's images are 10x12" in result.stderr
