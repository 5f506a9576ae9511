"""Checks of the final model's params against the data, shared by evaluate-valid, evaluate-test and explain."""

from fmproto.pipeline import params as P


def check_k(params_path, k: int, n_fit: int, n_queries: int) -> None:
    """``evaluate.k`` at most the fit rows, and its neighbour arrays within the memory limit."""
    if k > n_fit:
        raise P.ParamError(f"{params_path}: evaluate.k is {k} but the model is fitted on {n_fit:,} rows")
    P.check_memory(f"{params_path}: evaluate.k", k, n_queries * k * 12, f"the neighbours of {n_queries:,} images",
                   P.MEMORY_LIMIT // max(1, 12 * n_queries))


def check_confusions(params_path, confusions: list[list[str]] | str, classes: list[str]) -> list[tuple[int, int]] | str:
    """``evaluate.explain_confusions`` as (true, predicted) label pairs of ``classes``, or ``"auto"``."""
    if confusions == "auto":
        return "auto"
    for pair in confusions:
        if not set(pair) <= set(classes):
            raise P.ParamError(f"{params_path}: evaluate.explain_confusions needs [true, predicted] class names "
                               f"from data.classes; got {list(pair)}")
    return [(classes.index(true), classes.index(predicted)) for true, predicted in confusions]


def check_query_shifts(params_path, settings: dict[str, dict], feats: dict, features_path) -> None:
    """``gmlvq.query_shifts`` only with the one-pixel shifts the features stage makes (``features.augment_shifts``)."""
    if settings["gmlvq"]["query_shifts"] and not bool(feats["augment_flags"][0]):
        raise P.ParamError(f"{params_path}: gmlvq.query_shifts classifies each image with its one-pixel shifts, but "
                           f"{features_path} has none: set features.augment_shifts: true")
