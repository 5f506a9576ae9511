"""``ann``: the approximate-neighbour index: read by ann-index, ann-frontier and the final model."""

from fmproto.pipeline.params import read_params, integer, one_of, list_of, WEIGHTS, MEMORY_LIMIT, ParamError, check_memory

ANN_METRICS = ("euclidean", "angular", "manhattan")  # fmproto.search.ann.ANN_METRICS

SPEC = {
    "metric": one_of(*ANN_METRICS),
    "n_trees": integer(low=1, high=1000),
    "search_k": integer(low=1, high=100_000_000),
    "seed": integer(low=0, high=2**31 - 1),  # Annoy's set_seed takes a C int
    "ks": list_of(integer(low=1, high=10_000), max_len=64, unique=True),
    "weights": one_of(*WEIGHTS),
    "recall_k": integer(low=1, high=10_000),
    "backend": one_of("annoy", "hnswlib"),  # fmproto.search.ann.BACKENDS
    "hnsw_m": integer(low=2, high=256),  # sizes the graph: about n * (4 * n_features + 8 * M) bytes
    "hnsw_ef_construction": integer(low=1, high=10_000),
    "hnsw_ef": integer(low=1, high=100_000),
}


def read(path) -> dict:
    return read_params("ann", SPEC, path)


def check_sizes(path, k: int, n_train: int, n_queries: int, n_features: int, m: int, m_name: str = "ann.hnsw_m") -> None:
    """``ParamError`` when ``k`` neighbours exceed the training rows, or they or the hnswlib graph exceed memory."""
    if k > n_train:
        raise ParamError(f"{path}: ann.ks and ann.recall_k must not exceed the {n_train:,} training images")
    check_memory(f"{path}: ann.ks", k, 2 * n_queries * k * 12, "the neighbours of every validation image",
                 MEMORY_LIMIT // (24 * n_queries))
    check_memory(f"{path}: {m_name}", m, n_train * (4 * n_features + 8 * m + 64), "the hnswlib graph", hint=f"lower {m_name}")
