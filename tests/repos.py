"""Temporary git + DVC repositories holding this project's pipeline, for the end-to-end tests."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    "ann": {"ks": [1, 3, 5], "search_k": 200, "recall_k": 5},
    "ann_frontier": {"search_k": [10, 50, 200], "queries": 60},
    "evaluate": {"n_explain": 2},  # explain_confusions stays auto: any class names work
}


def run(args, cwd, check=True, env=None, **kwargs):
    env = env or {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def git(repo, *args):
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], repo)


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
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pipeline")
    return path


def make_template(path: Path) -> Path:
    """The reproduced repository, with its results committed (conftest's ``template`` fixture)."""
    repo = make_repo(path, OVERRIDES)
    run([BIN / "dvc", "repro"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "results")
    return repo
