"""The final evaluation: every method fitted and scored on the test set."""

import time
from collections.abc import Callable

import numpy as np

from fmproto.evaluation import estimators, fitset, scores


def score_methods(fit_sets: dict[str, tuple], X_test: np.ndarray, y_test: np.ndarray, classes: list[str],
                  settings: dict[str, dict], skip=(), clock: Callable[[], float] = time.perf_counter,
                  on_method: Callable[[int, int], None] | None = None):
    """Fit each method on ``fit_sets[method][:2]`` and predict ``X_test``: ``{method: {"accuracy", "macro_f1"}}``
    (None for a method in ``skip``), ``{method: predictions (n_test,)}`` and ``{method: seconds}``.
    ``on_method(done, total)``: called after each method (skipped or scored), with the methods done and all."""
    summary, predictions, seconds = {}, {}, {}
    for done, method in enumerate(estimators.METHODS, 1):
        if method in skip:
            summary[method] = None
        else:
            X_fit, y_fit = fit_sets[method][:2]
            start = clock()
            predictions[method] = estimators.make(method, settings).fit(X_fit, y_fit, len(classes)).predict(X_test)
            seconds[method] = clock() - start
            report = scores.classification_report(y_test, predictions[method], classes)
            summary[method] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
        if on_method is not None:
            on_method(done, len(estimators.METHODS))
    return summary, predictions, seconds


def fit_sets(feats: dict, labels: np.ndarray, fit_idx: np.ndarray) -> dict[str, tuple]:
    """``fitset.fit_data`` of every method, built once for the neighbour methods and once for the others."""
    plain, augmented = (fitset.fit_data(feats, labels, fit_idx, m) for m in ("centroids", "knn"))
    return {m: augmented if m in fitset.AUGMENTED_METHODS else plain for m in estimators.METHODS}
