"""Augmented training images: copies shifted by one pixel and horizontal flips, and where each came from."""

import numpy as np


def augment(images: np.ndarray, shifts: bool, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """``images (n, H, W)`` followed by their copies, and the source row ``(len(augmented),)`` int64 of each.

    ``shifts`` adds four copies moved one pixel right, left, down and up (the vacated edge 0); ``flip``
    the mirror images. Each kind of copy follows in that order, each in the original row order, so
    row ``r`` is copy ``r // n`` (0: the image itself) of image ``r % n``.
    """
    copies = [images]
    if shifts:
        for axis, step in ((2, 1), (2, -1), (1, 1), (1, -1)):
            shifted = np.roll(images, step, axis=axis)
            edge = [slice(None)] * 3
            edge[axis] = 0 if step == 1 else -1
            shifted[tuple(edge)] = 0
            copies.append(shifted)
    if flip:
        copies.append(images[:, :, ::-1])
    return np.concatenate(copies), np.tile(np.arange(len(images), dtype=np.int64), len(copies))


def images_of_rows(images: np.ndarray, rows: np.ndarray, shifts: bool, flip: bool) -> np.ndarray:
    """The images at ``rows`` (any shape) of ``augment(images, shifts, flip)``, shape ``rows.shape + (H, W)``,
    without augmenting them all."""
    rows = np.asarray(rows, dtype=np.int64)
    flat = rows.ravel()
    copies, _ = augment(images[flat % len(images)], shifts, flip)  # every copy of the m images needed
    picked = copies[(flat // len(images)) * len(flat) + np.arange(len(flat))]
    return picked.reshape(*rows.shape, *images.shape[1:])
