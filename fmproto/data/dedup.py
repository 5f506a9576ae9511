"""Exact and near duplicate images, within one set and between two (train/test leakage).

Exact duplicates are found by content: images whose bytes are equal. A 64-bit integer fingerprint
of each image's bytes (a dot product with fixed random weights, wrapping, so equal bytes always
give equal fingerprints) rules out almost every image at once; the few images sharing a fingerprint
are grouped by their full bytes with ``np.unique``, so no collision can make two images twins.

Near duplicates are pairs whose root-mean-square pixel difference is below a threshold, found by
exact search. Each tile of pairs is screened first by a lower bound of the distance from a
projection onto the top principal components (``fmproto.search.projection``: a float32 product of 34
columns instead of one a pixel, rounding included in the bound); the pairs it cannot rule out are
measured exactly (float64, exact integers for 8-bit pixels). A tile whose pairs it cannot narrow
(a threshold near every distance) takes the full float32 product instead, candidates within a
rigorous bound on its rounding then being measured exactly.

Both searches keep at most ``max_pairs`` pairs (the first by ``(i, j)`` for exact duplicates, the
closest for near ones) and say whether more existed, so any threshold and any data set run in
bounded memory.

Pairs are index pairs ``(i, j)``: within one set ``i < j``; between sets ``i`` indexes the first
set and ``j`` the second. Every pair of images in an exact-duplicate group is reported once.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmproto.search import projection
from fmproto.pipeline.checks import check_int, rows as checked_rows
from fmproto.search.distances import squared_norms

SETS: tuple[str, ...] = ("train", "test", "train_test")
# The two sets each pair's i and j index, by the ``sets`` name of the pair.
_SIDES = {"train": ("train", "train"), "test": ("test", "test"), "train_test": ("train", "test")}

_UNIT = 2.0**-24  # float32 unit roundoff
# Pairs measured exactly at once: 4096, or fewer for large images, so that the (pairs, pixels) float64
# differences and the gathered rows of both sides (10 bytes a pixel) stay within 32 MB (4096 pairs of
# 28x28 images); at least one pair, so no image is too large to measure.
_EXACT_BATCH = 4096
_EXACT_BYTES = _EXACT_BATCH * 784 * 10
# Rows fingerprinted at once: a (rows, bytes) uint64 temporary of 8 * 4096 * n_bytes bytes.
_FINGERPRINT_BATCH = 4096
# Peak bytes a row of find_all's table takes while it is built and sorted (measured about 500).
_TABLE_ROW_BYTES = 512
# Principal components of the screening projection; images with fewer than four times as many
# pixels take the full product only (the projection would not save enough to pay for itself). Near
# duplicates are far nearer than most pairs, so a coarse bound rules almost all out: find_all on
# Fashion-MNIST at threshold 10 took 3.6 s with 32 components, 4.1 s with 64, 5.9 s with 128 and
# 4.5 s with 16 (17.6 s with the full product alone).
_COMPONENTS = 32
# A tile whose screen leaves more pairs than this many a row of the tile takes the full product
# (measuring a pair exactly costs about as much as 40 pairs of the full float32 product).
_SCREEN_PAIRS_PER_ROW = 8


@dataclass
class Pairs:
    """Index pairs with their RMS pixel distance (0 for exact duplicates).

    ``capped`` is True when more pairs qualified than the ``max_pairs`` kept.
    """

    i: np.ndarray  # (n_pairs,) int64
    j: np.ndarray  # (n_pairs,) int64
    distance: np.ndarray  # (n_pairs,) float64
    capped: bool = False

    def __len__(self) -> int:
        return len(self.i)


def content_keys(images: np.ndarray) -> np.ndarray:
    """One hashable key per image: its bytes as a numpy void scalar, shape ``(n,)``."""
    images = np.ascontiguousarray(images)
    rows = images.reshape(len(images), int(np.prod(images.shape[1:])))  # not -1: that fails for zero rows
    return rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()


# ---------------------------------------------------------------------------------------------- exact


def exact_duplicates(images: np.ndarray, others: np.ndarray | None = None, *, max_pairs: int = 100_000) -> Pairs:
    """Pairs of identical images, within ``images`` or between ``images`` and ``others``.

    Parameters
    ----------
    images : ndarray of shape (n, ...)
    others : ndarray of shape (m, ...), optional
        When given, only cross pairs ``(i in images, j in others)`` are returned.
    max_pairs : int
        At most this many pairs are returned: the first by ``(i, j)``. Only those are built, so
        60,000 identical images (1.8e9 pairs) take memory for ``max_pairs`` pairs, not for all.

    Returns
    -------
    Pairs sorted by ``(i, j)``, distances all 0, ``capped`` True when there were more than ``max_pairs``.
    """
    max_pairs = check_int(max_pairs, "max_pairs", low=1)
    A, B = _pair_rows(images, others)
    if others is None:
        (group,) = _content_groups(A)
        # Members sorted by (group, index): each group is a run; a member's partners follow it in its run.
        partners = np.flatnonzero(group >= 0)
        partners = partners[np.argsort(group[partners], kind="stable")]
        run_ids = group[partners]
        first = partners
        start = np.arange(1, len(partners) + 1)
        count = np.searchsorted(run_ids, run_ids, side="right") - start
    else:
        group_a, group_b = _content_groups(A, B)
        # The partners of image i are the run of others sharing its group, sorted by index.
        partners = np.flatnonzero(group_b >= 0)
        partners = partners[np.argsort(group_b[partners], kind="stable")]
        run_ids = group_b[partners]
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
    """Group ids, one ``(n,)`` int64 array per input, equal across inputs iff the rows are identical.

    Rows identical to no other row of any input get -1. All inputs are ``(n, n_features)`` rows of
    one dtype; floats compare by value (``-0.0`` equals ``0.0``).
    """
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
        _, ids, counts = np.unique(content_keys(candidates), return_inverse=True, return_counts=True)
        twin = counts[ids] > 1
        group[shared[twin]] = ids[twin]
    return np.split(group, np.cumsum([len(rows) for rows in as_bytes])[:-1])


def _row_bytes(rows: np.ndarray) -> np.ndarray:
    """``(n, n_features)`` rows as ``(n, n_bytes)`` uint8, floats normalised so ``-0.0`` reads as ``0.0``."""
    if np.issubdtype(rows.dtype, np.floating):
        rows = rows + rows.dtype.type(0)  # -0.0 + 0.0 = 0.0
    rows = np.ascontiguousarray(rows)
    return rows.view(np.uint8).reshape(len(rows), rows.shape[1] * rows.itemsize)


# ----------------------------------------------------------------------------------------------- near


def near_duplicates(
    images: np.ndarray,
    threshold: float,
    others: np.ndarray | None = None,
    *,
    chunk: int = 4096,
    max_pairs: int = 100_000,
) -> Pairs:
    """The closest pairs of images within ``threshold`` in RMS pixel difference, identical pairs excluded.

    The RMS pixel difference of images ``a`` and ``b`` with ``p`` pixels is
    ``sqrt(sum((a - b)**2) / p)``, in the pixels' own units (grey levels for uint8 images).

    Parameters
    ----------
    images : ndarray of shape (n, ...)
    threshold : float
        Pairs with ``0 < distance < threshold`` qualify; finite and >= 0.
    others : ndarray of shape (m, ...), optional
        When given, only cross pairs ``(i in images, j in others)``.
    chunk : int
        Tile side of the distance blocks; ``tile_bytes(chunk, p)`` bounds the memory of one tile.
    max_pairs : int
        At most this many qualifying pairs are kept: the closest, ties broken by the lower ``i``,
        then the lower ``j``. Memory is then bounded by ``chunk**2`` and ``max_pairs`` for any
        threshold (at 255 every pair of 8-bit images qualifies).

    Returns
    -------
    Pairs sorted by ``(i, j)`` with their exact (float64) distances, ``capped`` True when more than
    ``max_pairs`` pairs qualified. The pairs are those of an exact float64 computation over all
    pairs, whatever ``chunk``.

    Notes
    -----
    The limit is the threshold, and once ``max_pairs + 1`` pairs are kept, the farthest of them.
    Images of at least ``4 * _COMPONENTS`` pixels are first embedded by ``fmproto.search.projection``
    (fitted on ``images``; about ``4 * _COMPONENTS + 28`` bytes an image), and each tile is screened
    by the projection's certified lower bound: a pair whose bound exceeds the limit can neither
    qualify nor enter the kept set, ties included. When few pairs a row remain
    (``_SCREEN_PAIRS_PER_ROW``) they are measured exactly and merged; otherwise, and for smaller
    images, the tile takes the full float32 product. Its block passes a pair on when it is within
    the rounding bound of the limit. A tile with more such pairs passes on only those within twice
    the bound of its ``(max_pairs + 1)``-th smallest float32 value: any pair farther is beaten by
    that many pairs of the tile. The passed pairs are measured exactly and merged into the kept set.
    """
    threshold = _check_threshold(threshold)
    chunk = check_int(chunk, "chunk", low=1)
    max_pairs = check_int(max_pairs, "max_pairs", low=1)
    A, B = _pair_rows(images, others)
    within = others is None
    n_pixels = A.shape[1]
    k = max_pairs + 1  # one pair beyond the cap tells whether it was hit
    if within:
        (group_a,) = _content_groups(A)
        group_b, a2_all = group_a, _float32_norms(A, chunk)
        b2_all = a2_all
    else:
        group_a, group_b = _content_groups(A, B)
        a2_all, b2_all = _float32_norms(A, chunk), _float32_norms(B, chunk)
    limit = threshold**2 * n_pixels  # exact sum of squared differences must be below this
    kept = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    screened = n_pixels >= 4 * _COMPONENTS and len(A) and len(B)
    if screened:
        fitted = projection.fit(A, _COMPONENTS)
        embedded_a = projection.embed(fitted, A)
        embedded_b = embedded_a if within else projection.embed(fitted, B)

    for a_start in range(0, len(A), chunk):
        Xa = None  # float32 rows of the tile, made when a tile takes the full product
        a2 = a2_all[a_start : a_start + chunk]
        if screened:
            Q = projection.query_matrix(embedded_a[a_start : a_start + chunk])
        # Within one set only tiles on or above the diagonal are needed (pairs i < j).
        for b_start in range(a_start if within else 0, len(B), chunk):
            diagonal = within and b_start == a_start
            tile_a, tile_b = group_a[a_start : a_start + chunk], group_b[b_start : b_start + chunk]
            if screened:
                done, kept = _screened_tile(Q, embedded_a, embedded_b, fitted, (a_start, b_start), (tile_a, tile_b),
                                            A, B, diagonal, limit, kept, k, threshold)
                if done:
                    continue
            Xa = A[a_start : a_start + chunk].astype(np.float32) if Xa is None else Xa  # (tile_a, p)
            Xb = Xa if diagonal else B[b_start : b_start + chunk].astype(np.float32)  # (tile_b, p)
            b2 = b2_all[b_start : b_start + chunk]
            d2 = Xa @ Xb.T  # (tile_a, tile_b), float32 squared distances
            d2 *= -2.0
            d2 += a2[:, None]
            d2 += b2[None, :]
            if diagonal:
                np.putmask(d2, np.tri(len(d2), dtype=bool), np.inf)  # j <= i
            _exclude_twins(d2, tile_a, tile_b)
            slack = _rounding_error(a2.max(), b2.max(), n_pixels)
            kept = _merge_tile(d2, (a_start, b_start), A, B, limit, slack, kept, k, threshold)

    i, j, distance = kept
    capped = len(i) > max_pairs
    if capped:
        order = np.lexsort((j, i, distance))[:max_pairs]
        i, j, distance = i[order], j[order], distance[order]
    order = np.lexsort((j, i))
    return Pairs(i=i[order], j=j[order], distance=distance[order], capped=capped)


def _screened_tile(Q, embedded_a, embedded_b, fitted, starts, groups, A, B, diagonal, limit, kept, k, threshold):
    """One tile by the projection's lower bound: ``(True, kept)`` with its qualifying pairs merged, or
    ``(False, kept)`` unchanged when it leaves too many pairs (the caller then takes the full product).

    A pair whose float32 score is above ``projection.score_limits`` of the current limit (the
    threshold, or the farthest kept pair once ``k`` are kept) is farther than that limit: it can
    neither qualify nor enter the ``k`` closest, ties included.
    """
    a_start, b_start = starts
    rows_b = slice(b_start, b_start + len(groups[1]))
    screen = projection.screen_matrix(embedded_b[rows_b], np.arange(len(groups[1])))
    S = projection.scores(Q, screen.W)  # (tile_a, tile_b) float32
    if diagonal:
        np.putmask(S, np.tri(len(S), dtype=bool), np.inf)  # j <= i
    _exclude_twins(S, *groups)
    bound = np.full(len(S), _kept_limit(kept, k, limit, A.shape[1]))
    limits = projection.score_limits(bound, embedded_a[a_start : a_start + len(S)], screen, fitted)
    # Rows whose least score passes first (one reading pass), then their candidates.
    rows = np.flatnonzero(S.min(axis=1) <= limits)
    mask = S[rows] <= limits[rows, None]
    del S
    n_candidates = np.count_nonzero(mask)
    if n_candidates > _SCREEN_PAIRS_PER_ROW * max(len(limits), k):
        return False, kept
    for lines, cols in _candidate_batches(mask, n_candidates, budget=max(k, mask.shape[1])):
        i, j = rows[lines] + a_start, cols + b_start
        distance = exact_rms_distances(A, B, i, j)
        good = (distance > 0) & (distance < threshold)
        kept = _closest(kept, (i[good], j[good], distance[good]), k)
    return True, kept


def _merge_tile(d2, starts, A, B, limit, slack, kept, k, threshold):
    """``kept`` merged with the qualifying pairs of one tile's float32 block ``d2``: the ``k`` closest.

    ``kept`` is ``(i, j, distance)``; excluded entries of ``d2`` are inf; ``limit`` is the exact sum
    of squares to stay below, ``slack`` the bound on the float32 rounding of ``d2``.
    """
    n_pixels = A.shape[1]
    cut = _float32_cut(_kept_limit(kept, k, limit, n_pixels) + slack)
    mask = d2 <= cut  # (tile_a, tile_b)
    n_candidates = np.count_nonzero(mask)
    if n_candidates > k:
        # A pair more than 2 slack past the k-th smallest value is beaten by k pairs of this tile.
        values = d2[mask]
        values.partition(k - 1)
        cut = min(cut, _float32_cut(float(values[k - 1]) + 2 * slack))
        del values
        np.less_equal(d2, cut, out=mask)
        n_candidates = np.count_nonzero(mask)
    for rows, cols in _candidate_batches(mask, n_candidates, budget=max(k, d2.shape[1])):
        cut = min(cut, _float32_cut(_kept_limit(kept, k, limit, n_pixels) + slack))
        closer = d2[rows, cols] <= cut  # the kept set may have tightened the limit since
        i, j = rows[closer] + starts[0], cols[closer] + starts[1]
        distance = exact_rms_distances(A, B, i, j)
        good = (distance > 0) & (distance < threshold)
        kept = _closest(kept, (i[good], j[good], distance[good]), k)
    return kept


def _candidate_batches(mask, n_candidates, budget):
    """``(rows, cols)`` of ``mask``'s True entries, row-major, in batches of whole rows of about ``budget``.

    One batch when they are few (the usual case); heavy ties then stay in bounded memory.
    """
    if n_candidates <= budget:
        if n_candidates:
            yield np.divmod(np.flatnonzero(mask), mask.shape[1])  # flatnonzero: far faster than nonzero
        return
    ends = np.cumsum(np.count_nonzero(mask, axis=1))  # candidates up to and including each row
    row = 0
    while row < len(mask):
        done = ends[row - 1] if row else 0
        stop = max(row + 1, int(np.searchsorted(ends, done + budget, side="right")))
        rows, cols = np.divmod(np.flatnonzero(mask[row:stop]), mask.shape[1])
        yield rows + row, cols
        row = stop


def _kept_limit(kept, k, limit, n_pixels) -> float:
    """The exact sum of squares a new pair must not exceed: ``limit``, or the farthest kept once ``k`` are."""
    if len(kept[0]) < k:
        return limit
    return min(limit, float(kept[2].max()) ** 2 * n_pixels * (1 + 4 * np.finfo(np.float64).eps))


def _closest(kept, new, k):
    """The ``k`` closest of two ``(i, j, distance)`` sets by ``(distance, i, j)``."""
    i, j, distance = (np.concatenate([a, b]) for a, b in zip(kept, new))
    if len(i) > k:
        order = np.lexsort((j, i, distance))[:k]
        i, j, distance = i[order], j[order], distance[order]
    return i, j, distance


def _exclude_twins(d2, group_a, group_b) -> None:
    """Set ``d2`` to inf in place where row and column images are identical (same content group)."""
    twin_a, twin_b = group_a >= 0, group_b >= 0
    if twin_a.any() and twin_b.any():
        same = group_a[:, None] == group_b[None, :]  # -1 == -1 is excluded next
        same &= twin_a[:, None]
        np.putmask(d2, same, np.inf)


def _rounding_error(a2_max: float, b2_max: float, n_pixels: int) -> float:
    """Bound on ``|float32 d2 - exact d2|`` for rows of squared norms at most ``a2_max`` and ``b2_max``.

    ``d2 = |a|^2 + |b|^2 - 2 a.b`` sums products of magnitude at most ``(|a| + |b|)^2`` in all;
    Higham's gamma_n bounds the error of sums of n products in any order (blocked BLAS included).
    The 8 extra terms cover the two additions, and the factor 2 the float32 norms themselves.
    """
    n = n_pixels + 8
    if n * _UNIT >= 0.5:
        return math.inf
    gamma = 2.0 * n * _UNIT / (1 - n * _UNIT)
    return gamma * (math.sqrt(a2_max) + math.sqrt(b2_max)) ** 2


def _float32_cut(value: float) -> np.float32:
    """``value`` as float32, rounded up, so float32 comparisons keep all that float64 would."""
    return np.nextafter(np.float32(value), np.float32(np.inf))


def _float32_norms(rows: np.ndarray, chunk: int) -> np.ndarray:
    """Squared norms ``(n,)`` of float32 ``rows``, converted a chunk at a time."""
    return np.concatenate([np.empty(0, np.float32)] + [
        squared_norms(rows[start : start + chunk].astype(np.float32)) for start in range(0, len(rows), chunk)
    ])


def exact_rms_distances(images: np.ndarray, others: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """RMS pixel differences of the pairs ``(images[i], others[j])``, in float64 (exact for 8-bit pixels)."""
    a = np.asarray(images).reshape(len(images), -1)
    b = np.asarray(others).reshape(len(others), -1)
    out = np.empty(len(i), dtype=np.float64)
    batch = _exact_batch(a.shape[1])
    for start in range(0, len(i), batch):  # bounded memory for (pairs, pixels) differences
        diff = a[i[start : start + batch]].astype(np.float64)
        diff -= b[j[start : start + batch]]
        out[start : start + batch] = np.sqrt(np.einsum("ij,ij->i", diff, diff) / a.shape[1])
    return out


def _exact_batch(n_pixels: int) -> int:
    """Pairs ``exact_rms_distances`` measures at once: ``_EXACT_BATCH``, fewer for images of more than 784 pixels."""
    return max(1, min(_EXACT_BATCH, _EXACT_BYTES // (10 * max(1, n_pixels))))


# ---------------------------------------------------------------------------------------------- memory


def tile_bytes(tile: int, n_pixels: int) -> int:
    """Bytes that one tile of ``near_duplicates`` takes at most, for tile side ``tile``.

    The float32 ``(tile, tile)`` distance block, a float32 copy of its candidates' values (for the
    selection when many pairs qualify), two boolean masks, the float32 copies of the two tiles' rows
    and the float64 differences of one batch of exactly measured pairs. The ``max_pairs`` kept pairs
    (24 bytes each) come on top.
    """
    tile = check_int(tile, "tile", low=0)
    n_pixels = check_int(n_pixels, "n_pixels", low=1)
    block = tile * tile * (4 + 4 + 1 + 1)
    rows = 2 * tile * n_pixels * 4
    exact = _exact_batch(n_pixels) * n_pixels * (8 + 1 + 1)  # float64 differences, uint8 gathers of both sides
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
    """Bytes that ``find_all``'s table may take at its peak, for ``max_pairs`` a kind and set.

    Six capped sets of pairs (exact and near; train, test and train_test) at ``_TABLE_ROW_BYTES`` a
    row: pandas keeps the text columns as Python strings, and building and sorting copies them.
    """
    return 6 * check_int(max_pairs, "max_pairs", low=0) * _TABLE_ROW_BYTES


# ------------------------------------------------------------------------------------------- all sets


def find_all(
    train_images: np.ndarray,
    test_images: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    classes: list[str],
    near_threshold: float,
    *,
    chunk: int = 4096,
    max_pairs: int = 100_000,
) -> tuple[pd.DataFrame, dict]:
    """Exact and near duplicates within train, within test and between them, as a table and metrics.

    Parameters
    ----------
    train_images : ndarray of shape (n_train, H, W)
    test_images : ndarray of shape (n_test, H, W)
    train_labels : ndarray of int, shape (n_train,)
    test_labels : ndarray of int, shape (n_test,)
    classes : list of str
        Class names; labels index them.
    near_threshold : float
        Near duplicates are pairs with ``0 < distance < near_threshold`` (see ``near_duplicates``).
    chunk, max_pairs : int
        As in ``near_duplicates``; ``max_pairs`` caps each kind and set of pairs separately.

    Returns
    -------
    table : DataFrame
        One row a pair: ``kind`` ("exact" or "near"), ``sets`` ("train", "test" or "train_test";
        for "train_test" ``i`` is the training image), ``i``, ``j``, ``label_i``, ``label_j``,
        ``distance`` (rounded to 4 decimals), ``class_i``, ``class_j``; sorted by
        ``(distance, sets, i, j)``, exact before near on equal keys.
    metrics : dict
        ``{"exact": {set: n}, "near": {set: n}, "near_threshold": t, "near_capped": {set: bool},
        "exact_capped": {set: bool}, "max_pairs": max_pairs, "labels_disagree": {"exact": n, "near": n}}``,
        plain Python numbers.
    """
    near_threshold = _check_threshold(near_threshold)
    chunk = check_int(chunk, "chunk", low=1)
    max_pairs = check_int(max_pairs, "max_pairs", low=1)
    names = np.asarray(classes, dtype=str)
    train_labels = _check_labels(train_labels, len(train_images), len(names), "train_labels")
    test_labels = _check_labels(test_labels, len(test_images), len(names), "test_labels")
    sides = {"train": (train_images, train_labels), "test": (test_images, test_labels)}

    frames = []
    metrics = {"exact": {}, "near": {}, "near_threshold": near_threshold, "near_capped": {}, "exact_capped": {},
               "max_pairs": max_pairs}
    for name in SETS:
        (first, labels_i), (second, labels_j) = (sides[side] for side in _SIDES[name])
        other = second if name == "train_test" else None
        found = {
            "exact": exact_duplicates(first, other, max_pairs=max_pairs),
            "near": near_duplicates(first, near_threshold, other, chunk=chunk, max_pairs=max_pairs),
        }
        for kind, pairs in found.items():
            metrics[kind][name] = len(pairs)
            metrics[f"{kind}_capped"][name] = bool(pairs.capped)
            frames.append(pd.DataFrame({
                "kind": kind, "sets": name, "i": pairs.i, "j": pairs.j,
                "label_i": labels_i[pairs.i], "label_j": labels_j[pairs.j],
                "distance": pairs.distance.round(4),
            }))
    table = pd.concat(frames, ignore_index=True).sort_values(["distance", "sets", "i", "j"], kind="stable",
                                                             ignore_index=True)
    table["class_i"] = names[table["label_i"].to_numpy()]
    table["class_j"] = names[table["label_j"].to_numpy()]
    disagree = (table["label_i"] != table["label_j"]).to_numpy()
    kinds = table["kind"].to_numpy()
    metrics["labels_disagree"] = {kind: int(np.count_nonzero(disagree & (kinds == kind))) for kind in ("exact", "near")}
    return table, metrics


def closest_pairs_grid(table: pd.DataFrame, images: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[bool]]:
    """The pictures of ``table``'s pairs side by side, with titles and marks, for an image grid.

    Parameters
    ----------
    table : DataFrame
        Rows of ``find_all``'s table (columns sets, i, j, label_i, label_j, distance, class_i, class_j).
    images : dict
        ``{"train": ndarray of shape (n_train, H, W), "test": ndarray of shape (n_test, H, W)}``.

    Returns
    -------
    pictures : ndarray of shape (2 * len(table), H, W)
        Each pair's image ``i`` then image ``j``, in table order; ``(0, H, W)`` for an empty table.
    titles : list of str
        ``"{set}[{index}] {class}\\nd={distance:.1f}"`` for each picture.
    marks : list of bool
        True for both pictures of a pair whose labels disagree.
    """
    missing = [name for name in ("train", "test") if name not in images]
    if missing:
        raise ValueError(f"images must have keys 'train' and 'test'; missing {', '.join(map(repr, missing))}")
    unknown = sorted(set(table["sets"]) - set(_SIDES))
    if unknown:
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


# -------------------------------------------------------------------------------------------- checks


def _check_threshold(threshold) -> float:
    if (isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating))
            or not math.isfinite(threshold) or threshold < 0):
        raise ValueError(f"threshold must be >= 0 and finite; got {threshold!r}")
    return float(threshold)


def _check_labels(labels, n: int, n_classes: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integers of shape ({n},), one per image; got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} must lie in 0..{n_classes - 1} (the classes); got {labels.min()}..{labels.max()}")
    return labels


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
