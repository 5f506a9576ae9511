"""``gmlvq``: k-means prototypes refined with a learned metric; read by the final model (evaluate.method gmlvq)."""

from fmproto.pipeline.params import read_params, integer, number, boolean, SEED

SPEC = {
    "n_prototypes": integer(low=1, high=1000),  # a class
    "rank": integer(low=1, high=4096),
    "epochs": integer(low=0, high=1000),
    "learning_rate": number(low=0, high=1, open_low=True),
    "steepness": number(low=0, high=1000, open_low=True),
    "seed": SEED,
    "query_shifts": boolean(),
}


def read(path) -> dict:
    return read_params("gmlvq", SPEC, path)
