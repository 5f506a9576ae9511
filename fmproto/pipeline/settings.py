"""The final model's settings from params: what evaluate-valid, evaluate-test and ``fmproto explain`` share."""

from pathlib import Path

import numpy as np

from fmproto.pipeline import params as P
from fmproto.pipeline.specs import ann as ann_params, evaluate as evaluate_params, kmeans as kmeans_params
from fmproto.prototypes.kmeans import n_prototypes_per_class
from fmproto.search import ann
from fmproto.search.engine import KnnIndex

_KMEANS = ("metric", "seed", "max_iter", "tol", "lvq_epochs", "lvq_learning_rate")
_ANN = ("backend", "metric", "seed", "n_trees", "search_k", "hnsw_m", "hnsw_ef_construction", "hnsw_ef")


def method_settings(params_path: str | Path, classes: list[str], train_labels: np.ndarray | None = None,
                    engine=KnnIndex) -> tuple[dict, dict[str, dict]]:
    """The checked ``evaluate`` section, and each method's settings for ``estimators.make``; kmeans counts
    that do not fit ``train_labels`` are an error for method kmeans, else None (``kmeans_problem``). ``engine``:
    the exact kNN's index class (``cluster.exact_search``'s; not a param: it changes no result)."""
    p, km, an = evaluate_params.read(params_path), kmeans_params.read(params_path), ann_params.read(params_path)
    counts, problem = _prototype_counts(params_path, km["n_prototypes"], classes, train_labels)
    if problem is not None and p["method"] == "kmeans":
        raise P.ParamError(problem)
    if p["method"] == "ann" and an["backend"] == "hnswlib" and (why := ann.hnswlib_problem(an["metric"])):
        raise P.ParamError(f"{params_path}: ann.backend asks for hnswlib, but {why}")
    neighbours = {"k": p["k"], "weights": p["weights"]}
    return p, {
        "centroids": {"metric": km["metric"]},
        "kmeans": {"n_prototypes": counts, **{key: km[key] for key in _KMEANS}},
        "knn": {**neighbours, "metric": p["metric"], "engine": engine},
        "ann": {**neighbours, **{key: an[key] for key in _ANN}},
    }


def kmeans_problem(params_path: str | Path, classes: list[str], train_labels: np.ndarray) -> str | None:
    """Why kmeans cannot be fitted with ``kmeans.n_prototypes`` on ``train_labels`` (one line), or None."""
    return _prototype_counts(params_path, kmeans_params.read(params_path)["n_prototypes"], classes, train_labels)[1]


def _prototype_counts(params_path, spec, classes, train_labels) -> tuple[np.ndarray | None, str | None]:
    try:
        counts = n_prototypes_per_class(spec, classes)
    except ValueError as err:  # an unknown class name: a typo, whatever the data
        raise P.ParamError(f"{params_path}: kmeans.n_prototypes: {err}") from None
    if train_labels is None:
        return counts, None
    try:
        return n_prototypes_per_class(spec, classes, sizes=np.bincount(train_labels, minlength=len(classes))), None
    except ValueError as err:
        return None, f"{params_path}: kmeans.n_prototypes: {err}"
