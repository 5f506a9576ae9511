"""Exact and near duplicate images, within one set (``i < j``) and between two (train/test leakage).

Exact: equal bytes, through a 64-bit fingerprint of each image, the few sharing one compared byte by byte.
Near: RMS pixel difference below a threshold, by ``KnnIndex.radius_pairs``. Both keep ``max_pairs``."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmproto.pipeline.checks import check_int, labels, rows as checked_rows
from fmproto.search.knn import KnnIndex

SETS: tuple[str, ...] = ("train", "test", "train_test")
_SIDES = {"train": ("train", "train"), "test": ("test", "test"), "train_test": ("train", "test")}  # of i and j

# Pairs of a tile measured exactly at once (in tile_bytes): 4096, fewer for large images (10 bytes a pixel).
_EXACT_BATCH = 4096
_EXACT_BYTES = _EXACT_BATCH * 784 * 10
_FINGERPRINT_BATCH = 4096  # rows fingerprinted at once: a (rows, bytes) uint64 temporary
_TABLE_ROW_BYTES = 512  # peak bytes of a row of find_all's table while built and sorted (measured 500)
# Components of the screen: near duplicates are far nearer than most pairs, so a coarse bound rules
# almost all out (find_all on Fashion-MNIST: 3.6 s with 32, 4.1 s with 64, 5.9 s with 128).
_COMPONENTS = 32


@dataclass
class Pairs:
    """Index pairs with their RMS pixel distance (0 for exact duplicates); ``capped``: more qualified."""

    i: np.ndarray  # (n_pairs,) int64, as is j
    j: np.ndarray
    distance: np.ndarray  # (n_pairs,) float64
    capped: bool = False

    def __len__(self) -> int:
        return len(self.i)


def exact_duplicates(images: np.ndarray, others: np.ndarray | None = None, *, max_pairs: int = 100_000) -> Pairs:
    """Pairs of identical images within ``images (n, ...)``, or between it and ``others (m, ...)``: ``Pairs``
    sorted by ``(i, j)``, distances 0, the first ``max_pairs`` only built (60,000 equal images: no n^2)."""
    max_pairs = check_int(max_pairs, "max_pairs", low=1)
    A, B = _pair_rows(images, others)
    group_a, group_b = _content_groups(A) * 2 if others is None else _content_groups(A, B)
    # Partners sorted by (group, index): image i's are a run of those sharing its group.
    partners = np.flatnonzero(group_b >= 0)
    partners = partners[np.argsort(group_b[partners], kind="stable")]
    run_ids = group_b[partners]
    if others is None:  # a member's partners follow it in its run
        first = partners
        start = np.arange(1, len(partners) + 1)
        count = np.searchsorted(run_ids, run_ids, side="right") - start
    else:
        first = np.flatnonzero(group_a >= 0)
        start = np.searchsorted(run_ids, group_a[first], side="left")
        count = np.searchsorted(run_ids, group_a[first], side="right") - start
    order = np.argsort(first, kind="stable")  # by i; each i's partners come in increasing j
    first, start, count = first[order], start[order], count[order]
    total = int(count.sum())
    # Keep whole runs of partners up to max_pairs, cutting the last one short.
    before = np.cumsum(count) - count  # pairs of the earlier i
    count = np.clip(max_pairs - before, 0, count)
    n_kept = int(count.sum())
    i = np.repeat(first, count)
    offset = np.arange(n_kept) - np.repeat(np.cumsum(count) - count, count)
    j = partners[np.repeat(start, count) + offset]
    return Pairs(i=i.astype(np.int64), j=j.astype(np.int64), distance=np.zeros(n_kept), capped=total > max_pairs)


def _content_groups(*arrays: np.ndarray) -> list[np.ndarray]:
    """Group ids ``(n,)`` int64 per input of rows of one dtype: equal iff the rows are (-0.0 == 0.0), -1 if unique."""
    as_bytes = [_row_bytes(rows) for rows in arrays]
    n_bytes = as_bytes[0].shape[1]
    weights = np.random.default_rng(0).integers(1, 2**63, size=n_bytes, dtype=np.uint64)
    fingerprints = np.concatenate([np.empty(0, np.uint64)] + [
        np.einsum("ij,j->i", rows[start : start + _FINGERPRINT_BATCH], weights)  # wraps modulo 2**64
        for rows in as_bytes for start in range(0, len(rows), _FINGERPRINT_BATCH)
    ])
    _, inverse, counts = np.unique(fingerprints, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[inverse] > 1)  # only these can have a twin; compare their bytes
    group = np.full(len(fingerprints), -1, dtype=np.int64)
    if len(shared):
        offsets = np.cumsum([0] + [len(rows) for rows in as_bytes])
        which = np.searchsorted(offsets, shared, side="right") - 1
        candidates = np.concatenate([as_bytes[k][shared[which == k] - offsets[k]] for k in range(len(as_bytes))])
        keys = candidates.view(np.dtype((np.void, candidates.shape[1]))).ravel()  # a row's bytes, hashable
        _, ids, counts = np.unique(keys, return_inverse=True, return_counts=True)
        twin = counts[ids] > 1
        group[shared[twin]] = ids[twin]
    return np.split(group, np.cumsum([len(rows) for rows in as_bytes])[:-1])


def _row_bytes(rows: np.ndarray) -> np.ndarray:
    if np.issubdtype(rows.dtype, np.floating):
        rows = rows + rows.dtype.type(0)  # -0.0 + 0.0 = 0.0: one byte pattern
    rows = np.ascontiguousarray(rows)
    return rows.view(np.uint8).reshape(len(rows), rows.shape[1] * rows.itemsize)


def near_duplicates(images: np.ndarray, threshold: float, others: np.ndarray | None = None, *, chunk: int = 4096,
                    max_pairs: int = 100_000, on_chunk: Callable[[int, int], None] | None = None,
                    engine: Callable[[int], KnnIndex] = KnnIndex) -> Pairs:
    """The closest ``max_pairs`` pairs within ``images (n, ...)`` or with ``others (m, ...)`` with ``0 < RMS pixel
    difference < threshold``, as ``Pairs`` by ``(i, j)``, exact float64 distances whatever ``chunk`` (``chunk**2``:
    the most pairs scored at once); ties kept by lower ``i``, ``j``. ``on_chunk(done, n)``: after each chunk of
    the ``n`` rows of ``images``, the rows searched (the last call ``(n, n)``). ``engine(components)``: an unfitted
    index, ``KnnIndex`` or a ``cluster.ShardedIndex`` (the same pairs)."""
    threshold = _check_threshold(threshold)
    chunk = check_int(chunk, "chunk", low=1)
    max_pairs = check_int(max_pairs, "max_pairs", low=1)
    A, B = _pair_rows(images, others)
    within = others is None
    groups = _content_groups(A) * 2 if within else _content_groups(A, B)
    if not len(A) or not len(B) or threshold == 0:
        if on_chunk is not None and len(A):
            on_chunk(len(A), len(A))
        return Pairs(i=np.empty(0, np.int64), j=np.empty(0, np.int64), distance=np.empty(0))
    n_pixels = A.shape[1]
    index = engine(_COMPONENTS).fit(B, "sqeuclidean")
    i, j, d2, capped = index.radius_pairs(None if within else A, threshold**2 * n_pixels, max_pairs=max_pairs,
                                          exclude=groups, chunk=max(1, chunk * chunk // len(B)), on_chunk=on_chunk)
    distance = np.sqrt(d2 / n_pixels)
    good = (distance > 0) & (distance < threshold)
    i, j, distance = i[good], j[good], distance[good]
    order = np.lexsort((j, i))
    return Pairs(i=i[order], j=j[order], distance=distance[order], capped=capped)


def tile_bytes(tile: int, n_pixels: int) -> int:
    """Bytes one tile of side ``tile`` of ``near_duplicates`` takes at most, the kept pairs aside: the float32
    score block with a copy and two masks, float32 rows of both sides, one exact batch."""
    tile = check_int(tile, "tile", low=0)
    n_pixels = check_int(n_pixels, "n_pixels", low=1)
    block = tile * tile * (4 + 4 + 1 + 1)
    rows = 2 * tile * n_pixels * 4
    batch = max(1, min(_EXACT_BATCH, _EXACT_BYTES // (10 * n_pixels)))
    exact = batch * n_pixels * (8 + 1 + 1)  # float64 differences, uint8 gathers of both sides
    return block + rows + exact


def largest_chunk(n_pixels: int, limit: int) -> int:
    """The largest tile side whose ``tile_bytes(tile, n_pixels)`` is at most ``limit`` bytes (0 if none)."""
    n_pixels = check_int(n_pixels, "n_pixels", low=1)
    limit = check_int(limit, "limit", low=0)
    # tile_bytes = 10 t^2 + 8 p t + c: solve, then settle the rounding with exact integer checks.
    c = tile_bytes(0, n_pixels)
    if c > limit:
        return 0
    tile = int((-8 * n_pixels + math.sqrt(64 * n_pixels**2 + 40 * (limit - c))) / 20)
    while tile > 0 and tile_bytes(tile, n_pixels) > limit:
        tile -= 1
    while tile_bytes(tile + 1, n_pixels) <= limit:
        tile += 1
    return tile


def table_bytes(max_pairs: int) -> int:
    """Peak bytes of ``find_all``'s table: six capped sets of pairs (pandas keeps text as Python strings)."""
    return 6 * check_int(max_pairs, "max_pairs", low=0) * _TABLE_ROW_BYTES


