"""Under `dvc repro` a stage that refuses its params or its data keeps what the last good run made.

DVC deletes a stage's outputs before running it unless they are `persist: true`; every output in
dvc.yaml is, and the stage's own transaction leaves them untouched on failure.
"""

import gzip
import hashlib
from pathlib import Path

import pytest
import yaml

from repos import BIN, run

pytestmark = pytest.mark.e2e


def _snapshot(repo: Path, paths: list[str]) -> dict[str, str]:
    """SHA-256 of every file under ``paths`` (files or folders), by path."""
    found = {}
    for path in paths:
        target = repo / path
        files = sorted(f for f in target.rglob("*") if f.is_file()) if target.is_dir() else [target]
        assert files and all(f.is_file() for f in files), f"{path} has no files to compare"
        found.update({str(f.relative_to(repo)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files})
    return found


def _set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_every_output_is_persisted():
    stages = yaml.safe_load((Path(__file__).resolve().parents[2] / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for entry in [*stage.get("outs", []), *stage.get("metrics", [])]:
            assert isinstance(entry, dict) and next(iter(entry.values())).get("persist") is True, (name, entry)


def test_a_bad_param_keeps_the_outputs(repo):
    outputs = ["models/kmeans.npz", "metrics/kmeans.json", "plots/kmeans", "reports/kmeans"]
    before = _snapshot(repo, outputs)
    _set_param(repo, "kmeans", "tol", 2)
    result = run([BIN / "dvc", "repro", "kmeans"], repo, check=False)
    assert result.returncode != 0
    assert "kmeans: error: params.yaml: kmeans.tol must be at most 1; got 2" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert _snapshot(repo, outputs) == before
    assert run(["git", "status", "--porcelain"], repo).stdout.split() == ["M", "params.yaml"]


def test_bad_data_keeps_the_outputs(repo):
    outputs = ["data/ingested/train.npz", "data/ingested/test.npz", "metrics/ingest.json", "reports/ingest"]
    before = _snapshot(repo, outputs)
    labels = next((repo / "rawdata").glob("train-labels*"))
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[8] = 200  # the first label, outside the four classes
    labels.write_bytes(gzip.compress(bytes(content)))
    result = run([BIN / "dvc", "repro", "ingest"], repo, check=False)
    assert result.returncode != 0 and "ingest: error: " in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(repo, outputs) == before
    # The last good run stays in force: put the data back and nothing needs to run.
    run(["git", "checkout", "rawdata"], repo)
    assert "Data and pipelines are up to date." in run([BIN / "dvc", "repro"], repo).stdout
