"""Explaining predictions: which images to explain, and the image-beside-its-neighbours layout."""

import numpy as np

# Neighbours drawn beside an image at most: a picture of k=1000 neighbours would explain nothing.
MAX_SHOWN = 10


def top_confusions(cm: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` most frequent (true, predicted) confusions of a confusion matrix, most frequent first.

    Only off-diagonal cells with a count above 0; ties go to the lower (true, predicted) pair.
    """
    cm = np.asarray(cm)
    true, predicted = np.nonzero(cm * (1 - np.eye(len(cm), dtype=cm.dtype)))
    order = np.lexsort((predicted, true, -cm[true, predicted]))[:n]
    return [(int(true[i]), int(predicted[i])) for i in order]


def pick_explanations(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_random: int,
    confusions: list[tuple[int, int]],
    rng: np.random.Generator,
) -> np.ndarray:
    """Indices of misclassified images to explain.

    First one image for each ``(true, predicted)`` confusion that occurs (the lowest index, so the
    choice is stable), then ``n_random`` other misclassified images drawn with ``rng``.
    """
    wrong = np.flatnonzero(y_true != y_pred)
    chosen = []
    for true_class, predicted_class in confusions:
        hits = wrong[(y_true[wrong] == true_class) & (y_pred[wrong] == predicted_class)]
        if len(hits):
            chosen.append(int(hits[0]))
    rest = np.setdiff1d(wrong, chosen)
    extra = rng.choice(rest, size=min(n_random, len(rest)), replace=False) if len(rest) else []
    return np.array(chosen + sorted(int(i) for i in extra), dtype=np.int64)


def explanation_grid(
    query_images: np.ndarray,
    query_ids: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    neighbour_images: np.ndarray,
    neighbour_ids: np.ndarray,
    neighbour_labels: np.ndarray,
    neighbour_distances: np.ndarray,
    classes: list[str],
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Rows of ``[query, neighbour_1, ..., neighbour_k]`` with titles and red marks.

    Parameters
    ----------
    query_images : ndarray of shape (n, H, W)
    query_ids, y_true, y_pred : ndarray of shape (n,)
        ``y_true`` may be -1 for an image with no known label (a user's file).
    neighbour_images : ndarray of shape (n, k, H, W)
    neighbour_ids, neighbour_labels, neighbour_distances : ndarray of shape (n, k)

    Returns
    -------
    images : ndarray of shape (n * (k + 1), H, W)
    titles : list of str
    marks : ndarray of bool, shape (n * (k + 1),)
        A query is marked when its prediction is wrong; a neighbour when its label differs from the
        query's true label (for an unlabelled query: from its prediction).
    """
    n, k = neighbour_labels.shape
    images = np.concatenate([query_images[:, None], neighbour_images], axis=1).reshape(n * (k + 1), *query_images.shape[1:])
    names = np.asarray(classes)
    titles, marks = [], []
    for row in range(n):
        known = y_true[row] >= 0
        titles.append(f"#{query_ids[row]} {names[y_true[row]] if known else '?'}\n-> {names[y_pred[row]]}")
        marks.append(bool(known and y_true[row] != y_pred[row]))
        for j in range(k):
            titles.append(f"train #{neighbour_ids[row, j]}\n{names[neighbour_labels[row, j]]} d={neighbour_distances[row, j]:.4g}")
            reference = y_true[row] if known else y_pred[row]
            marks.append(bool(neighbour_labels[row, j] != reference))
    return images, titles, np.array(marks)
