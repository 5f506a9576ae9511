"""A stage's inputs that earlier stages wrote, checked before they are trusted.

Shapes come from the ``.npy`` headers before anything is inflated, so every load is bounded. Each writer
records the ``fingerprint`` of the inputs it was made from (``provenance``) and a reader compares them with
the inputs it was handed, so features of old images never meet new ones."""

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from fmproto.pipeline import io
from fmproto.pipeline import params as P

_KINDS = {"int": np.integer, "uint8": np.uint8, "number": np.number, "str": np.str_, "bool": np.bool_}
# fmproto.data.datasets.MAX_DATA_BYTES, here so that reading a dataset imports no parser (test_npz_bounds checks).
MAX_IMAGE_BYTES = 512 * 1024**2
_SMALL = 16 * 1024**2  # what the arrays besides those whose shapes are checked may take
_SPLIT_ARRAYS = ("train", "valid", "dropped")
_RECORDS = {"train": ("training images", "other training images"), "test": ("test images", "other test images"),
            "split": ("split", "another split")}  # what each provenance record names, and a mismatch


class Arrays(dict):
    """A checked input's arrays by name, with its file (``path``) and ``fingerprint``."""

    def __init__(self, arrays: dict[str, np.ndarray], path: str | Path, fingerprint: str = "") -> None:
        super().__init__(arrays)
        self.path, self.fingerprint = os.fspath(path), fingerprint


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 of each array's dtype and shape as text (``"|u1(60000, 28, 28);"``), then its C-order bytes."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a, order="C")
        digest.update(f"{a.dtype.str}{a.shape};".encode())
        digest.update(a)
    return digest.hexdigest()


def provenance(**sources: Arrays) -> dict[str, np.ndarray]:
    """``{name}_fingerprint`` arrays of the inputs a writer's arrays were made from."""
    return {f"{name}_fingerprint": np.array(source.fingerprint) for name, source in sources.items()}


def _outside(values: np.ndarray, n: int) -> bool:
    return bool(len(values)) and bool(values.min() < 0 or values.max() >= n)


def check_indices(path: str | Path, indices: dict[str, np.ndarray], n: int, what: str) -> None:
    """``DataError`` naming ``path`` when an index array is not 1-D or points outside ``0..n-1``."""
    for name, idx in indices.items():
        if idx.ndim != 1 or _outside(idx, n):
            raise io.DataError(f"{path}: {name} indices must be 1-D within 0..{n - 1} ({what}); "
                               f"they are not: is it the split of this dataset?")


def check_classes(path: str | Path, labels: np.ndarray, classes: list[str], where: str) -> None:
    """``DataError`` naming ``path`` and the first class with no images among ``labels``."""
    empty = np.flatnonzero(np.bincount(labels, minlength=len(classes)) == 0)
    if len(empty):
        raise io.DataError(f"{path}: class {classes[empty[0]]!r} (label {empty[0]}) has no images {where}")


def load_dataset(path: str | Path) -> Arrays:
    """An ingested ``.npz``: images uint8 ``(n, H, W)``, labels ``(n,)`` within the classes, class names;
    the fingerprint ingest recorded must be that of the images and labels read."""
    headers = _headers(path, {"images": "uint8", "labels": "int", "classes": "str"})
    images, labels, classes = (headers[name][0] for name in ("images", "labels", "classes"))
    if len(images) != 3 or labels != images[:1] or len(classes) != 1:
        raise io.DataError(f"{path}: images must be (n, H, W) with one label each and the class names 1-D; "
                           f"got {images}, {labels} and {classes}")
    if _bytes(headers, "images") > MAX_IMAGE_BYTES:
        raise io.DataError(f"{path}: its {images[0]:,} images of {images[1]}x{images[2]} would take "
                           f"{_bytes(headers, 'images') / 1e9:.1f} GB, more than ingest writes "
                           f"({MAX_IMAGE_BYTES / 1e9:.1f} GB); not loaded")
    data = io.load_arrays(path, max_bytes=_bytes(headers, "images", "labels") + _SMALL)
    if _outside(data["labels"], len(data["classes"])):
        raise io.DataError(f"{path}: labels must lie in 0..{len(data['classes']) - 1} (its classes)")
    bad = [name for name in data["classes"].tolist() if not name or not name.isprintable()]
    if bad:  # a tab or a line break would break tables, plots and log lines
        raise io.DataError(f"{path}: class names must be a list of printable one-line names; got {repr(bad[0])[:80]}")
    made = fingerprint(data["images"], data["labels"])
    if "fingerprint" in data and str(data["fingerprint"]) != made:
        raise io.DataError(f"{path}: its images and labels are not the ones its fingerprint records "
                           "(changed after ingest?); run dvc repro")
    return Arrays(data, path, made)


