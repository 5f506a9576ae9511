"""A stage's inputs that earlier stages wrote, checked: arrays present, of the right kind, indices in range.

A wrong file given for a flag (swapped ``--train`` and ``--split``) is then one line naming the
file and what is missing, not a ``KeyError`` traceback.
"""

from pathlib import Path

import numpy as np

from fmproto import io


def load_inputs(path: str | Path, required: dict[str, str]) -> dict[str, np.ndarray]:
    """The arrays of a stage's ``.npz`` input, each checked: present and of the expected kind.

    ``required`` maps an array name to its kind: ``"int"``, ``"uint8"``, ``"number"``, ``"str"`` or ``"bool"``.
    A missing array or a wrong dtype is a one-line ``DataError`` naming the file (e.g. flags swapped).
    """
    arrays = io.load_arrays(path)
    kinds = {"int": np.integer, "uint8": np.uint8, "number": np.number, "str": np.str_, "bool": np.bool_}
    for name, kind in required.items():
        if name not in arrays:
            raise io.DataError(f"{path}: has no array {name!r} (it has {', '.join(sorted(arrays)) or 'none'}); "
                               "is it the right file for this flag?")
        if not np.issubdtype(arrays[name].dtype, kinds[kind]):
            raise io.DataError(f"{path}: array {name!r} has dtype {arrays[name].dtype}, expected {kind}")
    return arrays


def check_indices(path: str | Path, indices: dict[str, np.ndarray], n: int, what: str) -> None:
    """One-line ``DataError`` naming ``path`` when an index array is not 1-D or points outside ``0..n-1``."""
    for name, idx in indices.items():
        if idx.ndim != 1 or (len(idx) and (idx.min() < 0 or idx.max() >= n)):
            raise io.DataError(f"{path}: {name} indices must be 1-D within 0..{n - 1} ({what}); "
                               f"they are not: is it the split of this dataset?")


def load_dataset(path: str | Path) -> dict[str, np.ndarray]:
    """An ingested ``.npz`` (images uint8 ``(n, H, W)``, labels ``(n,)`` within the classes, class names), checked."""
    data = load_inputs(path, {"images": "uint8", "labels": "int", "classes": "str"})
    images, labels = data["images"], data["labels"]
    if images.ndim != 3 or labels.shape != (len(images),):
        raise io.DataError(f"{path}: images must be (n, H, W) with one label each; got {images.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(data["classes"])):
        raise io.DataError(f"{path}: labels must lie in 0..{len(data['classes']) - 1} (its classes)")
    return data


def load_split(path: str | Path, n_images: int) -> dict[str, np.ndarray]:
    """A split ``.npz`` (train, valid, dropped index arrays), checked against ``n_images`` ingested images."""
    split = load_inputs(path, {"train": "int", "valid": "int", "dropped": "int"})
    check_indices(path, split, n_images, f"{n_images:,} ingested training images")
    if not len(split["train"]) or not len(split["valid"]):
        raise io.DataError(f"{path}: the training and validation splits must not be empty")
    return split


def load_features(path: str | Path, n_train: int) -> dict[str, np.ndarray]:
    """The features stage's ``.npz``, checked against ``n_train`` ingested training images."""
    feats = load_inputs(path, {"train": "number", "test": "number", "augmented": "number",
                               "augmented_source": "int", "spec_kind": "str", "spec_numbers": "int",
                               "augment_flags": "bool"})
    if feats["train"].ndim != 2 or len(feats["train"]) != n_train:
        raise io.DataError(f"{path}: train features must be ({n_train:,}, n_features); got {feats['train'].shape}")
    check_indices(path, {"augmented_source": feats["augmented_source"]}, n_train, "training images")
    return feats
