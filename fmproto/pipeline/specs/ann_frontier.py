"""``ann_frontier``: the ANN recall/speed benchmark's grid, read by ann-frontier only."""

from fmproto.pipeline.params import read_params, integer, number, list_of
from fmproto.pipeline.specs import ann as ann_spec

SHARED = ("metric", "seed", "recall_k", "hnsw_ef_construction")  # from ann: the frontier measures the index's own k

SPEC = {
    "n_trees": list_of(integer(low=1, high=1000), min_len=0, max_len=16, unique=True),
    "search_k": list_of(integer(low=1, high=100_000_000), max_len=64, unique=True),
    "hnsw_m": list_of(integer(low=2, high=256), min_len=0, max_len=16, unique=True),
    "hnsw_ef": list_of(integer(low=1, high=100_000), max_len=64, unique=True),
    "recalls": list_of(number(low=0, high=1, open_low=True), max_len=10, unique=True),
    "queries": integer(low=1, high=1_000_000),
}


def read(path) -> dict:
    """The checked ``ann_frontier`` section plus ``ann``'s ``SHARED`` keys."""
    shared = read_params("ann", {key: ann_spec.SPEC[key] for key in SHARED}, path, partial=True)
    return {**shared, **read_params("ann_frontier", SPEC, path)}
