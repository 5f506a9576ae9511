"""``centroids``: the nearest-centroid stage."""

from fmproto.pipeline.params import read_params, integer, one_of, PROTOTYPE_METRICS

SPEC = {"metric": one_of(*PROTOTYPE_METRICS), "n_show": integer(low=1, high=50)}


def read(path) -> dict:
    return read_params("centroids", SPEC, path)
