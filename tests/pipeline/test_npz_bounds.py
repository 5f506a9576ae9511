"""Bounded memory for the .npz files a user hands over: shapes read from the headers, nothing inflated past a bound.

The bombs are written here as real zips. ``real_bomb``: a crafted .npy header, then 1.6 GB of zeros as
one deflate stream of independently flushed 1 MiB blocks (so it costs 1.6 MB of disk and no 1.6 GB
buffer to make), with its true CRC: ``numpy.load`` would inflate it whole and accept it. A
``declared`` member holds only its header but declares the size that header needs: a reader that
allocated by the header would ask for all of it. Peak memory is measured with tracemalloc, which
counts numpy's buffers.
"""

import io as stdio
import shutil
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import raises_one_line
from fmproto.pipeline import io
from fmproto.pipeline.checks import DataError
from fmproto.pipeline import inputs
from fmproto.cli import main as cli
from stages import evaluate_valid
from test_stage_inputs import assert_one_line_failure, evaluate_valid_args, run_stage, workspace, write_params  # noqa: F401

BOMB_SHAPE = (2_000_000, 200)  # float32: 1.6 GB
SMALL_PEAK = 64 * 1024**2  # what a refusal may cost at most (imports included); the bombs are 25 times more


def npy_header(shape: tuple, dtype=np.float32) -> bytes:
    buffer = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def deflated(data: bytes) -> tuple[bytes, int, int]:
    """A zip member's raw deflate stream, CRC-32 and uncompressed size."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush(), zlib.crc32(data), len(data)


def deflated_zeros(header: bytes, n_zeros: int) -> tuple[bytes, int, int]:
    """``header`` then ``n_zeros`` zero bytes, deflated without ever holding them: a full flush resets the
    compressor, so every 1 MiB block of zeros compresses to the same bytes, written once and repeated."""
    block = 1 << 20
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = z.compress(header) + z.flush(zlib.Z_FULL_FLUSH)
    segment = z.compress(bytes(block)) + z.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(n_zeros, block)
    stream = head + segment * full + z.compress(bytes(rest)) + z.flush()
    crc, zeros = zlib.crc32(header), memoryview(bytes(1 << 24))
    for start in range(0, n_zeros, len(zeros)):
        crc = zlib.crc32(zeros[: min(len(zeros), n_zeros - start)], crc)
    return stream, crc, len(header) + n_zeros


def declared(header: bytes, n_bytes: int) -> tuple[bytes, int, int]:
    """A member holding only ``header`` that declares ``n_bytes`` of data after it."""
    stream, crc, _ = deflated(header)
    return stream, crc, len(header) + n_bytes


def write_zip(path: Path, members: dict[str, tuple[bytes, int, int]]) -> Path:
    """A zip of deflated members (name -> stream, CRC, uncompressed size), headers written by hand."""
    body, directory = bytearray(), bytearray()
    for name, (stream, crc, size) in members.items():
        assert size < 2**32, "no zip64 here"
        raw = name.encode()
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(stream), size,
                                 len(raw), 0, 0, 0, 0, 0, len(body)) + raw
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(stream), size, len(raw), 0)
        body += raw + stream
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory) + end)
    return path


def members_of(path: Path, **replace: tuple[bytes, int, int]) -> dict[str, tuple[bytes, int, int]]:
    """Every member of a real ``.npz``, deflated, with some replaced or added (names without .npy)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: deflated(archive.read(name)) for name in archive.namelist()}
    members.update({f"{name}.npy": member for name, member in replace.items()})
    return members


def peak(call, *args) -> int:
    """Peak traced bytes while ``call(*args)`` runs (its exception propagates)."""
    tracemalloc.start()
    try:
        call(*args)
    finally:
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak_bytes


@pytest.fixture(scope="module")
def real_bomb() -> tuple[bytes, int, int]:
    """The 1.6 GB member: float32 ``BOMB_SHAPE``, all zeros (made once: its CRC takes a second)."""
    return deflated_zeros(npy_header(BOMB_SHAPE), int(np.prod(BOMB_SHAPE)) * 4)


def test_the_bomb_is_real(tmp_path, real_bomb):
    path = write_zip(tmp_path / "bomb.npz", {"train.npy": real_bomb})
    assert path.stat().st_size < 2_000_000
    with zipfile.ZipFile(path) as archive:  # zipfile itself reads it as a 1.6 GB member of an .npz
        (info,) = archive.infolist()
        assert info.file_size == 1_600_000_000 + len(npy_header(BOMB_SHAPE))
        with archive.open(info) as member:
            assert np.lib.format.read_magic(member) == (1, 0)
            assert np.lib.format.read_array_header_1_0(member)[0] == BOMB_SHAPE
            member.read(50 << 20)  # a slice of the body inflates to zeros
    assert io.array_headers(path) == {"train": (BOMB_SHAPE, np.dtype(np.float32))}


