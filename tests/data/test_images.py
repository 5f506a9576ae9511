"""fmproto.data.images: the image file ``fmproto explain`` classifies, PNG or .npy, checked before decoding."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from fmproto.data.images import read_image_file

from conftest import raises_one_line

RNG = np.random.default_rng(3)
IMAGES_5x7 = RNG.integers(0, 256, size=(4, 5, 7), dtype=np.uint8)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_image_file_png_and_npy(tmp_path):
    import matplotlib.image as mpimg

    grey = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)
    mpimg.imsave(tmp_path / "grey.png", np.stack([grey] * 3, axis=-1))  # saved as RGBA, opaque
    got = read_image_file(tmp_path / "grey.png", (5, 7))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, grey)

    colour = np.zeros((5, 7, 4), np.uint8)
    colour[..., 0], colour[..., 3] = 255, 255  # pure red, opaque
    colour[0, 0, 3] = 0  # one transparent pixel: over black
    mpimg.imsave(tmp_path / "red.PNG", colour)
    expected = np.full((5, 7), 76, np.uint8)  # round(0.299 * 255)
    expected[0, 0] = 0
    np.testing.assert_array_equal(read_image_file(tmp_path / "red.PNG", (5, 7)), expected)

    np.save(tmp_path / "x.npy", grey.astype(np.int64))
    np.testing.assert_array_equal(read_image_file(tmp_path / "x.npy", (5, 7)), grey)


def test_read_image_file_errors(tmp_path):
    import matplotlib.image as mpimg

    png = tmp_path / "x.png"
    mpimg.imsave(png, np.zeros((32, 32, 3), np.uint8))
    raises_one_line(png, r"^{}: image is 32x32 but the dataset's images are 28x28$".format(png),
                    read_image_file, png, (28, 28))
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((1, 5, 7)))
    raises_one_line(npy, r"image is an array of shape \(1, 5, 7\) but the dataset's images are 5x7",
                    read_image_file, npy, (5, 7))
    np.save(npy, np.full((5, 7), 0.5))
    raises_one_line(npy, "whole numbers in 0..255", read_image_file, npy, (5, 7))
    raises_one_line(tmp_path / "no.png", "file not found", read_image_file, tmp_path / "no.png", (5, 7))
    jpg = write(tmp_path / "x.jpg", b"\xff\xd8")
    raises_one_line(jpg, r"unsupported image file type '.jpg' \(use .png or .npy\)", read_image_file, jpg, (5, 7))
    fake = write(tmp_path / "fake.png", b"not a png")
    raises_one_line(fake, r"not a readable PNG \(no PNG signature\)", read_image_file, fake, (5, 7))
    no_ihdr = write(tmp_path / "no_ihdr.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    raises_one_line(no_ihdr, "no IHDR chunk", read_image_file, no_ihdr, (5, 7))


def png_bytes(pixels: np.ndarray) -> bytes:
    """A grey 8-bit PNG written by hand: signature, IHDR, one zlib IDAT of filter-0 rows, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = pixels.shape
    rows = np.column_stack([np.zeros(height, np.uint8), pixels.astype(np.uint8)])  # filter byte 0 per row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + chunk(b"IEND", b""))


def test_read_image_file_refuses_a_png_carrying_a_large_chunk_before_reading_it(tmp_path, monkeypatch):
    """A 28x28 PNG with 2 MB of text in an ancillary chunk: refused from its size, never decoded."""
    pixels = RNG.integers(0, 256, size=(28, 28), dtype=np.uint8)
    plain = png_bytes(pixels)
    text = b"Comment\x00" + b"x" * (2 << 20)
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    ihdr_end = 8 + 25  # signature, then IHDR's length, type, 13 bytes and CRC
    bloated = write(tmp_path / "bloated.png", plain[:ihdr_end] + chunk + plain[ihdr_end:])
    np.testing.assert_array_equal(read_image_file(write(tmp_path / "plain.png", plain), (28, 28)), pixels)
    import matplotlib.image as mpimg

    monkeypatch.setattr(mpimg, "imread", lambda *args, **kwargs: pytest.fail("decoded"))
    raises_one_line(bloated, r"is 2,09\d,\d+ bytes, more than a PNG of a 28x28 image needs \(at most 1,0\d\d,\d+\); "
                    "not decoded", read_image_file, bloated, (28, 28))


def test_read_image_file_refuses_a_6000x6000_png_without_decoding(tmp_path, monkeypatch):
    import matplotlib.image as mpimg

    small = write(tmp_path / "small.png", png_bytes(IMAGES_5x7[0]))
    np.testing.assert_array_equal(read_image_file(small, (5, 7)), IMAGES_5x7[0])  # the writer is right
    huge = write(tmp_path / "huge.png", png_bytes(np.zeros((6000, 6000), np.uint8)))  # 36 M pixels in ~40 KB
    assert huge.stat().st_size < 100_000

    def imread(*args, **kwargs):
        raise AssertionError("the PNG was decoded")

    monkeypatch.setattr(mpimg, "imread", imread)
    raises_one_line(huge, r"^{}: image is 6000x6000 but the dataset's images are 28x28$".format(huge),
                    read_image_file, huge, (28, 28))
    wide = write(tmp_path / "wide.png", png_bytes(np.zeros((28, 29), np.uint8)))
    raises_one_line(wide, "image is 28x29 but the dataset's images are 28x28", read_image_file, wide, (28, 28))


def npy_header_only(path: Path, descr: str, shape: tuple) -> Path:
    """A .npy file with a header and no data: only a reader that trusts the header would allocate."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return path


def test_read_image_file_checks_the_npy_header_before_loading(tmp_path):
    huge = npy_header_only(tmp_path / "huge.npy", "<f8", (100_000, 100_000))  # 80 GB declared
    raises_one_line(huge, r"image is 100000x100000 but the dataset's images are 5x7$",
                    read_image_file, huge, (5, 7))
    cube = npy_header_only(tmp_path / "cube.npy", "|u1", (5, 7, 3))
    raises_one_line(cube, r"image is an array of shape \(5, 7, 3\) but", read_image_file, cube, (5, 7))
    for descr, name in (("|O", "object"), ("|b1", "bool"), ("<U3", "<U3"), ("<c16", "complex128")):
        path = npy_header_only(tmp_path / "odd.npy", descr, (5, 7))
        raises_one_line(path, rf"array has dtype {name}; expected numbers 0..255$", read_image_file, path, (5, 7))
    short = npy_header_only(tmp_path / "short.npy", "|u1", (5, 7))  # right header, no data
    raises_one_line(short, r"not a readable .npy file", read_image_file, short, (5, 7))
    bad = write(tmp_path / "bad.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz'}    ")
    raises_one_line(bad, r"not a readable .npy file", read_image_file, bad, (5, 7))
    v3 = write(tmp_path / "v3.npy", b"\x93NUMPY\x03\x00" + b"\x00" * 20)
    raises_one_line(v3, r"not a readable .npy file \(format version 3.0 is not supported\)",
                    read_image_file, v3, (5, 7))