def find_all(train_images: np.ndarray, test_images: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray,
             classes: list[str], near_threshold: float, *, chunk: int = 4096, max_pairs: int = 100_000,
             on_chunk: Callable[[int, int], None] | None = None,
             engine: Callable[[int], KnnIndex] = KnnIndex) -> tuple[pd.DataFrame, dict]:
    """Exact and near duplicates within train, within test and between them (``max_pairs`` a kind and set).

    A row a pair: ``kind``, ``sets`` (one of ``SETS``), ``i``, ``j``, labels, ``distance`` (4 decimals), classes;
    by ``(distance, sets, i, j)``. Metrics: counts and ``*_capped`` a kind and set, ``labels_disagree``.
    ``on_chunk(done, total)``: called after each chunk of the near-duplicate searches with the rows searched and
    all of them (train, test, then train against test: ``2 * n_train + n_test``). ``engine``: ``near_duplicates``'s."""
    near_threshold = _check_threshold(near_threshold)
    chunk = check_int(chunk, "chunk", low=1)
    max_pairs = check_int(max_pairs, "max_pairs", low=1)
    names = np.asarray(classes, dtype=str)
    train_labels = labels(train_labels, len(names), "train_labels", n=len(train_images))
    test_labels = labels(test_labels, len(names), "test_labels", n=len(test_images))
    sides = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    frames = []
    metrics = {"exact": {}, "near": {}, "near_threshold": near_threshold, "near_capped": {}, "exact_capped": {},
               "max_pairs": max_pairs}
    total, searched = 2 * len(train_images) + len(test_images), 0  # rows queried by the three near searches
    for name in SETS:
        (first, labels_i), (second, labels_j) = (sides[side] for side in _SIDES[name])
        other = second if name == "train_test" else None
        report = None if on_chunk is None else (lambda done, _, before=searched: on_chunk(before + done, total))
        for kind, pairs in (("exact", exact_duplicates(first, other, max_pairs=max_pairs)),
                            ("near", near_duplicates(first, near_threshold, other, chunk=chunk, max_pairs=max_pairs,
                                                     on_chunk=report, engine=engine))):
            metrics[kind][name] = len(pairs)
            metrics[f"{kind}_capped"][name] = bool(pairs.capped)
            frames.append(pd.DataFrame({"kind": kind, "sets": name, "i": pairs.i, "j": pairs.j,
                                        "label_i": labels_i[pairs.i], "label_j": labels_j[pairs.j],
                                        "distance": pairs.distance.round(4)}))
        searched += len(first)
    table = pd.concat(frames, ignore_index=True).sort_values(["distance", "sets", "i", "j"], kind="stable",
                                                             ignore_index=True)
    table["class_i"] = names[table["label_i"].to_numpy()]
    table["class_j"] = names[table["label_j"].to_numpy()]
    disagree = (table["label_i"] != table["label_j"]).to_numpy()
    kinds = table["kind"].to_numpy()
    metrics["labels_disagree"] = {kind: int(np.count_nonzero(disagree & (kinds == kind))) for kind in ("exact", "near")}
    return table, metrics


