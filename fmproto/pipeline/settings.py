"""The final model's settings from params: what evaluate-valid, evaluate-test and ``fmproto explain`` share."""

from pathlib import Path

import numpy as np

from fmproto.evaluation import methods
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import ann as ann_params, evaluate as evaluate_params, kmeans as kmeans_params
from fmproto.prototypes.kmeans import n_prototypes_per_class


def method_settings(params_path: str | Path, classes: list[str],
                    train_labels: np.ndarray | None = None) -> tuple[dict, methods.Settings]:
    """The checked ``evaluate`` section, and the ``Settings`` every method reads (kmeans and ann keys too).

    ``kmeans.n_prototypes`` must name only classes of ``classes``, whatever the method. Given
    ``train_labels`` (the training split's labels, what the kmeans stage fits on), its counts are
    checked against each class's images too; counts that do not fit are an error only when
    ``evaluate.method`` is kmeans: for another method ``settings.n_prototypes`` is then None and
    ``kmeans_problem`` says why.
    """
    p = evaluate_params.read(params_path)
    km = kmeans_params.read(params_path)
    an = ann_params.read(params_path)
    counts, problem = _prototype_counts(params_path, km["n_prototypes"], classes, train_labels)
    if problem is not None and p["method"] == "kmeans":
        raise P.ParamError(problem)
    settings = methods.Settings(
        k=p["k"], metric=p["metric"], weights=p["weights"], prototype_metric=km["metric"],
        n_prototypes=counts, kmeans_seed=km["seed"], kmeans_max_iter=km["max_iter"], kmeans_tol=km["tol"],
        lvq_epochs=km["lvq_epochs"], lvq_learning_rate=km["lvq_learning_rate"], ann_metric=an["metric"],
        ann_n_trees=an["n_trees"], ann_search_k=an["search_k"], ann_seed=an["seed"])
    return p, settings


def kmeans_problem(params_path: str | Path, classes: list[str], train_labels: np.ndarray) -> str | None:
    """Why kmeans cannot be fitted with ``kmeans.n_prototypes`` on the training split (one line), or None.

    Raises ``ParamError`` for a spec that names an unknown class, as ``method_settings`` does.
    """
    km = kmeans_params.read(params_path)
    return _prototype_counts(params_path, km["n_prototypes"], classes, train_labels)[1]


def _prototype_counts(params_path, spec, classes, train_labels) -> tuple[np.ndarray | None, str | None]:
    """The counts, or None and why they do not fit ``train_labels``; ``ParamError`` for a malformed spec."""
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
