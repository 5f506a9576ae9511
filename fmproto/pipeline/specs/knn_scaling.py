"""``knn_scaling``: kNN error against training-set size."""

from fmproto.pipeline.params import read_params, integer, one_of, list_of, either, SEED, KNN_METRICS, WEIGHTS

SPEC = {
    "sizes": either(one_of("auto"), list_of(integer(low=1), max_len=64, unique=True), "'auto' or a list of sizes"),
    "ks": list_of(integer(low=1, high=10_000), max_len=64, unique=True),
    "repeats": integer(low=1, high=20),
    "metric": one_of(*KNN_METRICS),
    "weights": one_of(*WEIGHTS),
    "seed": SEED,
}


def read(path) -> dict:
    return read_params("knn_scaling", SPEC, path)
