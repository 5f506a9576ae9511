"""Inputs that belong together: each .npz made from upstream data records what it was made from, and
every reader compares the record with the input it was handed.

The measured case: ingest rerun on changed images (same counts) while the split and the features
stayed as they were; ``fmproto explain`` then showed the new images beside neighbours found among
the old features, and exited 0.
"""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_dataset
from fmproto.pipeline import io
from fmproto.pipeline import inputs
from fmproto.cli import main as cli
from stages import (ann_frontier, ann_index, centroids, evaluate_test, evaluate_valid, explain_test, features, ingest,
                    kmeans, knn_scaling, split)
from test_stage_inputs import assert_one_line_failure, evaluate_valid_args, run_stage, workspace, write_params  # noqa: F401

RERUN = "(run dvc repro)"


def sha256_of(*arrays: np.ndarray) -> str:
    """The fingerprint as its docstring defines it, computed here by hand."""
    text = b"".join(f"{a.dtype.str}{a.shape};".encode() + np.ascontiguousarray(a).tobytes() for a in arrays)
    return hashlib.sha256(text).hexdigest()


def copy_workspace(workspace: Path, to: Path) -> Path:
    shutil.copytree(workspace, to)
    return to


def reingest(ws: Path, seed: int) -> None:
    """What ``dvc repro ingest`` does after the raw data changed: other images and labels, the same counts."""
    raw = synthetic_dataset(ws / f"raw{seed}", seed=seed)
    ingest.main(["--params", str(write_params(ws / "params.yaml", raw)), "--data-dir", str(raw),
                 "--train-out", str(ws / "train.npz"), "--test-out", str(ws / "test.npz"),
                 "--metrics", str(ws / "ingest.json"), "--figures", str(ws / "figures")])


def resplit(ws: Path, out: Path, seed: int = 42) -> Path:
    params = write_params(ws / f"params-split{seed}.yaml", ws / "raw", split__seed=seed)
    split.main(["--params", str(params), "--train", str(ws / "train.npz"), "--pairs", str(ws / "pairs.csv"),
                "--out", str(out), "--metrics", str(ws / "split.json")])
    return out


@pytest.fixture(scope="module")
def stale(workspace, tmp_path_factory) -> Path:
    """The workspace after ingest reran on other images, its split and features left as they were. Tests only read it."""
    ws = copy_workspace(workspace, tmp_path_factory.mktemp("stale") / "ws")
    reingest(ws, seed=1)
    return ws


def explain_args(ws: Path, out: Path, target: str = "3", **paths) -> list:
    files = {name: ws / f"{name}.npz" for name in ("train", "test", "split", "features")} | paths
    return ["explain", target, "--params", ws / "params.yaml", "--train", files["train"], "--test", files["test"],
            "--split", files["split"], "--features", files["features"], "--out", out]


def reader_args(stage, ws: Path, out: Path) -> list:
    """Command lines of every reader of the split, on workspace ``ws``, writing under ``out``."""
    common = ["--params", ws / "params.yaml", "--train", ws / "train.npz", "--split", ws / "split.npz"]
    if stage is cli:
        return explain_args(ws, out / "why.png")
    if stage is features:
        return [*common, "--test", ws / "test.npz", "--curves", out / "curves.csv", "--training", out / "training.json",
                "--out", out / "f.npz"]
    if stage is evaluate_valid:
        return [*common, "--features", ws / "features.npz", "--metrics", out / "v.json"]
    if stage is evaluate_test:
        return [*common, "--test", ws / "test.npz", "--features", ws / "features.npz", "--metrics", out / "t.json",
                "--plots", out / "plots", "--figures", out / "figs", "--prototypes", out / "p.npz"]
    if stage is explain_test:
        return [*common, "--test", ws / "test.npz", "--features", ws / "features.npz", "--prototypes", ws / "p.npz",
                "--figures", out / "figs"]
    if stage is ann_index:
        return [*common, "--index", out / "a.ann", "--metrics", out / "a.json", "--plots", out / "by_k.csv"]
    if stage is ann_frontier:
        return [*common, "--recall-search-k", out / "s.csv", "--recall-ef", out / "e.csv"]
    if stage is knn_scaling:
        return [*common, "--metrics", out / "s.json", "--rows", out / "rows.csv", "--figures", out / "figs"]
    return [*common, "--model", out / "m.npz", "--metrics", out / "m.json", "--plots", out / "plots", "--figures", out / "figs"]


def test_fingerprint_is_sha256_of_dtype_shape_and_bytes():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (6, 4, 5), dtype=np.uint8), np.arange(6) % 3
    assert inputs.fingerprint(images, labels) == sha256_of(images, labels)
    assert inputs.fingerprint(images[:, ::-1].copy()[:, ::-1], labels) == inputs.fingerprint(images, labels)
    assert inputs.fingerprint(np.asfortranarray(images), labels) == inputs.fingerprint(images, labels)
    changed = images.copy()
    changed[5, 3, 4] ^= 1
    others = {inputs.fingerprint(changed, labels), inputs.fingerprint(images, np.roll(labels, 1)),
              inputs.fingerprint(images.reshape(6, 20), labels), inputs.fingerprint(images.view(np.int8), labels),
              inputs.fingerprint(labels, images), inputs.fingerprint(images, labels.astype(np.int32))}
    assert len(others) == 6 and inputs.fingerprint(images, labels) not in others


