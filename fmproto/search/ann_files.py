"""Annoy and hnswlib indexes as files (apart from ``pipeline.io``, so a change here never reruns fetch)."""

import os

from fmproto.pipeline.checks import data_error as _error, require_file as _require_file
from fmproto.pipeline.io import PathLike, atomic_path

ANNOY_METRICS = ("angular", "euclidean", "manhattan", "hamming", "dot")


def save_index(index, path: PathLike) -> None:
    """Save a built ``annoy.AnnoyIndex`` or ``hnswlib.Index`` atomically (the rename keeps Annoy's mapping valid)."""
    with atomic_path(path) as tmp:
        if hasattr(index, "save_index"):  # hnswlib
            index.save_index(os.fspath(tmp))
        elif not index.save(os.fspath(tmp)):
            raise OSError(f"{os.fspath(path)}: annoy could not save the index")


def load_annoy_index(path: PathLike, n_features: int, metric: str):
    """A saved Annoy index, memory-mapped; ``DataError`` when annoy cannot load it with these arguments."""
    from annoy import AnnoyIndex  # only the ANN stages need it

    if metric not in ANNOY_METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, ANNOY_METRICS))}; got {metric!r}")
    path = _require_file(path)
    index = AnnoyIndex(int(n_features), metric)
    try:
        index.load(os.fspath(path))
    except OSError as err:
        raise _error(path, f"annoy cannot load it with n_features={n_features}, "
                     f"metric={metric!r} ({err})") from None
    return index
