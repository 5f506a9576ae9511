"""Explaining predictions: which images to explain, and the image-beside-its-neighbours layout."""

import numpy as np

MAX_SHOWN = 10  # neighbours drawn beside an image: a picture of k=1000 would explain nothing


def top_confusions(cm: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` most frequent off-diagonal (true, predicted) cells above 0; ties to the lower pair."""
    cm = np.asarray(cm)
    true, predicted = np.nonzero(cm * (1 - np.eye(len(cm), dtype=cm.dtype)))
    order = np.lexsort((predicted, true, -cm[true, predicted]))[:n]
    return [(int(true[i]), int(predicted[i])) for i in order]


def pick_explanations(y_true: np.ndarray, y_pred: np.ndarray, n_random: int, confusions: list[tuple[int, int]],
                      rng: np.random.Generator) -> np.ndarray:
    """Misclassified images to explain: the lowest index of each ``(true, predicted)`` confusion that
    occurs, then ``n_random`` others drawn with ``rng``."""
    wrong = np.flatnonzero(y_true != y_pred)
    chosen = []
    for true_class, predicted_class in confusions:
        hits = wrong[(y_true[wrong] == true_class) & (y_pred[wrong] == predicted_class)]
        if len(hits):
            chosen.append(int(hits[0]))
    rest = np.setdiff1d(wrong, chosen)
    extra = rng.choice(rest, size=min(n_random, len(rest)), replace=False) if len(rest) else []
    return np.array(chosen + sorted(int(i) for i in extra), dtype=np.int64)


def explanation_grid(query_images: np.ndarray, query_ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                     neighbour_images: np.ndarray, neighbour_ids: np.ndarray, neighbour_labels: np.ndarray,
                     neighbour_distances: np.ndarray, classes: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Rows of ``[query, neighbour_1, ..., neighbour_k]``: images ``(n * (k + 1), H, W)``, titles and red marks.

    Queries ``(n, H, W)`` with ``(n,)`` ids and labels (``y_true`` -1: unknown); neighbours ``(n, k, H, W)``
    with ``(n, k)`` ids, labels and distances. A query is marked when wrong; a neighbour when its label
    differs from the query's true label (unknown: from its prediction).
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
