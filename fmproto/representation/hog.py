"""Histograms of oriented gradients (Dalal & Triggs), computed with numpy."""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

_CHUNK = 8192  # images at once: per-pixel work arrays of a few hundred MB
_LEVELS = 256  # uint8 grey levels: every gradient component lies in -255..255


@cache
def _angles() -> np.ndarray:
    """``atan2(gy, gx)`` float32 for every integer gradient of uint8 images, ``(511, 511)`` by (gy, gx): numpy's
    arctan2 has other last bits on AVX-512 CPUs; the C library's gives the same table anywhere."""
    g = range(1 - _LEVELS, _LEVELS)
    return np.array([[math.atan2(y, x) for x in g] for y in g]).astype(np.float32)


def hog(images: np.ndarray, cell: int = 4, orientations: int = 9) -> np.ndarray:
    """HOG descriptors ``(n, hog_size(...))`` float32 of ``(n, H, W)`` images.

    Central-difference gradients (zero outside the image); unsigned orientations, each pixel's
    magnitude split between its two nearest bins; ``cell`` x ``cell`` cells from the top left (a
    remainder dropped); 2x2-cell blocks at stride one cell, L2-Hys normalised (a flat block stays 0).
    """
    # Chunks run a core each (numpy lets go of the GIL), _CHUNK images at most in flight together; an image's
    # descriptor does not depend on its chunk.
    workers = os.cpu_count() or 1
    chunk = max(1, min(-(-len(images) // workers), _CHUNK // workers))
    starts = range(0, len(images), chunk) or [0]  # no images still give (0, hog_size)
    with ThreadPoolExecutor(min(len(starts), workers)) as pool:
        return np.concatenate(list(pool.map(lambda i: _hog_chunk(images[i : i + chunk], cell, orientations), starts)))


def hog_size(image_shape: tuple[int, int], cell: int, orientations: int) -> int:
    """Length of one image's HOG descriptor."""
    cells_y, cells_x = image_shape[0] // cell, image_shape[1] // cell
    return (cells_y - 1) * (cells_x - 1) * 4 * orientations


def _hog_chunk(images: np.ndarray, cell: int, orientations: int) -> np.ndarray:
    n, height, width = images.shape
    padded = np.pad(images.astype(np.float32), ((0, 0), (1, 1), (1, 1)))  # zero outside the image
    gx, gy = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2], padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    magnitude = np.hypot(gx, gy)
    if images.dtype == np.uint8:  # integer gradients: angles from the table, the same on every CPU
        angle = _angles()[gy.astype(np.intp) + (_LEVELS - 1), gx.astype(np.intp) + (_LEVELS - 1)]
    else:
        angle = np.arctan2(gy, gx)
    # Unsigned orientation in bins: bin b covers centres b + 0.5; a pixel votes for its two nearest.
    position = (angle % np.pi) * (orientations / np.pi) - 0.5
    lower = np.floor(position)
    upper_weight = (position - lower).astype(np.float32)
    lower = lower.astype(np.int64) % orientations
    upper = (lower + 1) % orientations
    cells_y, cells_x = height // cell, width // cell
    # Each pixel inside whole cells votes into (image, cell, bin) slots: a weighted bincount per nearest bin.
    inside = (slice(None), slice(0, cells_y * cell), slice(0, cells_x * cell))
    cell_of = (np.arange(cells_y * cell)[:, None] // cell) * cells_x + np.arange(cells_x * cell)[None, :] // cell
    slot = (np.arange(n)[:, None, None] * (cells_y * cells_x) + cell_of) * orientations  # (n, h, w)
    magnitude, upper_weight = magnitude[inside], upper_weight[inside]
    size = n * cells_y * cells_x * orientations
    cells = np.bincount((slot + lower[inside]).ravel(), (magnitude * (1 - upper_weight)).ravel(), size)
    cells += np.bincount((slot + upper[inside]).ravel(), (magnitude * upper_weight).ravel(), size)
    cells = cells.astype(np.float32).reshape(n, cells_y, cells_x, orientations)
    blocks = np.concatenate([cells[:, :-1, :-1], cells[:, :-1, 1:], cells[:, 1:, :-1], cells[:, 1:, 1:]], axis=3)
    blocks = np.minimum(_l2(blocks.reshape(n, (cells_y - 1) * (cells_x - 1), 4 * orientations)), 0.2)
    return _l2(blocks).reshape(n, hog_size((height, width), cell, orientations))


def _l2(blocks: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("nbk,nbk->nb", blocks, blocks))[..., None]
    return np.divide(blocks, norms, out=np.zeros_like(blocks), where=norms > 1e-6)
