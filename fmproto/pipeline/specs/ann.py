"""``ann``: the approximate-neighbour index: read by ann-index and by the final model."""

from fmproto.pipeline.params import read_params, integer, number, one_of, list_of, WEIGHTS

ANN_METRICS = ("euclidean", "angular", "manhattan")  # fmproto.search.ann.ANN_METRICS

SPEC = {
    "metric": one_of(*ANN_METRICS),
    "n_trees": integer(low=1, high=1000),
    "search_k": integer(low=1, high=100_000_000),
    "seed": integer(low=0, high=2**31 - 1),  # Annoy's set_seed takes a C int
    "ks": list_of(integer(low=1, high=10_000), max_len=64, unique=True),
    "weights": one_of(*WEIGHTS),
    "recall_k": integer(low=1, high=10_000),
    "search_k_sweep": list_of(integer(low=1, high=100_000_000), max_len=64, unique=True),
    "sweep_queries": integer(low=1, high=1_000_000),
    "backend": one_of("annoy", "hnswlib"),  # fmproto.search.ann.BACKENDS
    "hnsw_m": integer(low=2, high=256),  # sizes the graph: about n * (4 * n_features + 8 * M) bytes
    "hnsw_ef_construction": integer(low=1, high=10_000),
    "hnsw_ef": integer(low=1, high=100_000),
    "frontier_n_trees": list_of(integer(low=1, high=1000), min_len=0, max_len=16, unique=True),
    "frontier_hnsw_m": list_of(integer(low=2, high=256), min_len=0, max_len=16, unique=True),
    "frontier_hnsw_ef": list_of(integer(low=1, high=100_000), max_len=64, unique=True),
    "frontier_recalls": list_of(number(low=0, high=1, open_low=True), max_len=10, unique=True),
}


def read(path) -> dict:
    """The checked ``ann`` section of the params file at ``path`` (one-line ``ParamError`` otherwise)."""
    return read_params("ann", SPEC, path)
