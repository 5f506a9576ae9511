"""Stage scripts on bad input: one line on stderr naming the file or param, exit 1, nothing left behind."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, synthetic_dataset, write_idx

pytestmark = pytest.mark.e2e  # each case runs the ingest stage in a subprocess

CLASSES = ["circle", "square", "ring", "cross"]


def params_file(tmp_path: Path, data_dir: Path, **sections) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update({"dir": str(data_dir), "verify": "none", "classes": CLASSES})
    for section, values in sections.items():
        params[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_ingest(tmp_path: Path, data_dir: Path, params: Path | None = None):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "stages.ingest", "--params", str(params or params_file(tmp_path, data_dir)),
            "--data-dir", str(data_dir), "--train-out", str(out / "train.npz"), "--test-out", str(out / "test.npz"),
            "--metrics", str(out / "ingest.json"), "--figures", str(out / "figures")]
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return result, out


def assert_clean_failure(result, out: Path, *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert leftovers == [], leftovers


@pytest.fixture
def good_dir(tmp_path):
    return synthetic_dataset(tmp_path / "raw", n_train=40, n_test=20)


def test_good_idx_dataset_ingests(tmp_path, good_dir):
    result, out = run_ingest(tmp_path, good_dir)
    assert result.returncode == 0, result.stderr
    assert (out / "train.npz").exists() and (out / "figures" / "test_per_class.png").exists()
    assert "train: 40 images of 10x12" in result.stdout


def _corrupt(name: str, how):
    def apply(directory: Path) -> Path:
        path = directory / name
        how(path)
        return path
    return apply


IDX_CASES = {
    "truncated gzip": (_corrupt("train-images-idx3-ubyte.gz", lambda p: p.write_bytes(p.read_bytes()[:-40])),
                       "train-images-idx3-ubyte.gz"),
    "not gzip": (_corrupt("t10k-labels-idx1-ubyte.gz", lambda p: p.write_bytes(b"\x1f\x8bgarbage here")),
                 "t10k-labels-idx1-ubyte.gz"),
    "wrong magic": (_corrupt("train-labels-idx1-ubyte.gz",
                             lambda p: p.write_bytes(gzip.compress(b"\x00\x00\x08\x07" + gzip.decompress(p.read_bytes())[4:]))),
                    "train-labels-idx1-ubyte.gz"),
    "counts disagree": (_corrupt("train-labels-idx1-ubyte.gz",
                                 lambda p: write_idx(p, np.zeros(39, dtype=np.uint8))), "train-labels-idx1-ubyte.gz"),
    "label outside classes": (_corrupt("t10k-labels-idx1-ubyte.gz",
                                       lambda p: write_idx(p, np.full(20, 7, dtype=np.uint8))), "t10k-labels-idx1-ubyte.gz"),
    "empty file": (_corrupt("t10k-images-idx3-ubyte.gz", lambda p: p.write_bytes(b"")), "t10k-images-idx3-ubyte.gz"),
}


@pytest.mark.parametrize("case", IDX_CASES)
def test_bad_idx_files(tmp_path, good_dir, case):
    corrupt, fragment = IDX_CASES[case]
    corrupt(good_dir)
    result, out = run_ingest(tmp_path, good_dir)
    assert_clean_failure(result, out, fragment)


HEADER = "label," + ",".join(f"pixel{i}" for i in range(1, 5))
CSV_CASES = {
    "missing column": (f"{HEADER}\n1,0,0,0,0\n2,0,0,0\n", "train.csv"),
    "extra column": (f"{HEADER}\n1,0,0,0,0\n2,0,0,0,0,9\n", "train.csv"),
    "non-integer cell": (f"{HEADER}\n1,0,0,0,0\n2,0,1.5,0,0\n", "train.csv"),
    "out-of-range pixel": (f"{HEADER}\n1,0,0,0,0\n2,0,0,256,0\n", "train.csv"),
    "header only": (f"{HEADER}\n", "train.csv"),
    "empty file": ("", "train.csv"),
    "label outside classes": (f"{HEADER}\n1,0,0,0,0\n4,0,0,0,0\n", "train.csv"),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_bad_csv_files(tmp_path, case):
    text, fragment = CSV_CASES[case]
    data_dir = tmp_path / "csv"
    data_dir.mkdir()
    (data_dir / "fashion-train.csv").write_text(text)
    (data_dir / "fashion-test.csv").write_text(f"{HEADER}\n0,1,2,3,4\n")
    result, out = run_ingest(tmp_path, data_dir)
    assert_clean_failure(result, out, fragment)


PARAM_CASES = {
    "unknown key": ({"ingest": {"n_sample": 3}}, "unknown param ingest.n_sample"),
    "wrong type": ({"ingest": {"seed": "zero"}}, "ingest.seed must be an integer"),
    "out of range": ({"ingest": {"per_class": 0}}, "ingest.per_class must be at least 1"),
    "bad choice": ({"data": {"verify": "sha1"}}, "data.verify must be one of"),
}


@pytest.mark.parametrize("case", PARAM_CASES)
def test_bad_params(tmp_path, good_dir, case):
    sections, fragment = PARAM_CASES[case]
    params = params_file(tmp_path, good_dir, **sections)
    result, out = run_ingest(tmp_path, good_dir, params)
    assert_clean_failure(result, out, fragment, "params.yaml")


def test_csv_dataset_with_duplicates_ingests(tmp_path):
    """The Kaggle layout end to end through ingest: square images inferred from 4 pixels."""
    data_dir = tmp_path / "csv"
    data_dir.mkdir()
    (data_dir / "fashion-train.csv").write_text(f"{HEADER}\n1,0,0,0,0\n2,0,0,0,0\n0,9,9,9,9\n3,1,2,3,4\n")
    (data_dir / "fashion-test.csv").write_text(f"{HEADER}\n0,1,2,3,4\n")
    result, out = run_ingest(tmp_path, data_dir, params_file(tmp_path, data_dir, ingest={"per_class": 2, "n_samples": 3}))
    assert result.returncode == 0, result.stderr
    data = np.load(out / "train.npz")
    assert data["images"].shape == (4, 2, 2) and data["labels"].tolist() == [1, 2, 0, 3]


def _relabel(path: Path, labels: np.ndarray) -> None:
    write_idx(path, labels.astype(np.uint8))


def test_a_training_class_with_no_images_is_refused_by_name(tmp_path, good_dir):
    labels_path = good_dir / "train-labels-idx1-ubyte.gz"
    labels = np.arange(40) % 4
    _relabel(labels_path, np.where(labels == 2, 3, labels))  # no ring (2) in train
    result, out = run_ingest(tmp_path, good_dir)
    assert_clean_failure(result, out)
    assert result.stderr.strip() == (f"ingest: error: {labels_path}: class 'ring' (label 2) has no images; "
                                     "every class needs at least one training image")


def test_a_test_set_without_a_class_ingests(tmp_path, good_dir):
    labels = np.arange(20) % 4
    _relabel(good_dir / "t10k-labels-idx1-ubyte.gz", np.where(labels == 2, 0, labels))  # no ring in test
    result, out = run_ingest(tmp_path, good_dir)
    assert result.returncode == 0, result.stderr
    counts = json.loads((out / "ingest.json").read_text())["test"]["class_counts"]
    assert counts == {"circle": 10, "square": 5, "ring": 0, "cross": 5}


@pytest.mark.parametrize("layout", ["idx", "csv"])
def test_images_too_large_for_the_stages_are_refused_at_ingest(tmp_path, good_dir, layout):
    if layout == "idx":
        path = write_idx(good_dir / "train-images-idx3-ubyte.gz", np.zeros((40, 256, 256), np.uint8))
        data_dir = good_dir
    else:
        data_dir = tmp_path / "csv"
        data_dir.mkdir()
        header = "label," + ",".join(f"pixel{i}" for i in range(1, 256 * 256 + 1))
        path = data_dir / "big-train.csv"
        path.write_text(f"{header}\n0,{','.join(['0'] * 256 * 256)}\n")
        (data_dir / "big-test.csv").write_text(f"{header}\n0,{','.join(['0'] * 256 * 256)}\n")
    result, out = run_ingest(tmp_path, data_dir)
    assert_clean_failure(result, out)
    assert result.stderr.strip() == (f"ingest: error: {path}: images of 256x256 (65,536 pixels) are larger than "
                                     "the 6,400 pixels (e.g. 80x80) that the stages handle within their memory "
                                     "limit (MAX_IMAGE_PIXELS)")
