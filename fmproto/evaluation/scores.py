"""Scores for predicted labels (accuracy, confusion matrix, precision/recall/F1) and error analysis.

Labels are ints in ``0..n_classes-1``. Confusion matrices have a row per true class and a column per
predicted class, as in scikit-learn.
"""

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of images whose predicted label equals the true one.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_samples,), n_samples >= 1
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("accuracy of 0 images is undefined; got empty y_true and y_pred")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) label pairs.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_samples,), ints in ``0..n_classes-1``
    n_classes : int

    Returns
    -------
    cm : ndarray of shape (n_classes, n_classes), int64
        ``cm[t, p]`` is the number of images of true class ``t`` predicted as ``p``.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if int(n_classes) < 1:
        raise ValueError(f"n_classes must be at least 1; got {n_classes!r}")
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            raise ValueError(f"{name} must lie in 0..{n_classes - 1}; got {int(labels[bad][0])}")
    # Each (t, p) pair becomes one flat cell index t * n_classes + p; bincount counts them all at once.
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64, copy=False)


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix.

    Parameters
    ----------
    cm : ndarray of shape (n_classes, n_classes)
        Rows are true classes, columns predicted classes.

    Returns
    -------
    precision, recall, f1 : ndarray of shape (n_classes,), float64
        A score whose denominator is 0 is 0 (a class never predicted has precision 0, a class
        absent from ``y_true`` recall 0), as scikit-learn's ``zero_division=0``.
        ``f1 = 2 tp / (2 tp + fp + fn)``, the harmonic mean of precision and recall where both are defined.
    """
    cm = _check_cm(cm)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)  # tp + fp
    actual = cm.sum(axis=1)  # tp + fn
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, actual)
    f1 = _ratio(2 * tp, predicted + actual)
    return precision, recall, f1


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of the F1 scores of the classes present in ``y_true`` (rows of ``cm`` with images).

    A class with no true images has no recall, so no F1: it is left out, as scikit-learn's
    ``f1_score(average="macro", labels=present)``. A class present but never predicted counts with
    F1 0. Raises ``ValueError`` for a matrix of no images.
    """
    cm = _check_cm(cm)
    present = cm.sum(axis=1) > 0
    if not present.any():
        raise ValueError("macro F1 of 0 images is undefined; the confusion matrix is all zeros")
    return float(precision_recall_f1(cm)[2][present].mean())


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Fraction of each true class predicted correctly, shape ``(n_classes,)``: the recall.

    0 for a class with no images here, as scikit-learn's ``zero_division=0``; ``classification_report``
    reports such a class as None instead.
    """
    return precision_recall_f1(cm)[1]


def furthest_from_own_prototype(class_distances: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` images furthest from the nearest prototype of their own (true) class.

    Parameters
    ----------
    class_distances : ndarray of shape (n_samples, n_classes)
        From ``nearest_prototype``: distance to the nearest prototype of each class.
    y : ndarray of shape (n_samples,)
        True labels.
    n : int
        How many to return (fewer if there are fewer images).

    Returns
    -------
    indices : ndarray of shape (min(n, n_samples),), int64
        Largest distance first; equal distances in increasing index order.
    """
    class_distances, y = _check_class_distances(class_distances, y)
    _check_n(n)
    own = class_distances[np.arange(len(y)), y]
    # A stable sort of the negated distances: largest first, ties keep increasing index order.
    return np.argsort(-own, kind="stable")[:n].astype(np.int64)


def confidently_wrong(class_distances: np.ndarray, y: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` misclassified images the classifier was surest about.

    Sureness is the margin ``own - wrong``: how much further the image is from its true class's
    nearest prototype than from the predicted (wrong) class's. The margin rather than the raw distance
    to the wrong prototype, because the raw distance also measures how typical the image is of any
    class (an image near every prototype is near the wrong one too); the margin measures how far the
    true class was from winning.

    Parameters
    ----------
    class_distances : ndarray of shape (n_samples, n_classes)
    y : ndarray of shape (n_samples,)
        True labels.
    y_pred : ndarray of shape (n_samples,)
        Predicted labels.
    n : int

    Returns
    -------
    indices : ndarray of shape (min(n, n_wrong),), int64
        Indices of images with ``y_pred != y``, largest margin first; equal margins in increasing
        index order. Empty when every prediction is right.
    """
    class_distances, y = _check_class_distances(class_distances, y)
    y, y_pred = _pair(y, y_pred)
    _check_n(n)
    wrong = np.flatnonzero(y != y_pred)
    margin = class_distances[wrong, y[wrong]] - class_distances[wrong, y_pred[wrong]]
    return wrong[np.argsort(-margin, kind="stable")[:n]].astype(np.int64)


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D int64 label arrays of equal length, or ``ValueError``."""
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
    """``numerator / denominator``, 0 where the denominator is 0."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _check_class_distances(class_distances: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    class_distances, y = np.asarray(class_distances), np.asarray(y).astype(np.int64, copy=False)
    if class_distances.ndim != 2 or y.shape != (len(class_distances),):
        raise ValueError(f"class_distances must be (n_samples, n_classes) with y of shape (n_samples,); "
                         f"got {class_distances.shape} and {y.shape}")
    bad = (y < 0) | (y >= class_distances.shape[1])
    if bad.any():
        raise ValueError(f"y must lie in 0..{class_distances.shape[1] - 1}; got {int(y[bad][0])}")
    return class_distances, y


def _check_n(n: int) -> None:
    if int(n) < 0:
        raise ValueError(f"n must be a non-negative number of images; got {n!r}")


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro F1 and per-class precision/recall/F1, keyed by class name (for ``dvc metrics diff``).

    A class with no images in ``y_true`` has ``None`` (JSON null) for precision, recall and F1: its
    recall is undefined, and a precision of 0 would only say it was predicted for other classes'
    images, which their recalls already count. Macro F1 is the mean over the classes present
    (``macro_f1``). Figures are rounded to 5 decimals, so a metrics file changes only where a score does.
    """
    cm = confusion_matrix(y_true, y_pred, len(classes))
    precision, recall, f1 = precision_recall_f1(cm)
    present = cm.sum(axis=1) > 0
    return {
        "accuracy": round(accuracy(y_true, y_pred), 5),
        "macro_f1": round(float(macro_f1(cm)), 5),
        "n": int(len(y_true)),
        "per_class": {
            name: ({"precision": round(float(p), 5), "recall": round(float(r), 5), "f1": round(float(f), 5)}
                   if has else dict.fromkeys(("precision", "recall", "f1")))
            for name, p, r, f, has in zip(classes, precision, recall, f1, present)
        },
    }


def confusion_rows(cm: np.ndarray, classes: list[str]) -> dict[str, list]:
    """Columns ``actual``, ``predicted``, ``count`` with one row for every pair of classes (zeros too).

    ``n_classes**2`` rows whatever the number of images, in a fixed order, so a committed table
    diffs cell by cell.
    """
    cm = _check_cm(cm)
    if cm.shape[0] != len(classes):
        raise ValueError(f"cm is {cm.shape[0]}x{cm.shape[0]} but there are {len(classes)} classes")
    names = np.asarray(classes)
    actual, predicted = np.divmod(np.arange(cm.size), cm.shape[0])
    return {"actual": names[actual].tolist(), "predicted": names[predicted].tolist(), "count": cm.ravel().tolist()}
