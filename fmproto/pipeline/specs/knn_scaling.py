"""``knn_scaling``: kNN error against training-set size."""

from fmproto.pipeline.params import read_params, integer, one_of, list_of, either, ParamError, SEED, KNN_METRICS, WEIGHTS
from fmproto.search.scaling import training_sizes

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


def sizes_for(path, p: dict, n_full: int) -> list[int]:
    """The training sizes to measure on a split of ``n_full`` images (``auto``: the doubling ones from the
    smallest k, then the whole split); ``ParamError`` for a k or a size the split cannot hold."""
    ks = p["ks"]
    if too_large := [str(k) for k in ks if k > n_full]:
        raise ParamError(f"{path}: knn_scaling.ks: {', '.join(too_large)} exceed{'s' * (len(too_large) == 1)} "
                         f"the {n_full:,} training images of the split")
    if p["sizes"] == "auto":
        return [n for n in training_sizes(n_full) if n >= min(ks)]
    sizes = sorted(p["sizes"])
    if sizes[-1] > n_full:
        raise ParamError(f"{path}: knn_scaling.sizes has {sizes[-1]} but the training split has {n_full:,}")
    if sizes[0] < min(ks):
        raise ParamError(f"{path}: knn_scaling.sizes: {sizes[0]} is below every k of knn_scaling.ks "
                         f"(the smallest is {min(ks)}): no k can be measured on it")
    return sizes