def test_each_stage_records_what_it_was_made_from(workspace):
    arrays = {name: io.load_arrays(workspace / f"{name}.npz") for name in ("train", "test", "split", "features")}
    made = {name: sha256_of(arrays[name]["images"], arrays[name]["labels"]) for name in ("train", "test")}
    made["split"] = sha256_of(*(arrays["split"][name] for name in ("train", "valid", "dropped")))
    assert str(arrays["train"]["fingerprint"]) == made["train"] and str(arrays["test"]["fingerprint"]) == made["test"]
    assert str(arrays["split"]["train_fingerprint"]) == made["train"]
    assert {name: str(arrays["features"][f"{name}_fingerprint"]) for name in made} == made


@pytest.mark.parametrize("stage", [centroids, kmeans, knn_scaling, ann_index, ann_frontier, features, evaluate_valid,
                                   evaluate_test, explain_test, cli])
def test_a_split_of_other_training_images_is_refused_by_every_reader(stale, tmp_path, capsys, stage):
    code, err = run_stage(stage, reader_args(stage, stale, tmp_path / "out"), capsys)
    assert_one_line_failure(code, err, f"{stale / 'split.npz'}: was made from other training images than "
                            f"{stale / 'train.npz'} {RERUN}")
    assert not (tmp_path / "out").exists()


def test_explain_after_new_images_refuses_the_old_features(stale, tmp_path, capsys):
    """The measured case, with the split rerun too: the features are the stale input."""
    ws = copy_workspace(stale, tmp_path / "ws")
    resplit(ws, ws / "split.npz")
    out = tmp_path / "why.png"
    code, err = run_stage(cli, explain_args(ws, out), capsys)
    assert_one_line_failure(code, err, f"fmproto explain: error: {ws / 'features.npz'}: was made from other training "
                            f"images than {ws / 'train.npz'} {RERUN}")
    assert not out.exists()
    # The advice works: features rerun on what is there now, explain answers.
    code, err = run_stage(features, reader_args(features, ws, ws)[:-2] + ["--out", ws / "features.npz"], capsys)
    assert code == 0, err
    code, err = run_stage(cli, explain_args(ws, out), capsys)
    assert code == 0 and out.exists(), err


def test_features_of_another_split_are_refused(workspace, tmp_path, capsys):
    other = resplit(copy_workspace(workspace, tmp_path / "ws"), tmp_path / "split7.npz", seed=7)
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code, err = run_stage(evaluate_valid, evaluate_valid_args(workspace, tmp_path / "out", params, split=other), capsys)
    assert_one_line_failure(code, err, f"{workspace / 'features.npz'}: was made from another split than {other} {RERUN}")


def test_features_of_other_test_images_are_refused(workspace, tmp_path, capsys):
    ws = copy_workspace(workspace, tmp_path / "ws")
    data = io.load_arrays(ws / "test.npz")
    data["images"] = data["images"][::-1].copy()  # the same images in another order
    data["fingerprint"] = np.array(inputs.fingerprint(data["images"], data["labels"]))
    io.save_arrays(ws / "test.npz", **data)
    for stage in (evaluate_test, explain_test, cli):
        code, err = run_stage(stage, reader_args(stage, ws, tmp_path / "out"), capsys)
        assert_one_line_failure(code, err, f"{ws / 'features.npz'}: was made from other test images than "
                                f"{ws / 'test.npz'} {RERUN}")
    # An image file needs no test set: explain answers with the same files.
    np.save(tmp_path / "image.npy", data["images"][0])
    code, err = run_stage(cli, explain_args(ws, tmp_path / "why.png", str(tmp_path / "image.npy")), capsys)
    assert code == 0, err


@pytest.mark.parametrize("file, record, what", [
    ("split", "train_fingerprint", "training images"),
    ("features", "train_fingerprint", "training images"),
    ("features", "split_fingerprint", "split"),
    ("features", "test_fingerprint", "test images"),
])
def test_files_without_records_are_refused(workspace, tmp_path, capsys, file, record, what):
    """Files written before the records existed: the same advice."""
    ws = copy_workspace(workspace, tmp_path / "ws")
    data = io.load_arrays(ws / f"{file}.npz")
    del data[record]
    io.save_arrays(ws / f"{file}.npz", **data)
    code, err = run_stage(evaluate_test, reader_args(evaluate_test, ws, tmp_path / "out"), capsys)
    assert_one_line_failure(code, err, f"{ws / f'{file}.npz'}: does not record which {what} it was made from "
                            "(written by an older version); run dvc repro")


def test_a_dataset_changed_after_ingest_is_refused(workspace, tmp_path, capsys):
    ws = copy_workspace(workspace, tmp_path / "ws")
    data = io.load_arrays(ws / "train.npz")
    data["images"][0, 0, 0] ^= 1  # its recorded fingerprint is now stale
    io.save_arrays(ws / "train.npz", **data)
    code, err = run_stage(centroids, reader_args(centroids, ws, tmp_path / "out"), capsys)
    assert_one_line_failure(code, err, f"{ws / 'train.npz'}: its images and labels are not the ones its fingerprint "
                            "records (changed after ingest?); run dvc repro")
