"""Annoy and hnswlib indexes as files: saved atomically, an Annoy index memory-mapped back.

Apart from fmproto.pipeline.io so that a change here reruns only the stages that save or load an
index, never fetch or ingest.
"""

import os

from fmproto.pipeline.checks import data_error as _error
from fmproto.pipeline.checks import require_file as _require_file
from fmproto.pipeline.io import PathLike, atomic_path

ANNOY_METRICS = ("angular", "euclidean", "manhattan", "hamming", "dot")


def save_index(index, path: PathLike) -> None:
    """Save a built ``annoy.AnnoyIndex`` or ``hnswlib.Index`` atomically.

    Annoy memory-maps the file it saved to; the rename keeps that mapping valid (same inode).
    hnswlib writes exactly the path it is given (no suffix added).
    """
    with atomic_path(path) as tmp:
        if hasattr(index, "save_index"):  # hnswlib
            index.save_index(os.fspath(tmp))
        elif not index.save(os.fspath(tmp)):
            raise OSError(f"{os.fspath(path)}: annoy could not save the index")


def load_annoy_index(path: PathLike, n_features: int, metric: str):
    """Memory-map a saved Annoy index.

    Parameters
    ----------
    path : str or PathLike
    n_features : int
        Vector length the index was built with.
    metric : {"angular", "euclidean", "manhattan", "hamming", "dot"}

    Returns
    -------
    annoy.AnnoyIndex, loaded and read-only.

    Raises
    ------
    DataError
        Missing file, or one annoy cannot load with this ``n_features`` and ``metric``.
    """
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