def load_split(path: str | Path, train: Arrays) -> Arrays:
    """A split ``.npz`` (train, valid, dropped index arrays), made from ``train`` and within it."""
    n = len(train["labels"])
    headers = _headers(path, dict.fromkeys(_SPLIT_ARRAYS, "int"))
    for name in _SPLIT_ARRAYS:
        shape = headers[name][0]
        if len(shape) != 1 or shape[0] > n:
            raise io.DataError(f"{path}: {name} must be 1-D indices, at most one per image of {train.path} "
                               f"({n:,}); got shape {shape}")
    split = io.load_arrays(path, max_bytes=_bytes(headers, *_SPLIT_ARRAYS) + _SMALL)
    _check_made_from(path, split, train=train)
    check_indices(path, {name: split[name] for name in _SPLIT_ARRAYS}, n, f"{n:,} ingested training images")
    if not len(split["train"]) or not len(split["valid"]):
        raise io.DataError(f"{path}: the training and validation splits must not be empty")
    return Arrays(split, path, fingerprint(*(split[name] for name in _SPLIT_ARRAYS)))


def load_features(path: str | Path, train: Arrays, split: Arrays, test: Arrays | None = None) -> Arrays:
    """The features stage's ``.npz``: a row per image, made from ``train``, ``split`` and (if given) ``test``."""
    n_train = len(train["labels"])
    headers = _headers(path, {"train": "number", "test": "number", "augmented": "number",
                              "augmented_source": "int", "spec_kind": "str", "spec_numbers": "int",
                              "augment_flags": "bool", "test_shifted": "number"})
    shape = headers["train"][0]
    if len(shape) != 2 or shape[0] != n_train:
        raise io.DataError(f"{path}: train features must be ({n_train:,}, n_features), a row per image of "
                           f"{train.path}; got {shape}")
    width = shape[1]
    shape = headers["test"][0]
    if len(shape) != 2 or shape[1] != width or (test is not None and shape[0] != len(test["labels"])):
        rows = f"{len(test['labels']):,}, a row per image of {test.path}" if test is not None else "n_test"
        raise io.DataError(f"{path}: test features must be ({rows}, {width:,}) like the train features; got {shape}")
    shape, sources = headers["augmented"][0], headers["augmented_source"][0]
    if len(shape) != 2 or shape[1] != width or sources != shape[:1] or shape[0] not in [m * n_train for m in (0, 1, 4, 5)]:
        raise io.DataError(f"{path}: augmented features must be (0, 1, 4 or 5 x {n_train:,}, {width:,}) with one "
                           f"source each; got {shape} and {sources}")
    shape, n_test = headers["test_shifted"][0], headers["test"][0][0]
    if len(shape) != 2 or shape[1] != width or shape[0] not in (0, 4 * n_test):
        raise io.DataError(f"{path}: test_shifted features must be (0 or 4 x {n_test:,}, {width:,}), the test "
                           f"images' one-pixel shifts; got {shape}")
    n_bytes = _bytes(headers, "train", "test", "augmented", "test_shifted")
    if n_bytes > P.MEMORY_LIMIT:  # the features stage refuses to write more
        raise io.DataError(f"{path}: its features would take {n_bytes / 1e9:.1f} GB, over the "
                           f"{P.MEMORY_LIMIT / 1e9:.1f} GB the features stage writes; not loaded")
    # The fitted state may take as much again (the stage bounds PCA's by its covariance's memory).
    feats = io.load_arrays(path, max_bytes=n_bytes + _bytes(headers, "augmented_source") + P.MEMORY_LIMIT)
    _check_made_from(path, feats, train=train, split=split, **({"test": test} if test is not None else {}))
    check_indices(path, {"augmented_source": feats["augmented_source"]}, n_train, "training images")
    flags = feats["augment_flags"]
    if flags.shape != (2,):
        raise io.DataError(f"{path}: augment_flags must be two values (shifts, flip); got shape {flags.shape}")
    shifts, flip = (bool(flag) for flag in flags)
    if (len(feats["augmented"]), len(feats["test_shifted"])) != ((4 * shifts + flip) * n_train, 4 * shifts * n_test):
        raise io.DataError(f"{path}: augment_flags say shifts {shifts}, flip {flip}, but it holds "
                           f"{len(feats['augmented']):,} augmented and {len(feats['test_shifted']):,} test_shifted rows "
                           f"for {n_train:,} training and {n_test:,} test images")
    return Arrays(feats, path)


