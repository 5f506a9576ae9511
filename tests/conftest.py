"""Shared fixtures. The real Fashion-MNIST files come through fmproto.data.download, as `make repro` gets them."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fmproto.representation.cnn import PORTABLE_KERNELS

# fmproto.representation.cnn pins PyTorch's CPU kernels before PyTorch loads; test modules import torch themselves
# (test_cnn.py at collection), so the pins go in first, here.
os.environ.update(PORTABLE_KERNELS)

REPO = Path(__file__).resolve().parents[1]
# The stage scripts are not installed (only fmproto is): tests import them from the repository root.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RAW_DIR = REPO / "data" / "raw"


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Folder holding the four verified Fashion-MNIST IDX files (fetched on first use)."""
    from fmproto.data import download

    return download.fetch_fashion_mnist(RAW_DIR)


def _read(fashion_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    from fmproto.data import datasets

    return datasets.read_idx_pair(
        fashion_dir / f"{prefix}-images-idx3-ubyte.gz", fashion_dir / f"{prefix}-labels-idx1-ubyte.gz"
    )


@pytest.fixture(scope="session")
def fashion_train(fashion_dir) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 training images ``(60000, 28, 28)`` uint8 and labels ``(60000,)`` int64."""
    return _read(fashion_dir, "train")


@pytest.fixture(scope="session")
def fashion_test(fashion_dir) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images ``(10000, 28, 28)`` uint8 and labels ``(10000,)`` int64."""
    return _read(fashion_dir, "t10k")


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` (uint8) in the real IDX format: magic 0x0000 0x08 ndim, big-endian dims, bytes."""
    import gzip
    import struct

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def synthetic_dataset(directory: Path, *, n_train=600, n_test=160, n_classes=4, shape=(10, 12), seed=0) -> Path:
    """A small learnable dataset in gzipped IDX files: noisy copies of one random template per class.

    Planted on purpose: train image 4 is an exact copy of train image 0, and test image 0 is an exact
    copy of train image 8 (a leak), so the dedup stage has something to find. Labels cycle through
    the classes, so copies keep their class and every class has the same count.
    """
    rng = np.random.default_rng(seed)
    # Templates share a base so classes overlap under the noise: every method makes some errors.
    templates = rng.integers(60, 196, size=shape) + rng.normal(0, 25, size=(n_classes, *shape))
    directory.mkdir(parents=True, exist_ok=True)
    sets = {}
    for name, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % n_classes
        noise = rng.normal(0, 90, size=(n, *shape))
        sets[name] = (np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels.astype(np.uint8))
    train_images, test_images = sets["train"][0], sets["t10k"][0]
    train_images[4] = train_images[0]
    test_images[0] = train_images[8]
    for name, (images, labels) in sets.items():
        write_idx(directory / f"{name}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{name}-labels-idx1-ubyte.gz", labels)
    return directory


REAL_DATA_FIXTURES = {"fashion_dir", "fashion_train", "fashion_test"}


def pytest_collection_modifyitems(items):
    """A test that uses the real files is `slow` (they are fetched on first use), whoever wrote it."""
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def raises_one_line(path: Path, match: str, call, *args, **kwargs) -> str:
    """Call, expect a DataError matching ``match``, and check it is one line naming ``path``."""
    from fmproto.pipeline.checks import DataError

    with pytest.raises(DataError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ") or str(path) in message
    assert len(message) - len(str(path)) <= 220  # with the path, under 300 characters
    return message


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """A temp git repository holding the pipeline and a small synthetic dataset, reproduced by `dvc
    repro` and its results committed (tests/stages/test_pipeline.py builds it). Tests must not change it."""
    from repos import make_template

    return make_template(tmp_path_factory.mktemp("e2e") / "repo")


@pytest.fixture
def repo(template, tmp_path) -> Path:
    """This test's own copy of the reproduced repository."""
    copy = tmp_path / "repo"
    shutil.copytree(template, copy, symlinks=True)
    return copy