def closest_pairs_grid(table: pd.DataFrame, images: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[bool]]:
    """``(pictures, titles, marks)`` of ``table``'s pairs side by side, from ``images`` ``{"train": (n_train, H, W),
    "test": (n_test, H, W)}``: image ``i`` then ``j``, titled ``"{set}[{index}] {class}\nd={distance:.1f}"``,
    marked when labels disagree."""
    if missing := [name for name in ("train", "test") if name not in images]:
        raise ValueError(f"images must have keys 'train' and 'test'; missing {', '.join(map(repr, missing))}")
    if unknown := sorted(set(table["sets"]) - set(_SIDES)):
        raise ValueError(f"sets must be one of {', '.join(map(repr, SETS))}; got {unknown[0]!r}")
    train, test = np.asarray(images["train"]), np.asarray(images["test"])
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"train and test images differ in shape: {train.shape[1:]} and {test.shape[1:]}")
    pictures = np.empty((2 * len(table), *train.shape[1:]), dtype=np.result_type(train, test))
    titles, marks = [], []
    sides = {"train": train, "test": test}
    for row, pair in enumerate(table.itertuples(index=False)):  # a few dozen pairs for a figure
        disagree = bool(pair.label_i != pair.label_j)
        for half, (side, index, name) in enumerate(zip(_SIDES[pair.sets], (pair.i, pair.j), (pair.class_i, pair.class_j))):
            pictures[2 * row + half] = sides[side][index]
            titles.append(f"{side}[{index}] {name}\nd={pair.distance:.1f}")
            marks.append(disagree)
    return pictures, titles, marks


def summary(metrics: dict) -> str:
    """Two lines of pair counts by set from ``find_all``'s metrics, each kind marked when capped."""
    lines = []
    for kind, what in (("exact", "exact duplicate pairs"), ("near", f"near duplicate pairs (< {metrics['near_threshold']})")):
        n = metrics[kind]
        capped = " (capped at max_pairs)" if any(metrics[f"{kind}_capped"].values()) else ""
        lines.append(f"{what}: train {n['train']}, test {n['test']}, train/test {n['train_test']}{capped}")
    return "\n".join(lines)


def _check_threshold(threshold) -> float:
    if (isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating))
            or not math.isfinite(threshold) or threshold < 0):
        raise ValueError(f"threshold must be >= 0 and finite; got {threshold!r}")
    return float(threshold)


def _pair_rows(images, others) -> tuple[np.ndarray, np.ndarray]:
    """``images`` and ``others`` (or ``images`` again) as checked rows of one dtype."""
    A = checked_rows(images, "images")
    if others is None:
        return A, A
    B = checked_rows(others, "others")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"images have {A.shape[1]} pixels but others have {B.shape[1]}")
    dtype = np.result_type(A, B)
    return A.astype(dtype, copy=False), B.astype(dtype, copy=False)
