"""``ingest``: how many sample images the ingest stage draws."""

from fmproto.pipeline.params import read_params, integer, number, SEED

SPEC = {"n_samples": integer(low=1, high=400), "per_class": integer(low=1, high=40), "seed": SEED}
DEDUP = {
    "near_threshold": number(low=0, high=255),  # RMS difference of 8-bit pixels is at most 255
    "chunk": integer(low=64, high=65536),
    "max_pairs": integer(low=1, high=1_000_000),
    "n_show": integer(low=1, high=60),
}


def read(path) -> dict:
    """The checked ``ingest`` section of the params file at ``path`` (one-line ``ParamError`` otherwise)."""
    return read_params("ingest", SPEC, path)
