"""The final evaluation: every method fitted and scored on the test set."""

import time
from collections.abc import Callable

import numpy as np

from fmproto.evaluation import estimators, fitset, scores


def score_methods(fit_sets: dict[str, tuple], X_test: np.ndarray, y_test: np.ndarray, classes: list[str],
                  settings: dict[str, dict], skip=(), clock: Callable[[], float] = time.perf_counter,
                  on_method: Callable[[int, int], None] | None = None, shifted_test: np.ndarray | None = None):
    """Fit each method on ``fit_sets[method][:2]`` and predict ``X_test`` (with its one-pixel shifts
    ``shifted_test``, for a method that uses them): ``{method: {"accuracy", "macro_f1"}}``
    (None for a method in ``skip``), ``{method: predictions (n_test,)}``, ``{method: {"fit": seconds, "predict":
    seconds}}`` and ``{method: fitted estimator}``. ``on_method(done, total)``: called after each method (skipped
    or scored), with the methods done and all."""
    summary, predictions, seconds, models = {}, {}, {}, {}
    for done, method in enumerate(estimators.METHODS, 1):
        if method in skip:
            summary[method] = None
        else:
            X_fit, y_fit = fit_sets[method][:2]
            start = clock()
            models[method] = estimators.make(method, settings).fit(X_fit, y_fit, len(classes))
            fitted = clock()
            predictions[method] = models[method].predict(X_test, shifted_test)
            seconds[method] = {"fit": fitted - start, "predict": clock() - fitted}
            report = scores.classification_report(y_test, predictions[method], classes)
            summary[method] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
        if on_method is not None:
            on_method(done, len(estimators.METHODS))
    return summary, predictions, seconds, models


def fit_sets(feats: dict, labels: np.ndarray, fit_idx: np.ndarray) -> dict[str, tuple]:
    """``fitset.fit_data`` of every method, built once for the neighbour methods and once for the others."""
    plain, augmented = (fitset.fit_data(feats, labels, fit_idx, m) for m in ("centroids", "knn"))
    return {m: augmented if m in fitset.AUGMENTED_METHODS else plain for m in estimators.METHODS}


def timing_record(seconds: dict[str, dict[str, float]], n_queries: int) -> dict[str, dict[str, float]]:
    """``score_methods``' seconds as evaluate-test's timings: fit and predict seconds together and the fit's
    alone, and the queries a second of each method's predict on ``n_queries`` test images."""
    return {"seconds_by_method": {m: round(s["fit"] + s["predict"], 3) for m, s in seconds.items()},
            "fit_seconds_by_method": {m: round(s["fit"], 3) for m, s in seconds.items()},
            "queries_per_second_by_method": {m: round(n_queries / max(s["predict"], 1e-9), 1) for m, s in seconds.items()}}


def prototype_arrays(models: dict) -> dict[str, np.ndarray]:
    """The fitted prototype models among ``models`` as arrays: ``<method>_prototypes``, ``<method>_labels`` and,
    for gmlvq, ``gmlvq_omega`` (what ``fmproto.pipeline.inputs.load_prototypes`` reads back)."""
    arrays = {}
    for method in estimators.PROTOTYPE_METHODS:
        if method in models:
            model = models[method]
            arrays[f"{method}_prototypes"], arrays[f"{method}_labels"] = model.prototypes_, model.prototype_labels_
            if hasattr(model, "omega_"):
                arrays[f"{method}_omega"] = model.omega_
    return arrays
