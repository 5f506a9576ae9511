"""``dedup``: near-duplicate search of the dedup-check stage."""

from fmproto.pipeline.params import read_params, integer, number

SPEC = {
    "near_threshold": number(low=0, high=255),  # RMS difference of 8-bit pixels is at most 255
    "chunk": integer(low=64, high=65536),
    "max_pairs": integer(low=1, high=1_000_000),
    "n_show": integer(low=1, high=60),
}


def read(path) -> dict:
    return read_params("dedup", SPEC, path)
