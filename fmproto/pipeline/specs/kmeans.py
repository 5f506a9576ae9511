"""``kmeans``: k-means prototypes per class and GLVQ; read by kmeans and by the final model."""

from fmproto.pipeline.params import read_params, integer, number, one_of, mapping, either, SEED, CLASS_NAME, PROTOTYPE_METRICS

SPEC = {
    "n_prototypes": either(integer(low=1, high=10_000), mapping(integer(low=1, high=10_000), key=CLASS_NAME),
                           "a count (1..10000), or a mapping from class name to count"),
    "max_iter": integer(low=1, high=10_000),
    "tol": number(low=0, high=1),  # a fraction of the inertia
    "seed": SEED,
    "metric": one_of(*PROTOTYPE_METRICS),
    "lvq_epochs": integer(low=0, high=1000),
    "lvq_learning_rate": number(low=0, high=10, open_low=True),
    "n_show": integer(low=1, high=50),
}


def read(path) -> dict:
    return read_params("kmeans", SPEC, path)
