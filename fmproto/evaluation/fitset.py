"""The rows a final model is fitted on: the training images it uses, plus their augmented copies.

Neighbour methods (knn, ann) take the augmented copies as extra prototypes, and GMLVQ learns from them
(0.2 points on validation with make best's features); a class mean or k-means would barely move for
them, and k-means would cost five times as much.
"""

import numpy as np

from fmproto.representation import augment, transform

AUGMENTED_METHODS = ("knn", "ann", "gmlvq")


def fit_indices(split: dict, fit_on: str) -> np.ndarray:
    """Indices of the ingested training images the final model is fitted on (``train`` or ``train+valid``)."""
    if fit_on not in ("train", "train+valid"):
        raise ValueError(f"fit_on must be 'train' or 'train+valid'; got {fit_on!r}")
    return split["train"] if fit_on == "train" else np.sort(np.concatenate([split["train"], split["valid"]]))


def fit_data(feats: dict, labels: np.ndarray, fit_idx: np.ndarray, method: str):
    """Features ``(n_rows, n_features)`` float32, labels ``(n_rows,)`` and ``fit_set`` rows of ``method``'s
    fit set, from the features stage's arrays ``feats`` and the ingested training ``labels``."""
    X_fit, rows = fit_set(feats["train"], feats["augmented"], feats["augmented_source"], fit_idx,
                          with_augmented=method in AUGMENTED_METHODS)
    return X_fit.astype(np.float32, copy=False), labels[rows % len(labels)], rows


def shifted_queries(feats: dict, rows: np.ndarray | None = None, of: str = "train") -> np.ndarray | None:
    """The features ``(4, len(rows), n_features)`` float32 of the one-pixel shifts (right, left, down, up) of the
    images ``rows`` (None: all) of ``feats[of]``: training images' (``"train"``) from ``augmented``, test images'
    (``"test"``) from ``test_shifted``; None when the features stage made none (``features.augment_shifts`` false)."""
    if not bool(feats["augment_flags"][0]):
        return None
    copies, n_images = (feats["augmented"], len(feats["train"])) if of == "train" else (feats["test_shifted"], len(feats["test"]))
    shifts = copies[: 4 * n_images].reshape(4, n_images, -1)  # the shifts lead augment's copies
    return (shifts if rows is None else shifts[:, np.asarray(rows, dtype=np.int64)]).astype(np.float32, copy=False)


def fit_images(images: np.ndarray, feats: dict, rows: np.ndarray) -> np.ndarray:
    """The pictures of fit-set ``rows`` (from ``fit_data``): training images or their augmented copies."""
    _, _, (shifts, flip) = transform.from_arrays(feats)
    return augment.images_of_rows(images, rows, shifts, flip)


def fit_set(train_features: np.ndarray, augmented_features: np.ndarray, augmented_source: np.ndarray,
            fit_idx: np.ndarray, with_augmented: bool) -> tuple[np.ndarray, np.ndarray]:
    """The features ``X_fit`` of the training images ``fit_idx`` and, ``with_augmented``, of their copies
    (never a copy of an image outside ``fit_idx``), and ``rows (n_rows,)`` int64, each row's place in
    ``augment``'s output: ``fit_idx`` first, then ``n_train + j`` for copy ``j``; ``rows % n_train`` is
    the training image, for its label. ``augmented_features`` are in ``augment``'s order."""
    n_train = len(train_features)
    rows = np.asarray(fit_idx, dtype=np.int64)
    if not with_augmented or not len(augmented_source):
        return train_features[rows], rows
    copies = np.flatnonzero(np.isin(augmented_source, rows))
    return np.concatenate([train_features[rows], augmented_features[copies]]), np.concatenate([rows, n_train + copies])