def _headers(path: str | Path, required: dict[str, str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every array's shape and dtype; each of ``required`` present and of its ``_KINDS`` kind."""
    headers = io.array_headers(path)
    for name, kind in required.items():
        if name not in headers:
            raise io.DataError(f"{path}: has no array {name!r} (it has {', '.join(sorted(headers)) or 'none'}); "
                               "is it the right file for this flag?")
        if not np.issubdtype(headers[name][1], _KINDS[kind]):
            raise io.DataError(f"{path}: array {name!r} has dtype {headers[name][1]}, expected {kind}")
    return headers


def _bytes(headers: dict[str, tuple[tuple[int, ...], np.dtype]], *names: str) -> int:
    return sum(math.prod(headers[name][0]) * headers[name][1].itemsize for name in names)


def _check_made_from(path: str | Path, arrays: dict[str, np.ndarray], **sources: Arrays) -> None:
    for name, source in sources.items():
        what, other = _RECORDS[name]
        record = arrays.get(f"{name}_fingerprint")
        if record is None:
            raise io.DataError(f"{path}: does not record which {what} it was made from "
                               "(written by an older version); run dvc repro")
        if str(record) != source.fingerprint:
            raise io.DataError(f"{path}: was made from {other} than {source.path} (run dvc repro)")


PROTOTYPE_METHODS = ("kmeans", "gmlvq")  # fmproto.evaluation.estimators.PROTOTYPE_METHODS: evaluate-test keeps them


def load_prototypes(path: str | Path, n_features: int, n_classes: int) -> Arrays:
    """evaluate-test's prototype models: for each method of ``PROTOTYPE_METHODS`` it fitted, ``<method>_prototypes
    (n_prototypes, n_features)``, ``<method>_labels (n_prototypes,)`` within the classes and, for gmlvq,
    ``gmlvq_omega (rank, n_features)``; every value finite."""
    headers = io.array_headers(path)
    expected = {f"{m}_{part}" for m in PROTOTYPE_METHODS if f"{m}_prototypes" in headers
                for part in ("prototypes", "labels", *(("omega",) if m == "gmlvq" else ()))}
    if set(headers) != expected:
        raise io.DataError(f"{path}: must hold each method's prototypes and labels (and gmlvq_omega); got arrays "
                           f"{', '.join(sorted(headers)) or 'none'}")
    for name, (shape, dtype) in headers.items():
        kind = "int" if name.endswith("_labels") else "number"
        width = shape[1:] if not name.endswith("_labels") else (n_features,)
        if not np.issubdtype(dtype, _KINDS[kind]) or len(shape) != (1 if kind == "int" else 2) or width != (n_features,):
            raise io.DataError(f"{path}: {name} must be {'1-D labels' if kind == 'int' else f'rows of {n_features:,} features'}; "
                               f"got {dtype} {shape}")
    n_bytes = sum(_bytes(headers, name) for name in headers)
    if n_bytes > P.MEMORY_LIMIT:
        raise io.DataError(f"{path}: its prototypes would take {n_bytes / 1e9:.1f} GB, over "
                           f"{P.MEMORY_LIMIT / 1e9:.1f} GB; not loaded")
    arrays = io.load_arrays(path, max_bytes=n_bytes + _SMALL)
    for m in PROTOTYPE_METHODS:
        if f"{m}_prototypes" in arrays and len(arrays[f"{m}_labels"]) != len(arrays[f"{m}_prototypes"]):
            raise io.DataError(f"{path}: {m}_labels must give one label per prototype")
        if f"{m}_labels" in arrays and _outside(arrays[f"{m}_labels"], n_classes):
            raise io.DataError(f"{path}: {m}_labels must lie in 0..{n_classes - 1} (the classes)")
    if not all(np.isfinite(a).all() for name, a in arrays.items() if not name.endswith("_labels")):
        raise io.DataError(f"{path}: a prototype or projection value is NaN or infinite")
    return Arrays(arrays, path)
