"""``evaluate``: the final model: read by evaluate-valid, evaluate-test and ``fmproto explain``."""

from fmproto.pipeline.params import read_params, integer, one_of, list_of, either, SEED, CLASS_NAME, KNN_METRICS, WEIGHTS

METHODS = ("centroids", "kmeans", "gmlvq", "knn", "ann")  # fmproto.evaluation.estimators.METHODS

SPEC = {
    "method": one_of(*METHODS),
    "k": integer(low=1, high=10_000),
    "fit_on": one_of("train", "train+valid"),
    "metric": one_of(*KNN_METRICS),
    "weights": one_of(*WEIGHTS),
    "n_explain": integer(low=0, high=50),
    "explain_confusions": either(one_of("auto"), list_of(list_of(CLASS_NAME, min_len=2, max_len=2), min_len=0, max_len=50),
                                 "'auto' or a list of [true, predicted] class-name pairs"),
    "seed": SEED,
}


def read(path) -> dict:
    return read_params("evaluate", SPEC, path)
