"""The final model's settings from params: what evaluate-valid, evaluate-test and ``fmproto explain`` share."""

from pathlib import Path

import numpy as np

from fmproto.pipeline import params as P
from fmproto.pipeline.specs import ann as ann_params, evaluate as evaluate_params, gmlvq as gmlvq_params, kmeans as kmeans_params
from fmproto.prototypes.kmeans import n_prototypes_per_class
from fmproto.search import ann
from fmproto.search.engine import KnnIndex

_KMEANS = ("metric", "seed", "max_iter", "tol", "lvq_epochs", "lvq_learning_rate")
_GMLVQ = ("rank", "epochs", "learning_rate", "steepness", "seed", "query_shifts")
_ANN = ("backend", "metric", "seed", "n_trees", "search_k", "hnsw_m", "hnsw_ef_construction", "hnsw_ef")


def method_settings(params_path: str | Path, classes: list[str], train_labels: np.ndarray | None = None,
                    engine=KnnIndex) -> tuple[dict, dict[str, dict]]:
    """The checked ``evaluate`` section, and each method's settings for ``estimators.make``; prototype counts
    that do not fit ``train_labels`` are an error for that method (kmeans, gmlvq), else None (``prototype_problems``).
    ``engine``: the exact kNN's index class (``cluster.exact_search``'s; not a param: it changes no result)."""
    p, km, an = evaluate_params.read(params_path), kmeans_params.read(params_path), ann_params.read(params_path)
    gm = gmlvq_params.read(params_path)
    counts, problem = _prototype_counts(params_path, "kmeans", km["n_prototypes"], classes, train_labels)
    gmlvq_counts, gmlvq_problem = _prototype_counts(params_path, "gmlvq", gm["n_prototypes"], classes, train_labels)
    if (why := {"kmeans": problem, "gmlvq": gmlvq_problem}.get(p["method"])) is not None:
        raise P.ParamError(why)
    if p["method"] == "ann" and an["backend"] == "hnswlib" and (why := ann.hnswlib_problem(an["metric"])):
        raise P.ParamError(f"{params_path}: ann.backend asks for hnswlib, but {why}")
    neighbours = {"k": p["k"], "weights": p["weights"]}
    return p, {
        "centroids": {"metric": km["metric"]},
        "kmeans": {"n_prototypes": counts, **{key: km[key] for key in _KMEANS}},
        "gmlvq": {"n_prototypes": gmlvq_counts, "max_iter": km["max_iter"], "tol": km["tol"],
                  **{key: gm[key] for key in _GMLVQ}},
        "knn": {**neighbours, "metric": p["metric"], "engine": engine},
        "ann": {**neighbours, **{key: an[key] for key in _ANN}},
    }


def prototype_problems(params_path: str | Path, classes: list[str], train_labels: np.ndarray) -> dict[str, str]:
    """Why a prototype method (kmeans, gmlvq) cannot be fitted with its ``n_prototypes`` on ``train_labels``
    (one line each), for those that cannot."""
    counts = {"kmeans": kmeans_params.read(params_path)["n_prototypes"],
              "gmlvq": gmlvq_params.read(params_path)["n_prototypes"]}
    problems = {method: _prototype_counts(params_path, method, spec, classes, train_labels)[1]
                for method, spec in counts.items()}
    return {method: why for method, why in problems.items() if why is not None}


def _prototype_counts(params_path, section, spec, classes, train_labels) -> tuple[np.ndarray | None, str | None]:
    try:
        counts = n_prototypes_per_class(spec, classes)
    except ValueError as err:  # an unknown class name: a typo, whatever the data
        raise P.ParamError(f"{params_path}: {section}.n_prototypes: {err}") from None
    if train_labels is None:
        return counts, None
    try:
        return n_prototypes_per_class(spec, classes, sizes=np.bincount(train_labels, minlength=len(classes))), None
    except ValueError as err:
        return None, f"{params_path}: {section}.n_prototypes: {err}"
