"""``ingest``: how many sample images the ingest stage draws."""

from fmproto.pipeline.params import read_params, integer, SEED

SPEC = {"n_samples": integer(low=1, high=400), "per_class": integer(low=1, high=40), "seed": SEED}


def read(path) -> dict:
    return read_params("ingest", SPEC, path)
