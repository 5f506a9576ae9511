"""Dataset readers: IDX and Kaggle-layout CSV files, and single images (PNG or .npy) to classify.

Readers validate at the boundary and raise ``DataError`` with one line naming the file and the problem.
"""

import gzip
import math
import os
import re
import zlib
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fmproto.checks import DataError
from fmproto.checks import data_error as _error
from fmproto.checks import require_file as _require_file

PathLike = str | os.PathLike

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
_INTEGER = re.compile(r"[+-]?\d+")


def _read_bytes(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise _error(path, "file not found") from None
    except OSError as err:
        raise _error(path, f"cannot read ({err.strerror})") from None


def _is_gzip(path: PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


# ---------------------------------------------------------------------------------------------------- IDX


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzipped or plain.

    Compression is detected from the first two bytes (``1f 8b``), not from the file name.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    ndarray of uint8, of the shape the header declares, e.g. ``(n, H, W)`` for idx3, ``(n,)`` for idx1.

    Raises
    ------
    DataError
        Missing or empty file, corrupt or truncated gzip, a magic number other than ``00 00 08 ndim``,
        a zero dimension, or a payload shorter or longer than the dimensions need.
    """
    raw = _read_bytes(path)
    if not raw:
        raise _error(path, "empty file")
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except _GZIP_ERRORS as err:
            raise _error(path, f"corrupt or truncated gzip ({err})") from None
        if not raw:
            raise _error(path, "empty file (after gunzip)")
    if len(raw) < 4:
        raise _error(path, f"{len(raw)} bytes is too short for an IDX header (4 bytes of magic)")
    if raw[:2] != b"\x00\x00":
        raise _error(path, f"not an IDX file: starts with 0x{raw[:2].hex().upper()}, expected 0x0000")
    type_code, ndim = raw[2], raw[3]
    if type_code != _IDX_UBYTE:
        raise _error(path, f"unsupported IDX type code 0x{type_code:02X} (only 0x08, unsigned byte, is supported)")
    if ndim == 0:
        raise _error(path, "IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise _error(path, f"truncated IDX header: {ndim} dimensions need {header_len} bytes, file has {len(raw)}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if 0 in dims:
        raise _error(path, f"IDX dimensions {_shape_text(dims)} include a 0")
    expected, actual = math.prod(dims), len(raw) - header_len
    if actual < expected:
        raise _error(path, f"truncated: dimensions {_shape_text(dims)} need {expected} data bytes, "
                     f"file has {actual}")
    if actual > expected:
        raise _error(path, f"{actual - expected} trailing bytes after the {expected} data bytes of "
                     f"dimensions {_shape_text(dims)}")
    # frombuffer over bytes is read-only; callers get an ordinary writable array.
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def read_idx_pair(images_path: PathLike, labels_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files.

    Returns
    -------
    images : ndarray of shape (n, H, W), uint8
    labels : ndarray of shape (n,), int64

    Raises
    ------
    DataError
        Anything ``read_idx`` rejects, images that are not 3-D, labels that are not 1-D, or counts
        that disagree (named on the labels file).
    """
    images = read_idx(images_path)
    if images.ndim != 3:
        raise _error(images_path, f"images must be 3-D (n, H, W) idx3 data; got {images.ndim}-D "
                     f"{_shape_text(images.shape)}")
    labels = read_idx(labels_path)
    if labels.ndim != 1:
        raise _error(labels_path, f"labels must be 1-D (n,) idx1 data; got {labels.ndim}-D "
                     f"{_shape_text(labels.shape)}")
    if len(labels) != len(images):
        raise _error(labels_path, f"{len(labels)} labels but {len(images)} images in {os.fspath(images_path)}")
    return images, labels.astype(np.int64)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# ---------------------------------------------------------------------------------------------------- CSV images


def read_csv_images(path: PathLike, image_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read images in the Kaggle CSV layout, plain or gzipped (detected from the first bytes).

    The header is exactly ``label,pixel1,...,pixelN``; every row holds a label and N integer
    pixels in 0..255, row-major.

    Parameters
    ----------
    path : str or PathLike
    image_shape : (H, W), optional
        Needed when N is not a square; ``H * W`` must equal N. Without it, ``H = W = sqrt(N)``.

    Returns
    -------
    images : ndarray of shape (n, H, W), uint8
    labels : ndarray of shape (n,), int64

    Raises
    ------
    DataError
        One line naming the file and, for a bad row, the 1-based data row, its file line and the
        column: empty file, missing or wrong header, no data rows, a row with missing or extra
        cells, a cell that is not an integer, a pixel outside 0..255, N not a square without
        ``image_shape``, or ``image_shape`` not matching N.
    """
    path = _require_file(path)
    gz = _is_gzip(path)
    header, first_row = _csv_first_lines(path, gz)
    names = _check_csv_header(path, header)
    n_pixels = len(names) - 1
    shape = _csv_image_shape(path, n_pixels, image_shape)
    if first_row is None:
        raise _error(path, "header but no data rows")
    if len(first_row.split(",")) != len(names):
        # pandas sizes the table from the first row, so a bad first row must be caught before it.
        raise _csv_row_error(path, names, 1)

    try:
        frame = pd.read_csv(path, header=None, skiprows=1, skip_blank_lines=False, low_memory=False,
                            compression="gzip" if gz else None, encoding="utf-8")
    except pd.errors.ParserError as err:
        # "Expected 785 fields in line 7, saw 786": line numbers count the header as line 1.
        line = re.search(r"line (\d+)", str(err))
        if line is None:
            raise _error(path, f"not readable as CSV ({err})") from None
        raise _csv_row_error(path, names, int(line.group(1)) - 1) from None
    except _GZIP_ERRORS as err:
        raise _error(path, f"corrupt or truncated gzip ({err})") from None
    except UnicodeDecodeError:
        raise _error(path, "not a text CSV file (invalid UTF-8)") from None

    if all(pd.api.types.is_integer_dtype(dtype) for dtype in frame.dtypes):
        values = frame.to_numpy(np.int64)
        bad = np.zeros(values.shape, dtype=bool)
    else:
        # Short rows, empty cells and text turn columns into float or string; coerce and flag them.
        values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = ~(values == np.round(values))  # NaN compares unequal, so missing and text cells are bad
    pixels = values[:, 1:]
    bad[:, 1:] |= (pixels < 0) | (pixels > 255)
    bad_rows = np.flatnonzero(bad.any(axis=1))
    if bad_rows.size:
        raise _csv_row_error(path, names, int(bad_rows[0]) + 1)
    images = pixels.astype(np.uint8).reshape(len(values), *shape)
    return images, values[:, 0].astype(np.int64)


def _open_text(path: Path, gz: bool):
    # utf-8-sig drops the byte-order mark some spreadsheet exports put before "label".
    return gzip.open(path, "rt", encoding="utf-8-sig") if gz else open(path, encoding="utf-8-sig")


def _csv_first_lines(path: Path, gz: bool) -> tuple[str, str | None]:
    """The header line and the first data line (None if there is none), without line endings."""
    try:
        with _open_text(path, gz) as f:
            lines = [line.rstrip("\r\n") for line in islice(f, 2)]
    except _GZIP_ERRORS as err:
        raise _error(path, f"corrupt or truncated gzip ({err})") from None
    except UnicodeDecodeError:
        raise _error(path, "not a text CSV file (invalid UTF-8)") from None
    if not lines or (len(lines) == 1 and not lines[0].strip()):
        raise _error(path, "empty file")
    return lines[0], (lines[1] if len(lines) == 2 else None)


def _check_csv_header(path: Path, header: str) -> list[str]:
    names = [cell.strip().strip('"') for cell in header.split(",")]
    if _INTEGER.fullmatch(names[0]):
        raise _error(path, f"missing header: line 1 starts with the number {names[0]}; "
                     "expected 'label,pixel1,...,pixelN'")
    if len(names) < 2:
        raise _error(path, f"header {header!r} has no pixel columns; expected 'label,pixel1,...,pixelN'")
    expected = ["label"] + [f"pixel{j}" for j in range(1, len(names))]
    for column, (name, want) in enumerate(zip(names, expected), start=1):
        if name != want:
            raise _error(path, f"header column {column} is {name!r}, expected {want!r} "
                         "(layout 'label,pixel1,...,pixelN')")
    return names


def _csv_image_shape(path: Path, n_pixels: int, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    if image_shape is not None:
        shape = _check_image_shape(image_shape)
        if math.prod(shape) != n_pixels:
            raise _error(path, f"image_shape {_shape_text(shape)} needs {math.prod(shape)} pixel columns "
                         f"but the header has {n_pixels}")
        return shape
    side = math.isqrt(n_pixels)
    if side * side != n_pixels:
        raise _error(path, f"{n_pixels} pixel columns is not a square number; give image_shape (height, width)")
    return side, side


def _check_image_shape(image_shape) -> tuple[int, int]:
    shape = tuple(image_shape)
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f"image_shape must be (height, width) of positive ints; got {image_shape!r}")
    return int(shape[0]), int(shape[1])


def _csv_row_error(path: Path, names: list[str], row: int) -> DataError:
    """Say exactly what is wrong with 1-based data row ``row``, reading only that line again.

    The vectorised pass only knows which row failed; the first bad cell is found on its raw text.
    """
    with _open_text(path, _is_gzip(path)) as f:
        line = next(islice(f, row, row + 1), "").rstrip("\r\n")
    where = f"row {row} (line {row + 1})"
    if not line.strip():
        return _error(path, f"{where} is blank; expected {len(names)} cells")
    cells = line.split(",")
    if len(cells) != len(names):
        kind = "missing" if len(cells) < len(names) else "extra"
        return _error(path, f"{where} has {len(cells)} cells, expected {len(names)} "
                      f"(label + {len(names) - 1} pixels): {kind} cells")
    for name, cell in zip(names, cells):
        text = cell.strip().strip('"')
        if not _INTEGER.fullmatch(text):
            return _error(path, f"{where}, column {name}: {cell!r} is not an integer")
        if name != "label" and not 0 <= int(text) <= 255:
            return _error(path, f"{where}, column {name}: pixel {int(text)} outside 0..255")
    return _error(path, f"{where} could not be read as integers")


# ---------------------------------------------------------------------------------------------------- datasets


def find_dataset(directory: PathLike) -> dict:
    """Locate a dataset in ``directory``: the four IDX files, or else one train and one test CSV.

    IDX files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``, each plain or with ``.gz``. CSVs are the one file whose name
    contains ``train`` and the one containing ``test`` (case-insensitive), ending ``.csv`` or ``.csv.gz``.

    Returns
    -------
    dict
        ``{"format": "idx", "train": (images_path, labels_path), "test": (images_path, labels_path)}``
        or ``{"format": "csv", "train": path, "test": path}``, with ``Path`` values.

    Raises
    ------
    DataError
        The folder is missing, holds neither layout, holds only part of the IDX set (the missing
        names are listed) or a file both plain and gzipped, or several CSV candidates for a split.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise _error(directory, "dataset folder not found" if not directory.exists() else "not a folder")

    found_idx, missing = {}, []
    for base in (name for pair in IDX_NAMES.values() for name in pair):
        present = [p for p in (directory / base, directory / f"{base}.gz") if p.is_file()]
        if len(present) == 2:
            raise _error(directory, f"both {base} and {base}.gz are present; keep one")
        if present:
            found_idx[base] = present[0]
        else:
            missing.append(f"{base}[.gz]")
    if found_idx and missing:
        raise _error(directory, f"incomplete IDX dataset: missing {', '.join(missing)}")
    if found_idx:
        return {"format": "idx", **{split: tuple(found_idx[n] for n in names) for split, names in IDX_NAMES.items()}}

    csvs = sorted(p for p in directory.iterdir() if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz")))
    candidates = {split: [p for p in csvs if split in p.name.lower()] for split in ("train", "test")}
    if not csvs or not any(candidates.values()):
        raise _error(directory, "no dataset found: expected the four IDX files "
                     f"({', '.join(n for pair in IDX_NAMES.values() for n in pair)}, each [.gz]) "
                     "or one *train*.csv and one *test*.csv (or .csv.gz)")
    for split, paths in candidates.items():
        if not paths:
            raise _error(directory, f"no *{split}*.csv (or .csv.gz) next to {_paths_text(csvs)}")
        if len(paths) > 1:
            raise _error(directory, f"several {split} CSV candidates: {_paths_text(paths)}; keep one")
    if candidates["train"][0] == candidates["test"][0]:
        raise _error(candidates["train"][0], "name matches both *train* and *test*; rename it")
    return {"format": "csv", "train": candidates["train"][0], "test": candidates["test"][0]}


def _paths_text(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths)


def read_dataset_split(
    found: dict, split: Literal["train", "test"], image_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of a dataset located by ``find_dataset``.

    Parameters
    ----------
    found : dict
        As returned by ``find_dataset``.
    split : {"train", "test"}
    image_shape : (H, W), optional
        Needed for CSVs with non-square images. IDX files carry their own shape; when given,
        it must agree with it.

    Returns
    -------
    images : ndarray of shape (n, H, W), uint8
    labels : ndarray of shape (n,), int64
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if found.get("format") == "csv":
        return read_csv_images(found[split], image_shape)
    if found.get("format") != "idx":
        raise ValueError(f"found['format'] must be 'idx' or 'csv'; got {found.get('format')!r}")
    images, labels = read_idx_pair(*found[split])
    if image_shape is not None and images.shape[1:] != _check_image_shape(image_shape):
        raise _error(found[split][0], f"images are {_shape_text(images.shape[1:])} but image_shape is "
                     f"{_shape_text(_check_image_shape(image_shape))}")
    return images, labels


def check_labels(labels: np.ndarray, n_classes: int, source: PathLike) -> None:
    """Raise ``DataError`` naming ``source`` unless every label is an integer in ``0..n_classes - 1``.

    Parameters
    ----------
    labels : ndarray of shape (n,)
    n_classes : int
    source : str or PathLike
        The file the labels came from, for the message.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise _error(source, f"labels must be 1-D integers; got {labels.dtype} of shape {labels.shape}")
    outside = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if outside.size:
        first = outside[0]
        raise _error(source, f"label {labels[first]} outside the {n_classes} classes (0..{n_classes - 1}) "
                     f"at index {first}; {outside.size} labels out of range")


# ---------------------------------------------------------------------------------------------------- images


def read_image_file(path: PathLike, image_shape: tuple[int, int]) -> np.ndarray:
    """Read one image to classify: a PNG or a ``.npy`` array.

    PNGs are read with ``matplotlib.image.imread``; colour is turned to grey with the ITU-R 601
    luma weights (as PIL's ``"L"`` mode), and alpha composites over black, the Fashion-MNIST
    background. ``.npy`` arrays must hold whole numbers in 0..255.

    Parameters
    ----------
    path : str or PathLike
        Ending ``.png`` or ``.npy`` (any case).
    image_shape : (H, W)
        The dataset's image size; the file must match it.

    Returns
    -------
    ndarray of shape (H, W), uint8
    """
    path = _require_file(path)
    shape = _check_image_shape(image_shape)
    suffix = path.suffix.lower()
    if suffix == ".png":
        image = _read_png_grey(path)
    elif suffix == ".npy":
        try:
            image = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise _error(path, f"not a readable .npy file ({err})") from None
        if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
            raise _error(path, f"array has dtype {image.dtype}; expected numbers 0..255")
        if image.size and not (np.all(image == np.round(image)) and image.min() >= 0 and image.max() <= 255):
            raise _error(path, "array values must be whole numbers in 0..255")
    else:
        raise _error(path, f"unsupported image file type {path.suffix!r} (use .png or .npy)")
    if image.shape != shape:
        size = _shape_text(image.shape) if image.ndim == 2 else f"an array of shape {image.shape}"
        raise _error(path, f"image is {size} but the dataset's images are {_shape_text(shape)}")
    return image.astype(np.uint8)


def _read_png_grey(path: Path) -> np.ndarray:
    """PNG as grey levels, float in 0..255, shape (H, W)."""
    from matplotlib import image as mpimg  # only the explain CLI reads pictures; keep import light

    try:
        pixels = mpimg.imread(path, format="png")
    except Exception as err:  # PIL raises several unrelated types for a bad file
        raise _error(path, f"not a readable PNG ({type(err).__name__}: {err})") from None
    # matplotlib gives floats in 0..1 for PNGs; integer arrays would already be 0..255.
    scale = 255.0 if np.issubdtype(pixels.dtype, np.floating) else 1.0
    pixels = pixels.astype(np.float64) * scale
    if pixels.ndim == 3:
        if pixels.shape[2] in (2, 4):  # grey+alpha or RGBA: composite over black
            pixels = pixels[..., :-1] * (pixels[..., -1:] / 255.0)
        pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels[..., :3] @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(pixels), 0, 255)


def read_dataset(
    directory: PathLike, n_classes: int, image_shape: tuple[int, int] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of the dataset in ``directory``: ``{"train": (images, labels), "test": (images, labels)}``.

    Labels are checked against ``n_classes`` (named on the file they came from) and the two splits
    must share one image shape.
    """
    found = find_dataset(directory)
    splits = {}
    for name in ("train", "test"):
        images, labels = read_dataset_split(found, name, image_shape=image_shape)
        check_labels(labels, n_classes, source=found[name][-1] if found["format"] == "idx" else found[name])
        splits[name] = (images, labels)
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise _error(directory, f"train images are {_shape_text(splits['train'][0].shape[1:])} "
                     f"but test images are {_shape_text(splits['test'][0].shape[1:])}")
    return splits
