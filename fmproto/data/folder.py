"""A dataset folder: which files hold the training and test sets (IDX or CSV), read and checked together."""

import os
from pathlib import Path
from typing import Literal

import numpy as np

from fmproto.data.datasets import check_image_shape, cut, read_csv_images, read_idx_pair, shape_text
from fmproto.pipeline.checks import data_error

PathLike = str | os.PathLike

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def find_dataset(directory: PathLike) -> dict:
    """``{"format": "idx", "train": (images, labels), "test": (images, labels)}`` for the four IDX files
    (``IDX_NAMES``, each plain or ``.gz``), else ``{"format": "csv", "train": path, "test": path}`` for the one
    ``.csv``/``.csv.gz`` whose name holds ``train`` (``test``), any case. ``DataError`` for neither layout,
    part of the IDX set, a file both plain and gzipped, or several candidates."""
    directory = Path(directory)
    if not directory.is_dir():
        raise data_error(directory, "dataset folder not found" if not directory.exists() else "not a folder")
    idx_names = [name for pair in IDX_NAMES.values() for name in pair]
    present = {base: [p for p in (directory / base, directory / f"{base}.gz") if os.path.lexists(p)]  # a FIFO too
               for base in idx_names}
    if both := [base for base, paths in present.items() if len(paths) == 2]:
        raise data_error(directory, f"both {both[0]} and {both[0]}.gz are present; keep one")
    missing = [f"{base}[.gz]" for base, paths in present.items() if not paths]
    if 0 < len(missing) < len(idx_names):
        raise data_error(directory, f"incomplete IDX dataset: missing {', '.join(missing)}")
    if not missing:
        return {"format": "idx", **{split: tuple(present[n][0] for n in names) for split, names in IDX_NAMES.items()}}
    csvs = sorted(p for p in directory.iterdir() if not p.is_dir() and p.name.lower().endswith((".csv", ".csv.gz")))
    candidates = {split: [p for p in csvs if split in p.name.lower()] for split in ("train", "test")}
    if not any(candidates.values()):
        raise data_error(directory, f"no dataset found: expected the four IDX files ({', '.join(idx_names)}, each [.gz]) "
                     "or one *train*.csv and one *test*.csv (or .csv.gz)")
    for split, paths in candidates.items():
        if not paths:
            raise data_error(directory, f"no *{split}*.csv (or .csv.gz) next to {', '.join(p.name for p in csvs)}")
        if len(paths) > 1:
            raise data_error(directory, f"several {split} CSV candidates: {', '.join(p.name for p in paths)}; keep one")
    if candidates["train"][0] == candidates["test"][0]:
        raise data_error(candidates["train"][0], "name matches both *train* and *test*; rename it")
    return {"format": "csv", "train": candidates["train"][0], "test": candidates["test"][0]}


def read_dataset_split(found: dict, split: Literal["train", "test"],
                       image_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, H, W)`` uint8 and labels ``(n,)`` int64 of one split located by ``find_dataset``; an IDX
    file's own shape must agree with ``image_shape`` (H, W) when it is given."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if found.get("format") == "csv":
        return read_csv_images(found[split], image_shape)
    if found.get("format") != "idx":
        raise ValueError(f"found['format'] must be 'idx' or 'csv'; got {found.get('format')!r}")
    images, labels = read_idx_pair(*found[split])
    if image_shape is not None and images.shape[1:] != check_image_shape(image_shape):
        raise data_error(found[split][0], f"images are {shape_text(images.shape[1:])} but image_shape is "
                     f"{shape_text(check_image_shape(image_shape))}")
    return images, labels


def read_dataset(directory: PathLike, n_classes: int, image_shape: tuple[int, int] | None = None,
                 class_names: list[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": (images, labels)}`` from ``directory``: labels in
    ``0..n_classes - 1``, training images of every class (named by ``class_names``), one image shape."""
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names must hold n_classes ({n_classes}) names; got {len(class_names)}")
    found = find_dataset(directory)
    splits = {}
    for name in ("train", "test"):
        images, labels = read_dataset_split(found, name, image_shape=image_shape)
        source = found[name][-1] if found["format"] == "idx" else found[name]
        check_labels(labels, n_classes, source=source)
        if name == "train":
            check_every_class(labels, n_classes, source, class_names)
        splits[name] = (images, labels)
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise data_error(directory, f"train images are {shape_text(splits['train'][0].shape[1:])} "
                     f"but test images are {shape_text(splits['test'][0].shape[1:])}")
    return splits


def check_labels(labels: np.ndarray, n_classes: int, source: PathLike) -> None:
    """``DataError`` naming ``source`` unless ``labels`` are 1-D integers in ``0..n_classes - 1``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise data_error(source, f"labels must be 1-D integers; got {labels.dtype} of shape {labels.shape}")
    outside = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if outside.size:
        raise data_error(source, f"label {labels[outside[0]]} outside the {n_classes} classes (0..{n_classes - 1}) "
                     f"at index {outside[0]}; {outside.size} labels out of range")


def check_every_class(labels: np.ndarray, n_classes: int, source: PathLike,
                      class_names: list[str] | None = None) -> None:
    """``DataError`` naming ``source`` and the first class absent from ``labels``, by its ``class_names`` name."""
    empty = np.flatnonzero(np.bincount(np.asarray(labels), minlength=n_classes) == 0)
    if len(empty):
        first = int(empty[0])
        what = f"class {cut(repr(class_names[first]))} (label {first})" if class_names else f"class {first}"
        more = f" ({len(empty) - 1} more classes have none)" if len(empty) > 1 else ""
        raise data_error(source, f"{what} has no images{more}; every class needs at least one training image")
