"""The final evaluation: every method fitted and scored on the test set, and pictures that explain the chosen one."""

import time
from collections.abc import Callable

import numpy as np

from fmproto.evaluation import estimators, fitset, plots, scores
from fmproto.evaluation.explanations import MAX_SHOWN, explanation_grid, pick_explanations, top_confusions
from fmproto.search.knn import kneighbors


def score_methods(fit_sets: dict[str, tuple], X_test: np.ndarray, y_test: np.ndarray, classes: list[str],
                  settings: dict[str, dict], skip=(), clock: Callable[[], float] = time.perf_counter):
    """Fit each method on ``fit_sets[method][:2]`` and predict ``X_test``: ``{method: {"accuracy", "macro_f1"}}``
    (None for a method in ``skip``), ``{method: predictions (n_test,)}`` and ``{method: seconds}``."""
    summary, predictions, seconds = {}, {}, {}
    for method in estimators.METHODS:
        if method in skip:
            summary[method] = None
            continue
        X_fit, y_fit = fit_sets[method][:2]
        start = clock()
        predictions[method] = estimators.make(method, settings).fit(X_fit, y_fit, len(classes)).predict(X_test)
        seconds[method] = clock() - start
        report = scores.classification_report(y_test, predictions[method], classes)
        summary[method] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
    return summary, predictions, seconds


def fit_sets(feats: dict, labels: np.ndarray, fit_idx: np.ndarray) -> dict[str, tuple]:
    """``fitset.fit_data`` of every method, built once for the neighbour methods and once for the others."""
    plain, augmented = (fitset.fit_data(feats, labels, fit_idx, m) for m in ("centroids", "knn"))
    return {m: augmented if m in fitset.AUGMENTED_METHODS else plain for m in estimators.METHODS}


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
        y_valid_pred = model.predict(feats["train"][split["valid"]].astype(np.float32))
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
