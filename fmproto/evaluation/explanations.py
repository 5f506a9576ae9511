"""Explaining predictions: which images to explain, the image-beside-its-neighbours layout, and the figure of
the explain-test stage."""

import numpy as np

from fmproto.evaluation import estimators, fitset, plots, scores
from fmproto.prototypes.gmlvq import project
from fmproto.search.knn import kneighbors

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


def explanations_figure(method: str, settings: dict[str, dict], train: dict, test: dict, feats: dict, split: dict,
                        y_pred: np.ndarray, fit_set: tuple, *, k: int, metric: str, n_random: int,
                        confusions: list[tuple[int, int]] | str, seed: int, n_auto: int = 2):
    """Misclassified test images, each beside its ``min(k, MAX_SHOWN)`` exact nearest rows of ``fit_set``
    (``fitset.fit_data``'s ``(X_fit, y_fit, rows)``), one for each of ``confusions`` first. ``"auto"``:
    ``method``'s ``n_auto`` most frequent on validation, fitted on the training split, never the test set.
    """
    labels, y_test, classes = train["labels"], test["labels"], train["classes"].tolist()
    if confusions == "auto":
        model = estimators.make(method, settings).fit(*fitset.fit_data(feats, labels, split["train"], method)[:2],
                                                      len(classes))
        y_valid_pred = model.predict(feats["train"][split["valid"]].astype(np.float32),
                                     fitset.shifted_queries(feats, split["valid"]))
        confusions = top_confusions(scores.confusion_matrix(labels[split["valid"]], y_valid_pred, len(classes)), n_auto)
    X_fit, y_fit, rows = fit_set
    picked = pick_explanations(y_test, y_pred, n_random, confusions, np.random.default_rng(seed))
    shown = min(k, MAX_SHOWN)
    distances, near = kneighbors(feats["test"][picked].astype(np.float32), X_fit, shown, metric=metric)
    images, titles, marks = explanation_grid(test["images"][picked], picked, y_test[picked], y_pred[picked],
                                             fitset.fit_images(train["images"], feats, rows[near]),
                                             rows[near] % len(labels), y_fit[near], distances, classes)
    named = ", ".join(f"{classes[t]} as {classes[f]}" for t, f in confusions) or "none"
    return plots.image_grid(images, titles, n_cols=shown + 1, highlight=marks,
                            suptitle=f"test images ({method} prediction) beside their {shown} nearest training "
                                     f"images; confusions explained first: {named}")


def prototype_figures(prototypes: np.ndarray, prototype_labels: np.ndarray, train: dict, feats: dict, fit_set: tuple,
                      *, n_shown: int = 5, method: str = "kmeans") -> dict[str, object]:
    """A figure for each class with prototypes, named ``<class index>-<class name>``: a row per prototype of its
    ``n_shown`` exact nearest rows of ``fit_set`` (``fitset.fit_data``'s, its rows in the space the prototypes
    are in: a model's ``transform``), by euclidean distance, with the distances. A prototype in feature space
    is no picture: these are the training images it stands for."""
    X_fit, y_fit, rows = fit_set
    shown = min(n_shown, len(X_fit))
    distances, near = kneighbors(np.asarray(prototypes, dtype=np.float32), X_fit, shown, metric="euclidean")
    images = fitset.fit_images(train["images"], feats, rows[near])  # (n_prototypes, shown, H, W)
    names, n_train = train["classes"].tolist(), len(train["labels"])
    figures = {}
    for c in np.unique(prototype_labels):
        mine = np.flatnonzero(prototype_labels == c)
        titles = [f"train #{rows[near[p, j]] % n_train}\n{names[y_fit[near[p, j]]]} d={distances[p, j]:.4g}"
                  for p in mine for j in range(shown)]
        figures[f"{c}-{names[c].replace('/', '-')}"] = plots.image_montage(
            images[mine].reshape(len(mine) * shown, *images.shape[2:]), titles, n_cols=shown,
            row_labels=[f"{names[c]}\n{method}\nprototype {i + 1}" for i in range(len(mine))])
    return figures


def saved_prototype_figures(saved: dict, train: dict, feats: dict, labels: np.ndarray,
                            fit_idx: np.ndarray) -> dict[str, object]:
    """``prototype_figures`` of each prototype method in ``saved`` (``final.prototype_arrays``' arrays), named
    ``<method>/<class index>-<class name>``, each method's fit set (``fit_idx``) measured in its own space."""
    figures = {}
    for method in estimators.PROTOTYPE_METHODS:
        if f"{method}_prototypes" not in saved:
            continue
        omega = saved.get(f"{method}_omega")
        space = (lambda X: np.asarray(X, np.float32)) if omega is None else (lambda X: project(X, omega))
        X_fit, y_fit, rows = fitset.fit_data(feats, labels, fit_idx, method)
        for name, figure in prototype_figures(space(saved[f"{method}_prototypes"]), saved[f"{method}_labels"], train,
                                              feats, (space(X_fit), y_fit, rows), method=method).items():
            figures[f"{method}/{name}"] = figure
    return figures


def deciding_prototypes(prototypes: np.ndarray, prototype_labels: np.ndarray, query: np.ndarray,
                        n_classes: int = 2, shifted: np.ndarray | None = None) -> list[tuple[int, int, float, float]]:
    """What a nearest-prototype model weighed for ``query (n_features,)``: for each of the ``n_classes`` nearest
    classes, the predicted class first, then the runner-up, ``(class, prototype index, distance, score)``: the
    class's prototype nearest to the query, its euclidean distance, and the class's score, the mean over the
    query and its ``shifted (4, n_features)`` views (a model with ``query_shifts``) of the distance to the class's
    nearest prototype (without shifts, the distance itself); float64, the lowest index on ties, as ``predict``."""
    views = np.asarray(query, np.float64)[None] if shifted is None else np.vstack([query, shifted]).astype(np.float64)
    d = np.sqrt(((np.asarray(prototypes, np.float64)[None] - views[:, None]) ** 2).sum(axis=2))  # (views, prototypes)
    classes = np.unique(prototype_labels)
    nearest = [np.flatnonzero(prototype_labels == c) for c in classes]
    scores = np.mean([d[:, members].min(axis=1) for members in nearest], axis=1)
    deciding = []
    for j in np.lexsort((classes, scores))[:n_classes]:
        i = int(nearest[j][np.argmin(d[0, nearest[j]])])  # argmin: the lowest index on ties
        deciding.append((int(classes[j]), i, float(d[0, i]), float(scores[j])))
    return deciding
