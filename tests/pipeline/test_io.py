"""fmproto.pipeline.io: the pipeline's own files round-trip, and a failed write leaves nothing behind."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmproto.pipeline import io
from fmproto.search import ann_files

from conftest import raises_one_line

REPO = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(3)
IMAGES_5x7 = RNG.integers(0, 256, size=(4, 5, 7), dtype=np.uint8)
LABELS_4 = np.array([3, 0, 9, 3], dtype=np.uint8)


def write(path: Path, data: bytes | str, compress: bool = False) -> Path:
    data = data.encode() if isinstance(data, str) else data
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


# ---------------------------------------------------------------------------------------------------- writers


def test_arrays_round_trip(tmp_path):
    path = tmp_path / "new" / "dir" / "data.npz"
    classes = np.array(["T-shirt/top", "Ankle boot"])
    io.save_arrays(path, images=IMAGES_5x7, labels=LABELS_4.astype(np.int64), classes=classes)
    loaded = io.load_arrays(path)
    assert sorted(loaded) == ["classes", "images", "labels"]
    np.testing.assert_array_equal(loaded["images"], IMAGES_5x7)
    assert loaded["labels"].dtype == np.int64 and loaded["classes"].tolist() == classes.tolist()
    assert sorted(os.listdir(path.parent)) == ["data.npz"]


def test_load_arrays_errors(tmp_path):
    raises_one_line(tmp_path / "no.npz", "file not found", io.load_arrays, tmp_path / "no.npz")
    bad = write(tmp_path / "bad.npz", b"PK\x03\x04 truncated zip")
    raises_one_line(bad, "not a readable .npz file", io.load_arrays, bad)
    np.save(tmp_path / "one.npy", np.zeros(3))
    raises_one_line(tmp_path / "one.npy", "is a single .npy array", io.load_arrays, tmp_path / "one.npy")
    with pytest.raises(ValueError, match="array 'objs' has dtype object"):
        io.save_arrays(tmp_path / "o.npz", objs=np.array([{}, 1], dtype=object))
    assert not (tmp_path / "o.npz").exists()


def test_json_round_trip(tmp_path):
    path = tmp_path / "m" / "metrics.json"
    io.write_json(path, {"acc": np.float32(0.5), "n": np.int64(3), "counts": np.arange(3),
                         np.int64(7): [np.bool_(True)]})  # a numpy key too
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "acc": 0.5,' in text
    assert io.read_json(path) == json.loads(text) == {"acc": 0.5, "n": 3, "counts": [0, 1, 2], "7": [True]}
    bad = write(tmp_path / "bad.json", '{"a": 1,\n}')
    raises_one_line(bad, r"not valid JSON \(line 2 column 1", io.read_json, bad)
    raises_one_line(tmp_path / "no.json", "file not found", io.read_json, tmp_path / "no.json")


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.csv.gz"])
def test_csv_round_trip(tmp_path, name):
    frame = pd.DataFrame({"i": [0, 5], "j": [3, 4], "distance": [0.0, 1.25], "kind": ["exact", "near"]})
    io.write_csv(tmp_path / name, frame)
    pd.testing.assert_frame_equal(io.read_csv(tmp_path / name), frame)
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"
    else:
        assert (tmp_path / name).read_text().splitlines()[0] == "i,j,distance,kind"
    raises_one_line(tmp_path / "empty.csv", "empty file", io.read_csv, write(tmp_path / "empty.csv", ""))


def test_atomic_path_success_mode_and_suffix(tmp_path):
    target = tmp_path / "sub" / "fig.png"
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(target.parent) == ["fig.png"]
    reference = tmp_path / "plain"
    reference.write_text("x")
    assert target.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777  # not mkstemp's 0600


class Boom(RuntimeError):
    pass


def _failing_savez(file, **arrays):
    file.write(b"PK partial")
    raise Boom("disk full")


def _failing_to_csv(self, path, **kwargs):
    Path(path).write_text("partial")
    raise Boom("disk full")


class _FailingIndex:
    def save(self, path):
        Path(path).write_bytes(b"partial")
        raise Boom("disk full")


WRITERS = {
    "atomic_path": lambda path: _write_then_fail(path),
    "save_arrays": lambda path: io.save_arrays(path, x=np.zeros(3)),
    "write_json": lambda path: io.write_json(path, {"bad": {1, 2}}),  # sets are not JSON
    "write_csv": lambda path: io.write_csv(path, pd.DataFrame({"a": [1]})),
    "save_ann_index": lambda path: ann_files.save_index(_FailingIndex(), path),
}


def _write_then_fail(path):
    with io.atomic_path(path) as tmp:
        tmp.write_text("partial")
        raise Boom("disk full")


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_writers_leave_nothing_on_failure(tmp_path, monkeypatch, writer, existing):
    monkeypatch.setattr(np, "savez", _failing_savez)
    monkeypatch.setattr(pd.DataFrame, "to_csv", _failing_to_csv)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "result.out"
    if existing:
        target.write_text("old")
    with pytest.raises((Boom, TypeError)):
        writer(target)
    assert os.listdir(folder) == (["result.out"] if existing else [])
    if existing:
        assert target.read_text() == "old"


def test_annoy_round_trip(tmp_path):
    from annoy import AnnoyIndex

    X = RNG.normal(size=(50, 6)).astype(np.float32)
    index = AnnoyIndex(6, "euclidean")
    index.set_seed(0)
    for i, x in enumerate(X):  # annoy's API takes one item at a time
        index.add_item(i, x)
    index.build(4)
    path = tmp_path / "models" / "ann.idx"
    ann_files.save_index(index, path)
    loaded = ann_files.load_annoy_index(path, n_features=6, metric="euclidean")
    assert loaded.get_n_items() == 50
    assert loaded.get_nns_by_vector(X[7], 1) == [7]
    assert os.listdir(path.parent) == ["ann.idx"]
    raises_one_line(tmp_path / "no.idx", "file not found", ann_files.load_annoy_index, tmp_path / "no.idx", 6, "euclidean")
    raises_one_line(path, "annoy cannot load it with n_features=5", ann_files.load_annoy_index, path, 5, "euclidean")
    with pytest.raises(ValueError, match="metric must be one of 'angular', .*; got 'cosine'"):
        ann_files.load_annoy_index(path, 6, "cosine")


@pytest.mark.parametrize("value, where", [(float("nan"), "by_k.5.error"), (float("inf"), "by_k.5.error"),
                                          (np.float32("nan"), "by_k.5.error")])
def test_write_json_refuses_nan_and_infinity(tmp_path, value, where):
    path = tmp_path / "m.json"
    with pytest.raises(ValueError, match=rf"m.json: {where} is not a finite number; JSON has no NaN or infinity"):
        io.write_json(path, {"by_k": {"5": {"error": value}}})
    assert not path.exists()
    io.write_json(path, {"fit": None, "values": [1.5, 2]})
    assert json.loads(path.read_text()) == {"fit": None, "values": [1.5, 2]}


def _special(tmp_path: Path, kind: str) -> Path:
    if kind == "FIFO":
        os.mkfifo(tmp_path / "in.json")
    elif kind == "folder":
        (tmp_path / "in.json").mkdir()
    elif kind == "link to nothing":
        (tmp_path / "in.json").symlink_to(tmp_path / "nowhere.json")
    else:
        return Path("/dev/null")
    return tmp_path / "in.json"


@pytest.mark.parametrize("kind, problem", [
    ("FIFO", "is a FIFO, not a regular file"),  # not opened: that would wait for a writer
    ("character device", "is a character device, not a regular file"),
    ("folder", "is a folder, not a regular file"),
    ("link to nothing", "is a symbolic link to nothing, not a regular file"),
])
@pytest.mark.parametrize("reader", [io.read_json, io.load_arrays, io.read_csv])
def test_readers_name_what_is_not_a_regular_file(tmp_path, kind, problem, reader):
    path = _special(tmp_path, kind)
    raises_one_line(path, problem, reader, path)


def test_a_fifo_in_a_dataset_folder_is_named_not_missing(tmp_path):
    from conftest import synthetic_dataset
    from fmproto.data import folder

    data = synthetic_dataset(tmp_path / "data", n_train=12, n_test=4)
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    os.mkfifo(data / "t10k-labels-idx1-ubyte")
    raises_one_line(data / "t10k-labels-idx1-ubyte", "is a FIFO, not a regular file",
                    folder.read_dataset, data, n_classes=4)
    csv = tmp_path / "csv"
    csv.mkdir()
    (csv / "x-train.csv").write_text("label,pixel1\n0,1\n")
    os.mkfifo(csv / "x-test.csv")
    raises_one_line(csv / "x-test.csv", "is a FIFO, not a regular file", folder.read_dataset, csv, n_classes=1)


def test_a_link_to_a_regular_file_is_read_through(tmp_path):
    io.write_json(tmp_path / "real.json", {"a": 1})
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    assert io.read_json(tmp_path / "link.json") == {"a": 1}
