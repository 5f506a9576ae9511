"""Seeded train/validation split of the training set, by indices."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    """Indices into the ingested training set; each image is in exactly one of the three."""

    train: np.ndarray  # (n_train,) int64, sorted
    valid: np.ndarray  # (n_valid,) int64, sorted
    dropped: np.ndarray  # (n_dropped,) int64, sorted


def validation_split(
    labels: np.ndarray,
    valid_pct: float,
    *,
    seed: int,
    stratify: bool = False,
    drop: np.ndarray | None = None,
) -> Split:
    """Hold out ``valid_pct`` of the kept images for validation.

    Parameters
    ----------
    labels : ndarray of shape (n,)
    valid_pct : float in (0, 1)
    seed : int
        Seeds ``numpy.random.default_rng``; the same seed and inputs give the same split.
    stratify : bool
        False draws the validation images uniformly from all kept images (the original analysis);
        True draws ``round(valid_pct * n_c)`` from each class ``c``, so class shares match.
    drop : ndarray of int, optional
        Indices removed before splitting (duplicates, leaked images); they land in ``dropped``.
    """
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct must be in (0, 1); got {valid_pct!r}")
    labels = np.asarray(labels)
    dropped = np.unique(np.asarray(drop if drop is not None else [], dtype=np.int64))
    if len(dropped) and (dropped[0] < 0 or dropped[-1] >= len(labels)):
        raise ValueError(f"drop indices must lie in 0..{len(labels) - 1}")
    kept = np.setdiff1d(np.arange(len(labels)), dropped)
    rng = np.random.default_rng(seed)
    shuffled = kept[rng.permutation(len(kept))]
    if stratify:
        # Stable sort by class keeps the random order inside each class; take each class's head.
        by_class = shuffled[np.argsort(labels[shuffled], kind="stable")]
        classes, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
        n_valid = np.round(valid_pct * counts).astype(np.int64)
        rank = np.arange(len(by_class)) - np.repeat(starts, counts)
        is_valid = rank < np.repeat(n_valid, counts)
        valid = by_class[is_valid]
    else:
        valid = shuffled[: int(round(valid_pct * len(kept)))]
    train = np.setdiff1d(kept, valid)
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"valid_pct {valid_pct} leaves an empty split of {len(kept)} images")
    return Split(train=train, valid=np.sort(valid), dropped=dropped)


def later_of_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """For within-set duplicate pairs, the higher index of each: drop these to keep one of each group."""
    return np.unique(np.maximum(i, j)).astype(np.int64)


def drop_for_policy(sets: np.ndarray, i: np.ndarray, j: np.ndarray, policy: str) -> np.ndarray:
    """Training images to drop before splitting, from dedup-check's pairs, by ``split.drop`` policy.

    Parameters
    ----------
    sets : ndarray of str, shape (n_pairs,)
        ``"train"``, ``"test"`` or ``"train_test"`` for each pair (exact or near).
    i, j : ndarray of int, shape (n_pairs,)
        The pair's indices; for ``train_test`` pairs ``i`` is the training image.
    policy : {"none", "duplicates", "leaks", "both"}
        ``duplicates`` drops the later image of each pair inside train (one of each group stays),
        ``leaks`` every training image with a copy in test, ``both`` the union.

    Returns
    -------
    ndarray of int64, sorted and unique.
    """
    if policy not in ("none", "duplicates", "leaks", "both"):
        raise ValueError(f"policy must be one of 'none', 'duplicates', 'leaks', 'both'; got {policy!r}")
    sets, i, j = np.asarray(sets), np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    drop = [np.empty(0, np.int64)]
    if policy in ("duplicates", "both"):
        inside = sets == "train"
        drop.append(later_of_pairs(i[inside], j[inside]))
    if policy in ("leaks", "both"):
        drop.append(i[sets == "train_test"])
    return np.unique(np.concatenate(drop))
