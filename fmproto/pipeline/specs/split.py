"""``split``: the seeded validation split."""

from fmproto.pipeline.params import read_params, number, boolean, one_of, SEED

SPEC = {
    "valid_pct": number(low=0, high=1, open_low=True, open_high=True),
    "seed": SEED,
    "stratify": boolean(),
    "drop": one_of("none", "duplicates", "leaks", "both"),
}


def read(path) -> dict:
    return read_params("split", SPEC, path)
