"""Counting and sampling images by class, for the pictures and metrics that describe a dataset."""

import numpy as np


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Images per class, shape ``(n_classes,)`` int64."""
    return np.bincount(np.asarray(labels), minlength=n_classes)


def per_class_samples(labels: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` random indices of each class, ``(n_classes, per_class)``; a short class's row ends in -1s."""
    labels = np.asarray(labels)
    shuffled = rng.permutation(len(labels))
    by_class = shuffled[np.argsort(labels[shuffled], kind="stable")]  # random order inside each class
    starts = np.searchsorted(labels[by_class], np.arange(n_classes))
    counts = class_counts(labels, n_classes)
    offsets = np.arange(per_class)
    present = offsets[None, :] < counts[:, None]
    positions = np.minimum(starts[:, None] + offsets[None, :], max(len(labels) - 1, 0))
    return np.where(present, by_class[positions] if len(labels) else -1, -1)