def test_load_arrays_refuses_a_bomb_before_inflating_it(tmp_path, real_bomb):
    path = write_zip(tmp_path / "bomb.npz", {"train.npy": real_bomb})
    message = []
    used = peak(lambda: message.append(raises_one_line(path, "1,600,000,000 bytes, more than the 100,000,000 "
                                                       "expected of this file; not inflated",
                                                       io.load_arrays, path, max_bytes=10**8)))
    assert message and used < SMALL_PEAK, used
    assert peak(io.array_headers, path) < SMALL_PEAK


def test_a_bomb_as_features_is_refused_from_its_header(workspace, tmp_path, real_bomb, capsys):
    """The measured case: a 1.5 MB deflated --features for fmproto explain inflated to 1.6 GB before it was refused."""
    bomb = write_zip(tmp_path / "features.npz", members_of(workspace / "features.npz", train=real_bomb))
    assert bomb.stat().st_size < 2_000_000
    out = tmp_path / "why.png"
    args = ["explain", "3", "--params", write_params(tmp_path / "params.yaml", workspace / "raw"),
            "--train", workspace / "train.npz", "--test", workspace / "test.npz", "--split", workspace / "split.npz",
            "--features", bomb, "--out", out]
    code = []
    used = peak(lambda: code.append(run_stage(cli, args, capsys)))
    assert_one_line_failure(*code[0], f"fmproto explain: error: {bomb}: train features must be (600, n_features), a "
                            f"row per image of {workspace / 'train.npz'}; got (2000000, 200)")
    assert used < SMALL_PEAK, used
    assert not out.exists()


def test_features_over_what_the_stage_writes_are_refused(workspace, tmp_path, capsys):
    width = 1_000_000  # 600 + 160 rows of float32: 3 GB, over the 2.1 GB the features stage may write
    bomb = write_zip(tmp_path / "features.npz", members_of(
        workspace / "features.npz", train=declared(npy_header((600, width)), 600 * width * 4),
        test=declared(npy_header((160, width)), 160 * width * 4), augmented=deflated(npy_header((0, width))),
        test_shifted=deflated(npy_header((0, width)))))
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code = []
    used = peak(lambda: code.append(run_stage(evaluate_valid, evaluate_valid_args(workspace, tmp_path / "out", params,
                                                                                  features=bomb), capsys)))
    assert_one_line_failure(*code[0], f"{bomb}: its features would take 3.0 GB, over the 2.1 GB the features stage "
                            "writes; not loaded")
    assert used < SMALL_PEAK, used


def test_shifted_test_features_of_another_shape_are_refused(workspace, tmp_path, capsys):
    with np.load(workspace / "features.npz") as saved:
        n_test, width = saved["test"].shape
    odd = write_zip(tmp_path / "features.npz", members_of(
        workspace / "features.npz", test_shifted=deflated(npy_header((3 * n_test, width)) + bytes(3 * n_test * width * 4))))
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code = run_stage(evaluate_valid, evaluate_valid_args(workspace, tmp_path / "out", params, features=odd), capsys)
    assert_one_line_failure(*code, f"{odd}: test_shifted features must be (0 or 4 x {n_test:,}, {width:,}), the "
                            f"test images' one-pixel shifts; got ({3 * n_test}, {width})")


def test_augment_flags_that_do_not_match_the_copies_are_refused(workspace, tmp_path, capsys):
    with np.load(workspace / "features.npz") as saved:
        n_train, n_test, copies = len(saved["train"]), len(saved["test"]), len(saved["augmented"])
        assert not saved["augment_flags"].any()  # the raw workspace: no copies
    odd = write_zip(tmp_path / "features.npz", members_of(
        workspace / "features.npz", augment_flags=deflated(npy_header((2,), bool) + bytes([1, 0]))))
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code = run_stage(evaluate_valid, evaluate_valid_args(workspace, tmp_path / "out", params, features=odd), capsys)
    assert_one_line_failure(*code, f"{odd}: augment_flags say shifts True, flip False, but it holds {copies:,} "
                            f"augmented and 0 test_shifted rows for {n_train:,} training and {n_test:,} test images")


def test_a_state_array_past_the_bound_is_refused(workspace, tmp_path, capsys):
    bomb = write_zip(tmp_path / "features.npz", members_of(
        workspace / "features.npz", state_pca_components=declared(npy_header((60_000, 10_000)), 2_400_000_000)))
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code = []
    used = peak(lambda: code.append(run_stage(evaluate_valid, evaluate_valid_args(workspace, tmp_path / "out", params,
                                                                                  features=bomb), capsys)))
    assert_one_line_failure(*code[0], f"{bomb}: its arrays would take", "expected of this file; not inflated")
    assert used < SMALL_PEAK, used


