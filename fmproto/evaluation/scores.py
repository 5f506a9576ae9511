"""Scores of predicted labels (accuracy, confusion matrix, precision/recall/F1) and error analysis.

Labels are ints in ``0..n_classes-1``; a confusion matrix has a row per true class and a column per
predicted class, as in scikit-learn. A score whose denominator is 0 is 0 (``zero_division=0``).
"""

import numpy as np

from fmproto.pipeline.checks import labels


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of the ``(n_samples,)`` labels predicted right; ``ValueError`` for no images."""
    y_true, y_pred = _pair(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("accuracy of 0 images is undefined; got empty y_true and y_pred")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``cm (n_classes, n_classes)`` int64: ``cm[t, p]`` images of true class ``t`` predicted as ``p``."""
    y_true, y_pred = _pair(y_true, y_pred)
    y_true, y_pred = labels(y_true, n_classes, "y_true"), labels(y_pred, n_classes, "y_pred")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64, copy=False)


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and ``f1 = 2 tp / (2 tp + fp + fn)``, each ``(n_classes,)`` float64."""
    cm = _check_cm(cm)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)  # tp + fp, tp + fn
    return _ratio(tp, predicted), _ratio(tp, actual), _ratio(2 * tp, predicted + actual)


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes present in ``y_true`` (scikit-learn's ``labels=present``); a class present
    but never predicted counts as 0. ``ValueError`` for a matrix of no images."""
    present = _check_cm(cm).sum(axis=1) > 0
    if not present.any():
        raise ValueError("macro F1 of 0 images is undefined; the confusion matrix is all zeros")
    return float(precision_recall_f1(cm)[2][present].mean())


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """The recall of each class, ``(n_classes,)``; 0 for a class with no images."""
    return precision_recall_f1(cm)[1]


def furthest_from_own_prototype(class_distances: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Indices (int64) of the ``n`` images furthest from their true class ``y``'s nearest prototype, by
    ``class_distances (n_samples, n_classes)`` (``nearest_prototype``'s); largest first, ties in index order."""
    class_distances, y = _check_class_distances(class_distances, y, n)
    own = class_distances[np.arange(len(y)), y]
    return np.argsort(-own, kind="stable")[:n].astype(np.int64)


def confidently_wrong(class_distances: np.ndarray, y: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Indices (int64) of the ``n`` misclassified images with the largest margin ``own - wrong``, ties in
    index order. The margin says how far the true class was from winning; a raw distance would also
    measure how typical an image is."""
    class_distances, y = _check_class_distances(class_distances, y, n)
    y, y_pred = _pair(y, y_pred)
    wrong = np.flatnonzero(y != y_pred)
    margin = class_distances[wrong, y[wrong]] - class_distances[wrong, y_pred[wrong]]
    return wrong[np.argsort(-margin, kind="stable")[:n]].astype(np.int64)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro F1, ``n`` and per-class precision/recall/F1 by class name, to 5 decimals.

    A class with no images in ``y_true`` has None (JSON null) for all three: its recall is undefined,
    and its precision would only repeat what the other classes' recalls count.
    """
    cm = confusion_matrix(y_true, y_pred, len(classes))
    precision, recall, f1 = precision_recall_f1(cm)
    keys = ("precision", "recall", "f1")
    per_class = {name: dict(zip(keys, [round(float(v), 5) for v in values])) if has else dict.fromkeys(keys)
                 for name, *values, has in zip(classes, precision, recall, f1, cm.sum(axis=1) > 0)}
    return {"accuracy": round(accuracy(y_true, y_pred), 5), "macro_f1": round(macro_f1(cm), 5), "n": int(len(y_true)),
            "per_class": per_class}


def confusion_rows(cm: np.ndarray, classes: list[str]) -> dict[str, list]:
    """Columns ``actual``, ``predicted``, ``count``: a row for every pair of classes, zeros too, in a
    fixed order, so a committed table diffs cell by cell."""
    cm = _check_cm(cm)
    if cm.shape[0] != len(classes):
        raise ValueError(f"cm is {cm.shape[0]}x{cm.shape[0]} but there are {len(classes)} classes")
    names = np.asarray(classes)
    actual, predicted = np.divmod(np.arange(cm.size), cm.shape[0])
    return {"actual": names[actual].tolist(), "predicted": names[predicted].tolist(), "count": cm.ravel().tolist()}


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"labels must be two 1-D arrays of one length; got shapes {y_true.shape} and {y_pred.shape}")
    return y_true.astype(np.int64, copy=False), y_pred.astype(np.int64, copy=False)


def _check_cm(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (n_classes, n_classes); got shape {cm.shape}")
    return cm


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def _check_class_distances(class_distances: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    class_distances, y = np.asarray(class_distances), np.asarray(y).astype(np.int64, copy=False)
    if class_distances.ndim != 2 or y.shape != (len(class_distances),):
        raise ValueError(f"class_distances must be (n_samples, n_classes) with y of shape (n_samples,); "
                         f"got {class_distances.shape} and {y.shape}")
    y = labels(y, class_distances.shape[1], "y")
    if int(n) < 0:
        raise ValueError(f"n must be a non-negative number of images; got {n!r}")
    return class_distances, y
