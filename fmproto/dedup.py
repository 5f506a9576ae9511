"""Exact and near duplicate images, within one set and between two (train/test leakage).

Exact duplicates are found by content: each image's bytes become one opaque numpy ``void`` key and
``np.unique`` groups equal keys, which is a collision-free content hash. Near duplicates are pairs
whose root-mean-square pixel difference is below a threshold, found by exact search: squared
distances come from tiled float32 matrix products, candidates within a small rounding margin are
then measured again exactly in integers.

Pairs are index pairs ``(i, j)``: within one set ``i < j``; between sets ``i`` indexes the first
set and ``j`` the second. Every pair of images in an exact-duplicate group is reported once.
"""

from dataclasses import dataclass

import numpy as np

from fmproto.distances import as_rows, squared_norms

# Candidates are kept up to this relative slack over the threshold before the exact integer check,
# so float32 rounding in |a|^2 - 2ab + |b|^2 can never drop a true pair.
_ROUNDING_SLACK = 1e-3


@dataclass
class Pairs:
    """Index pairs with their RMS pixel distance (0 for exact duplicates)."""

    i: np.ndarray  # (n_pairs,) int64
    j: np.ndarray  # (n_pairs,) int64
    distance: np.ndarray  # (n_pairs,) float64

    def __len__(self) -> int:
        return len(self.i)


def content_keys(images: np.ndarray) -> np.ndarray:
    """One hashable key per image: its bytes as a numpy void scalar, shape ``(n,)``."""
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()


def exact_duplicates(images: np.ndarray, others: np.ndarray | None = None) -> Pairs:
    """All pairs of byte-identical images, within ``images`` or between ``images`` and ``others``.

    Parameters
    ----------
    images : ndarray of shape (n, ...)
    others : ndarray of shape (m, ...), optional
        When given, only cross pairs ``(i in images, j in others)`` are returned.

    Returns
    -------
    Pairs sorted by ``(i, j)``, distances all 0.
    """
    n = len(images)
    keys = content_keys(images) if others is None else np.concatenate(
        [content_keys(images), content_keys(others)]
    )
    _, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
    in_group = np.flatnonzero(counts[group] > 1)  # images that have at least one twin
    # Sorting members by group makes every group a contiguous run; pairs are formed inside runs.
    members = in_group[np.argsort(group[in_group], kind="stable")]
    member_group = group[members]
    first, second = _pairs_within_runs(member_group)
    i, j = members[first], members[second]
    if others is not None:
        cross = (i < n) & (j >= n)
        i, j = i[cross], j[cross] - n
    return _sorted_pairs(i, j, np.zeros(len(i)))


def _pairs_within_runs(run_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(a, b)``, ``a < b``, of every pair inside each run of equal sorted ids."""
    if len(run_ids) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1]])
    lengths = np.diff(np.r_[starts, len(run_ids)])
    # Groups are tiny (2 or 3 images), so the largest group's square bounds the work.
    biggest = lengths.max()
    a_off, b_off = np.triu_indices(biggest, k=1)
    valid = b_off[None, :] < lengths[:, None]  # (n_runs, n_offset_pairs)
    a = (starts[:, None] + a_off[None, :])[valid]
    b = (starts[:, None] + b_off[None, :])[valid]
    return a, b


def near_duplicates(
    images: np.ndarray,
    threshold: float,
    others: np.ndarray | None = None,
    *,
    chunk: int = 4096,
) -> Pairs:
    """Pairs of images closer than ``threshold`` in RMS pixel difference, byte-identical pairs excluded.

    The RMS pixel difference of images ``a`` and ``b`` with ``p`` pixels is
    ``sqrt(sum((a - b)**2) / p)``, in the pixels' own units (grey levels for uint8 images).

    Parameters
    ----------
    images : ndarray of shape (n, ...)
    threshold : float
        Pairs with ``0 < distance < threshold`` are returned.
    others : ndarray of shape (m, ...), optional
        When given, only cross pairs ``(i in images, j in others)``.
    chunk : int
        Tile side of the distance blocks; memory is about ``chunk**2 * 4`` bytes a tile.

    Returns
    -------
    Pairs sorted by ``(i, j)`` with their exact distances.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0; got {threshold!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk!r}")
    A = as_rows(images)
    B = A if others is None else as_rows(others)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"images have {A.shape[1]} pixels but others have {B.shape[1]}")
    n_pixels = A.shape[1]
    limit_sq = threshold**2 * n_pixels * (1 + _ROUNDING_SLACK) + _ROUNDING_SLACK
    a2, b2 = squared_norms(A), squared_norms(B)

    found_i, found_j = [], []
    for a_start in range(0, len(A), chunk):
        # Within one set only tiles on or above the diagonal are needed (pairs i < j).
        b_first = a_start if others is None else 0
        for b_start in range(b_first, len(B), chunk):
            d2 = A[a_start : a_start + chunk] @ B[b_start : b_start + chunk].T  # (tile_a, tile_b)
            d2 *= -2.0
            d2 += a2[a_start : a_start + chunk, None]
            d2 += b2[None, b_start : b_start + chunk]
            close = d2 < limit_sq
            if others is None and a_start == b_start:
                close &= np.triu(np.ones_like(close), k=1)
            rows, cols = np.nonzero(close)
            found_i.append(rows + a_start)
            found_j.append(cols + b_start)

    i = np.concatenate(found_i).astype(np.int64) if found_i else np.empty(0, np.int64)
    j = np.concatenate(found_j).astype(np.int64) if found_j else np.empty(0, np.int64)
    distance = exact_rms_distances(images, others if others is not None else images, i, j)
    keep = (distance > 0) & (distance < threshold)
    return _sorted_pairs(i[keep], j[keep], distance[keep])


def exact_rms_distances(images: np.ndarray, others: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """RMS pixel differences of the pairs ``(images[i], others[j])``, in float64 (exact for 8-bit pixels)."""
    a = np.asarray(images).reshape(len(images), -1)
    b = np.asarray(others).reshape(len(others), -1)
    out = np.empty(len(i), dtype=np.float64)
    for start in range(0, len(i), 4096):  # bounded memory for (pairs, pixels) differences
        diff = a[i[start : start + 4096]].astype(np.float64) - b[j[start : start + 4096]]
        out[start : start + 4096] = np.sqrt(np.einsum("ij,ij->i", diff, diff) / a.shape[1])
    return out


def _sorted_pairs(i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> Pairs:
    order = np.lexsort((j, i))
    return Pairs(i=i[order].astype(np.int64), j=j[order].astype(np.int64), distance=distance[order])
