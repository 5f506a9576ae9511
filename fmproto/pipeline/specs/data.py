"""``data``: where the images come from and what they are: read by fetch and ingest."""

from fmproto.pipeline.params import read_params, integer, one_of, text, list_of, optional, CLASS_NAME

SPEC = {
    "dir": text(),
    "verify": one_of("fashion-mnist", "none"),
    "classes": list_of(CLASS_NAME, min_len=2, unique=True),
    "image_shape": optional(list_of(integer(low=1, high=4096), min_len=2, max_len=2)),
}


def read(path) -> dict:
    return read_params("data", SPEC, path)
