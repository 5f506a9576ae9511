"""Seeded train/validation split of the training set, by indices."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    """Indices into the ingested training set; each image is in exactly one of the three."""

    train: np.ndarray  # (n_train,) int64, sorted
    valid: np.ndarray  # (n_valid,) int64, sorted
    dropped: np.ndarray  # (n_dropped,) int64, sorted


def validation_split(labels: np.ndarray, valid_pct: float, *, seed: int, stratify: bool = False,
                     drop: np.ndarray | None = None) -> Split:
    """Hold out ``valid_pct`` (in (0, 1)) of the images not in ``drop`` for validation; ``labels`` is ``(n,)``.

    ``seed`` seeds ``numpy.random.default_rng``. ``stratify`` draws ``round(valid_pct * n_c)`` from each class
    ``c`` so class shares match; otherwise the draw is uniform over all kept images.
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
        _, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
        rank = np.arange(len(by_class)) - np.repeat(starts, counts)
        valid = by_class[rank < np.repeat(np.round(valid_pct * counts).astype(np.int64), counts)]
    else:
        valid = shuffled[: int(round(valid_pct * len(kept)))]
    train = np.setdiff1d(kept, valid)
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"valid_pct {valid_pct} leaves an empty split of {len(kept)} images")
    return Split(train=train, valid=np.sort(valid), dropped=dropped)


def later_of_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The higher index of each within-set duplicate pair: dropping these keeps one image of each group."""
    return np.unique(np.maximum(i, j)).astype(np.int64)


def drop_for_policy(sets: np.ndarray, i: np.ndarray, j: np.ndarray, policy: str) -> np.ndarray:
    """Sorted unique training indices to drop before splitting, by ``split.drop`` policy, from dedup-check's pairs.

    ``sets`` ``(n_pairs,)`` says ``"train"``, ``"test"`` or ``"train_test"`` for each pair ``(i, j)`` (``i`` the
    training image of a ``train_test`` pair). ``duplicates`` drops the later of each pair inside train,
    ``leaks`` every training image with a copy in test, ``both`` the union.
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
