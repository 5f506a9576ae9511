"""The final model's settings from params: what evaluate-valid, evaluate-test and ``fmproto explain`` share."""

from pathlib import Path

from fmproto import methods
from fmproto.cli import params as P
from fmproto.kmeans import n_prototypes_per_class


def method_settings(params_path: str | Path, classes: list[str]) -> tuple[dict, methods.Settings]:
    """The checked ``evaluate`` section, and the ``Settings`` every method reads (kmeans and ann keys too)."""
    p = P.read_params("evaluate", P.EVALUATE, params_path)
    km = P.read_params("kmeans", P.KMEANS, params_path)
    an = P.read_params("ann", P.ANN, params_path)
    try:
        counts = n_prototypes_per_class(km["n_prototypes"], classes)
    except ValueError as err:
        raise P.ParamError(f"{params_path}: kmeans.n_prototypes: {err}") from None
    settings = methods.Settings(
        k=p["k"], metric=p["metric"], weights=p["weights"], prototype_metric=km["metric"],
        n_prototypes=counts, kmeans_seed=km["seed"], kmeans_max_iter=km["max_iter"], kmeans_tol=km["tol"],
        lvq_epochs=km["lvq_epochs"], lvq_learning_rate=km["lvq_learning_rate"], ann_metric=an["metric"],
        ann_n_trees=an["n_trees"], ann_search_k=an["search_k"], ann_seed=an["seed"])
    return p, settings
