"""The image ``fmproto explain`` classifies: a PNG or ``.npy`` array, its size checked from its header first."""

import os
import struct
from pathlib import Path

import numpy as np

from fmproto.data.datasets import check_image_shape
from fmproto.pipeline.checks import data_error as _error, require_file

# 16-bit RGBA pixels stored raw take 8 H W bytes plus a byte a row; metadata (an ICC profile) gets 1 MiB more.
_PNG_SLACK = 1 << 20


def read_image_file(path: str | os.PathLike, image_shape: tuple[int, int]) -> np.ndarray:
    """An image to classify, ``(H, W)`` uint8, from a ``.png`` or ``.npy`` file (suffix in any case).

    PNG colour becomes grey by ITU-R 601 luma (PIL's ``"L"``), alpha composited over black (the Fashion-MNIST
    background); ``.npy`` values must be whole numbers in 0..255. ``DataError`` naming the file for another
    type or size than ``image_shape`` (H, W) or a file that cannot be read, ``ValueError`` for a bad shape.
    """
    path = require_file(path)
    shape, suffix = check_image_shape(image_shape), path.suffix.lower()
    if suffix == ".png":
        _check_size(path, _png_size(path), shape)
        limit, size = _PNG_SLACK + shape[0] * (8 * shape[1] + 1), path.stat().st_size
        if size > limit:
            raise _error(path, f"is {size:,} bytes, more than a PNG of a {shape[0]}x{shape[1]} image needs "
                               f"(at most {limit:,}); not decoded")
        image = _read_png_grey(path)
    elif suffix == ".npy":
        _check_size(path, _npy_shape(path), shape)
        try:
            image = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise _error(path, f"not a readable .npy file ({err})") from None
        if image.size and not (np.all(image == np.round(image)) and image.min() >= 0 and image.max() <= 255):
            raise _error(path, "array values must be whole numbers in 0..255")
    else:
        raise _error(path, f"unsupported image file type {_cut(repr(path.suffix))} (use .png or .npy)")
    _check_size(path, image.shape, shape)
    return image.astype(np.uint8)


def _cut(text: str) -> str:  # a message quotes no more of a hostile file
    return text if len(text) <= 80 else text[:77] + "..."


def _check_size(path: Path, got: tuple[int, ...], shape: tuple[int, int]) -> None:
    if got != shape:
        size = _cut("x".join(map(str, got))) if len(got) == 2 else _cut(f"an array of shape {got}")
        raise _error(path, f"image is {size} but the dataset's images are {shape[0]}x{shape[1]}")


def _png_size(path: Path) -> tuple[int, int]:
    """(height, width) from the IHDR chunk, the first after the 8-byte signature; nothing is decoded."""
    try:
        with path.open("rb") as f:
            head = f.read(24)  # signature, chunk length, "IHDR", width, height (big-endian)
    except OSError as err:
        raise _error(path, f"cannot read ({err.strerror or err})") from None
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise _error(path, "not a readable PNG (no PNG signature)")
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise _error(path, "not a readable PNG (no IHDR chunk after the signature)")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The shape in a ``.npy`` header, its dtype checked to be numbers; the data is not read."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
            shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)(f)
    except (ValueError, TypeError, OSError, EOFError) as err:  # numpy raises these for a bad header
        raise _error(path, f"not a readable .npy file ({_cut(str(err))})") from None
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise _error(path, f"array has dtype {_cut(str(dtype))}; expected numbers 0..255")
    return tuple(shape)


def _read_png_grey(path: Path) -> np.ndarray:
    """PNG as grey levels, float in 0..255, shape (H, W)."""
    from matplotlib import image as mpimg  # only explain reads pictures: keep the import off other paths

    try:
        pixels = mpimg.imread(path, format="png")
    except Exception as err:  # PIL raises several unrelated types for a bad file
        raise _error(path, f"not a readable PNG ({type(err).__name__}: {_cut(str(err))})") from None
    # matplotlib gives floats in 0..1 for PNGs; integer arrays would already be 0..255.
    pixels = pixels.astype(np.float64) * (255.0 if np.issubdtype(pixels.dtype, np.floating) else 1.0)
    if pixels.ndim == 3:
        if pixels.shape[2] in (2, 4):  # grey+alpha or RGBA: composite over black
            pixels = pixels[..., :-1] * (pixels[..., -1:] / 255.0)
        pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels[..., :3] @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(pixels), 0, 255)