@pytest.mark.parametrize("flag, shapes, fragment", [
    ("train", {"images": ((5_000_000, 28, 28), np.uint8), "labels": ((5_000_000,), np.int64)},
     "its 5,000,000 images of 28x28 would take 3.9 GB, more than ingest writes (0.5 GB); not loaded"),
    ("train", {"images": ((600, 10, 12, 1), np.uint8)}, "images must be (n, H, W) with one label each"),
    ("split", {"train": ((10**8,), np.int64)}, "train must be 1-D indices, at most one per image of"),
])
def test_datasets_and_splits_are_checked_from_their_headers(workspace, tmp_path, capsys, flag, shapes, fragment):
    bomb = write_zip(tmp_path / f"{flag}.npz", members_of(workspace / f"{flag}.npz", **{
        name: declared(npy_header(shape, dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
        for name, (shape, dtype) in shapes.items()}))
    params = write_params(tmp_path / "params.yaml", workspace / "raw")
    code = []
    used = peak(lambda: code.append(run_stage(evaluate_valid, evaluate_valid_args(workspace, tmp_path / "out", params,
                                                                                  **{flag: bomb}), capsys)))
    assert_one_line_failure(*code[0], f"{bomb}: {fragment}")
    assert used < SMALL_PEAK, used


def test_a_member_must_hold_what_its_header_says(tmp_path):
    header = npy_header((1000,), np.uint8)
    short = write_zip(tmp_path / "short.npz", {"x.npy": deflated(header + bytes(10))})
    raises_one_line(short, r"array 'x' is stored as 138 bytes but its header says \(1000,\) of uint8 "
                    r"\(1,128 bytes\); not inflated", io.load_arrays, short)
    long = write_zip(tmp_path / "long.npz", {"x.npy": deflated(header + bytes(5000))})
    raises_one_line(long, "array 'x' is stored as", io.array_headers, long)
    # A member that declares the right size but whose stream ends early: not an array, one line.
    cut = write_zip(tmp_path / "cut.npz", {"x.npy": declared(header, 1000)})
    raises_one_line(cut, "not a readable .npz file", io.load_arrays, cut)


def test_members_that_are_not_plain_arrays_are_refused(tmp_path):
    notes = write_zip(tmp_path / "notes.npz", {"x.npy": deflated(npy_header((2,), np.uint8) + b"\x01\x02"),
                                               "notes.txt": deflated(b"hello")})
    raises_one_line(notes, "holds 'notes.txt', which is not an .npy array", io.load_arrays, notes)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    raises_one_line(pickled, "array 'x' holds Python objects, which would need pickle", io.load_arrays, pickled)
    newer = write_zip(tmp_path / "newer.npz", {"x.npy": deflated(b"\x93NUMPY\x03\x00" + npy_header((2,))[8:])})
    raises_one_line(newer, "array 'x' has .npy format version 3.0; expected 1.0 or 2.0", io.load_arrays, newer)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_load_arrays_reads_what_numpy_reads(tmp_path, save):
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), "fortran": np.asfortranarray(rng.normal(size=(4, 6))),
              "empty": np.zeros((0, 9), np.float32), "scalar": np.float64(2.5), "names": np.array(["a", "bcd"]),
              "record": np.array("f" * 64), "flags": np.array([True, False]), "big_endian": np.arange(5, dtype=">i4")}
    save(tmp_path / "a.npz", **arrays)
    with np.load(tmp_path / "a.npz") as expected:
        reference = {name: expected[name] for name in expected.files}
    got = io.load_arrays(tmp_path / "a.npz", max_bytes=sum(a.nbytes for a in reference.values()))
    assert got.keys() == reference.keys()
    for name, value in reference.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        np.testing.assert_array_equal(got[name], value)
    assert io.array_headers(tmp_path / "a.npz") == {name: (v.shape, v.dtype) for name, v in reference.items()}
    with pytest.raises(DataError, match="more than the"):
        io.load_arrays(tmp_path / "a.npz", max_bytes=sum(a.nbytes for a in reference.values()) - 1)


def test_the_dataset_bound_is_what_ingest_writes():
    from fmproto.data import datasets

    assert inputs.MAX_IMAGE_BYTES == datasets.MAX_DATA_BYTES


def test_a_copy_of_a_good_file_still_loads(workspace, tmp_path):
    """The bounds leave every file the stages write readable (and refuse nothing of the workspace)."""
    shutil.copy(workspace / "features.npz", tmp_path / "features.npz")
    train, test = inputs.load_dataset(workspace / "train.npz"), inputs.load_dataset(workspace / "test.npz")
    split = inputs.load_split(workspace / "split.npz", train)
    feats = inputs.load_features(tmp_path / "features.npz", train, split, test)
    with np.load(workspace / "features.npz") as expected:
        for name in expected.files:
            np.testing.assert_array_equal(feats[name], expected[name])
