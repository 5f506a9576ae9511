"""Augmented training images: copies shifted by one pixel and horizontal flips, and where each came from.

Copies are made before any feature transform; every copy keeps the label of its source image.
"""

import numpy as np


def augment(images: np.ndarray, shifts: bool, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """The images followed by their augmented copies, and the source row of every output image.

    Parameters
    ----------
    images : ndarray of shape (n, H, W)
    shifts : bool
        Add four copies shifted by one pixel (right, left, down, up), the vacated edge set to 0.
    flip : bool
        Add the horizontal mirror images (a left sleeve becomes a right one; clothes stay clothes).

    Returns
    -------
    augmented : ndarray of shape (n * (1 + 4 * shifts + flip), H, W), images.dtype
        ``images`` first, then each kind of copy in the order above, each in the original row order.
    source : ndarray of shape (len(augmented),), int64
        Row of ``images`` each output image was made from, for its label and for explanations.
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
    source = np.tile(np.arange(len(images), dtype=np.int64), len(copies))
    return np.concatenate(copies), source


def images_of_rows(images: np.ndarray, rows: np.ndarray, shifts: bool, flip: bool) -> np.ndarray:
    """The images at ``rows`` of ``augment(images, shifts, flip)``, without augmenting them all.

    ``rows`` may have any shape; the result has shape ``rows.shape + (H, W)``. Row ``r`` is copy
    number ``r // n`` (0: the image itself) of image ``r % n``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    flat = rows.ravel()
    copies, _ = augment(images[flat % len(images)], shifts, flip)  # every copy of the m images needed
    picked = copies[(flat // len(images)) * len(flat) + np.arange(len(flat))]
    return picked.reshape(*rows.shape, *images.shape[1:])
