"""Histograms of oriented gradients (Dalal & Triggs), computed with numpy.

Unsigned gradient orientations binned with linear interpolation into ``orientations`` bins per
``cell`` x ``cell`` cell, then each 2x2 block of cells L2-Hys normalised.
"""

import math
from functools import cache

import numpy as np

# Images handled at once: bounds the per-pixel work arrays to a few hundred MB.
_CHUNK = 8192
_LEVELS = 256  # uint8 grey levels: every gradient component lies in -255..255


@cache
def _angles() -> np.ndarray:
    """``atan2(gy, gx)`` as float32 for every integer gradient of uint8 images, ``(511, 511)`` by (gy, gx).

    numpy's arctan2 takes another code path on AVX-512 CPUs than elsewhere, with other last bits;
    the C library's, called once per possible gradient here, gives the same table on any CPU.
    """
    g = range(1 - _LEVELS, _LEVELS)
    return np.array([[math.atan2(y, x) for x in g] for y in g]).astype(np.float32)


def hog(images: np.ndarray, cell: int = 4, orientations: int = 9) -> np.ndarray:
    """HOG descriptors ``(n, n_blocks_y * n_blocks_x * 4 * orientations)`` float32 of ``(n, H, W)`` images.

    Central-difference gradients (zero outside the image), unsigned orientations in [0, 180)
    degrees, each pixel's magnitude split between its two nearest orientation bins; cells of
    ``cell`` x ``cell`` pixels from the top left (a remainder of rows or columns is dropped);
    2x2-cell blocks with stride one cell, each L2-Hys normalised (L2, clip at 0.2, L2 again).
    A flat block (no gradient) stays zero.
    """
    out = [_hog_chunk(images[i : i + _CHUNK], cell, orientations) for i in range(0, len(images), _CHUNK)]
    if not out:
        return np.zeros((0, hog_size(images.shape[1:], cell, orientations)), dtype=np.float32)
    return np.concatenate(out)


def hog_size(image_shape: tuple[int, int], cell: int, orientations: int) -> int:
    """Length of one image's HOG descriptor: 2x2-cell blocks at stride one cell, ``4 * orientations`` each."""
    cells_y, cells_x = image_shape[0] // cell, image_shape[1] // cell
    return (cells_y - 1) * (cells_x - 1) * 4 * orientations


def _hog_chunk(images: np.ndarray, cell: int, orientations: int) -> np.ndarray:
    I = images.astype(np.float32)
    n, height, width = I.shape
    gx = np.zeros_like(I)
    gy = np.zeros_like(I)
    gx[:, :, 1:-1] = I[:, :, 2:] - I[:, :, :-2]
    gx[:, :, 0], gx[:, :, -1] = I[:, :, 1], -I[:, :, -2]
    gy[:, 1:-1, :] = I[:, 2:, :] - I[:, :-2, :]
    gy[:, 0, :], gy[:, -1, :] = I[:, 1, :], -I[:, -2, :]
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
    # Each pixel votes into (image, cell, bin) slots: two weighted bincounts, one per nearest bin,
    # over pixels inside whole cells (a remainder of rows or columns is dropped).
    inside = (slice(None), slice(0, cells_y * cell), slice(0, cells_x * cell))
    cell_of = (np.arange(cells_y * cell)[:, None] // cell) * cells_x + np.arange(cells_x * cell)[None, :] // cell
    slot = (np.arange(n)[:, None, None] * (cells_y * cells_x) + cell_of) * orientations  # (n, h, w)
    magnitude, upper_weight = magnitude[inside], upper_weight[inside]
    size = n * cells_y * cells_x * orientations
    cells = np.bincount((slot + lower[inside]).ravel(), (magnitude * (1 - upper_weight)).ravel(), size)
    cells += np.bincount((slot + upper[inside]).ravel(), (magnitude * upper_weight).ravel(), size)
    cells = cells.astype(np.float32).reshape(n, cells_y, cells_x, orientations)
    blocks = np.concatenate(
        [cells[:, :-1, :-1], cells[:, :-1, 1:], cells[:, 1:, :-1], cells[:, 1:, 1:]], axis=3
    ).reshape(n, (cells_y - 1) * (cells_x - 1), 4 * orientations)
    blocks = _l2(blocks)
    np.minimum(blocks, 0.2, out=blocks)
    return _l2(blocks).reshape(n, -1)


def _l2(blocks: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("nbk,nbk->nb", blocks, blocks))[..., None]
    return np.divide(blocks, norms, out=np.zeros_like(blocks), where=norms > 1e-6)
