"""fmproto.data.download: checksums of decompressed content, the order of sources, bounded reads, and the
fetch stage's canonical output and one-line errors.

The real files come from the session fixture ``fashion_dir`` (data/raw, verified there); every test
works on copies in ``tmp_path``. The URL source is served by a local HTTP server on 127.0.0.1.
"""

import functools
import gzip
import http.server
import io
import re
import shutil
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from fmproto.data import download
from fmproto.data.download import FILES, GZ_SIZE, SHA256, SIZE, FetchError

LABELS = "t10k-labels-idx1-ubyte.gz"  # the smallest file (5 KB): the one to damage


def _copy_real(fashion_dir: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(fashion_dir / name, folder / name)
    return folder


def _corrupt(path: Path) -> None:
    """Change one byte of the decompressed payload (past the IDX header) and gzip it again."""
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[100] ^= 0x01
    path.write_bytes(gzip.compress(bytes(payload)))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part")) if folder.exists() else []


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serving(folder: Path):
    """Serve ``folder`` over HTTP on 127.0.0.1 from a thread; yield its base URL."""
    return _serving_with(functools.partial(_QuietHandler, directory=str(folder)))


@contextmanager
def _serving_with(handler):
    """Run an HTTP server with ``handler`` on 127.0.0.1 from a thread; yield its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def real_copy(fashion_dir, tmp_path) -> Path:
    return _copy_real(fashion_dir, tmp_path / "real")


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")


# --- content_sha256 and verify ---------------------------------------------------------------


def test_verify_passes_on_real_files(fashion_dir):
    download.verify(fashion_dir)
    assert download.content_sha256(fashion_dir / LABELS) == SHA256[LABELS]


def test_regzipped_copies_still_verify(fashion_dir, tmp_path):
    for name in FILES:
        payload = gzip.decompress((fashion_dir / name).read_bytes())
        with open(tmp_path / name, "wb") as raw:  # another stored file name, mtime and level
            with gzip.GzipFile(filename="other-name", mode="wb", fileobj=raw, compresslevel=1, mtime=1) as gz:
                gz.write(payload)
    assert (tmp_path / LABELS).read_bytes() != (fashion_dir / LABELS).read_bytes()
    download.verify(tmp_path)


def test_plain_file_is_hashed_as_is(fashion_dir, tmp_path):
    plain = tmp_path / LABELS.removesuffix(".gz")
    plain.write_bytes(gzip.decompress((fashion_dir / LABELS).read_bytes()))
    assert download.content_sha256(plain) == SHA256[LABELS]


def test_gunzipped_files_in_the_folder_verify(real_copy):
    for name in ("train-labels-idx1-ubyte.gz", LABELS):
        path = real_copy / name
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    download.verify(real_copy)
    assert download.fetch_fashion_mnist(real_copy, system_dir=real_copy / "none", use_apt=False, urls=()) == real_copy
    assert not (real_copy / LABELS).exists()  # the gunzipped copy counts; nothing fetched beside it


def test_corrupted_file_fails_naming_it(real_copy):
    _corrupt(real_copy / LABELS)
    expected = rf"{LABELS}: decompressed content has sha256 [0-9a-f]{{64}}, expected {SHA256[LABELS]}$"
    with pytest.raises(FetchError, match=expected):
        download.verify(real_copy)


def test_missing_file_is_named(real_copy):
    (real_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FetchError, match=r"train-labels-idx1-ubyte.gz: missing"):
        download.verify(real_copy)


def test_truncated_gzip_is_a_fetch_error(real_copy):
    path = real_copy / LABELS
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(FetchError, match=rf"{LABELS}: cannot be read"):
        download.verify(real_copy)


# --- bounded reads: gzip bombs and oversized downloads ----------------------------------------------


def _zeros_gzip(n_members: int, member_size: int = 16 * 1024**2) -> bytes:
    """``n_members * member_size`` zero bytes as concatenated gzip members (one valid gzip, ~1000:1)."""
    return gzip.compress(bytes(member_size), compresslevel=9, mtime=0) * n_members


class _CountingGzip:
    """Wraps ``gzip.open`` and counts the decompressed bytes handed out, per file name."""

    def __init__(self):
        self.n_bytes: dict[str, int] = {}
        self._open = gzip.open

    def __call__(self, path, *args, **kwargs):
        f = self._open(path, *args, **kwargs)
        read, name = f.read, Path(path).name
        self.n_bytes[name] = 0

        def counted(size=-1):
            chunk = read(size)
            self.n_bytes[name] += len(chunk)
            return chunk

        f.read = counted
        return f


def test_sizes_are_those_of_the_real_files(fashion_dir):
    for name in FILES:
        assert len(gzip.decompress((fashion_dir / name).read_bytes())) == SIZE[name]
        assert 0 < GZ_SIZE[name] - (fashion_dir / name).stat().st_size < download.max_download(name)


def test_gzip_bomb_in_the_folder_is_a_mismatch_read_only_past_its_size(real_copy, monkeypatch):
    """1 GiB of zeros behind the real labels' content: reported after SIZE + 1 bytes, not inflated."""
    real = gzip.decompress((real_copy / LABELS).read_bytes())
    (real_copy / LABELS).write_bytes(gzip.compress(real, mtime=0) + _zeros_gzip(64))
    assert (real_copy / LABELS).stat().st_size < 2_000_000
    counting = _CountingGzip()
    monkeypatch.setattr(download.gzip, "open", counting)
    expected = rf"{LABELS}: decompressed content is over the 10,008 bytes of {LABELS}; not read further$"
    with pytest.raises(FetchError, match=expected):
        download.verify(real_copy)
    assert counting.n_bytes[LABELS] == SIZE[LABELS] + 1
    with pytest.raises(download.ContentTooLarge, match=r"over 5 bytes; not read further"):
        download.content_sha256(real_copy / LABELS, max_size=5)


def test_plain_file_too_large_is_a_mismatch(fashion_dir, tmp_path):
    big = tmp_path / LABELS.removesuffix(".gz")
    big.write_bytes(gzip.decompress((fashion_dir / LABELS).read_bytes()) + b"\x00")
    with pytest.raises(FetchError, match="decompressed content is over the 10,008 bytes"):
        download.write_content(big, LABELS, io.BytesIO())


class _EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with zeros and no Content-Length, until the client hangs up (or 64 MB)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        try:
            for _ in range(1024):
                self.wfile.write(bytes(64 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args) -> None:
        pass


def _all_but_labels(real_copy: Path, target: Path) -> Path:
    target.mkdir()
    for name in FILES:
        if name != LABELS:
            shutil.copyfile(real_copy / name, target / name)
    return target


def test_download_without_length_stops_past_the_expected_size(real_copy, tmp_path):
    target = _all_but_labels(real_copy, tmp_path / "target")
    limit = download.max_download(LABELS)
    assert GZ_SIZE[LABELS] < limit <= GZ_SIZE[LABELS] + 64 * 1024 + GZ_SIZE[LABELS] // 20
    with _serving_with(_EndlessHandler) as url:
        with pytest.raises(FetchError, match=rf"^{LABELS} from {url}: download passed the {limit:,} bytes "
                                             rf"allowed \(the official file has 5,148\); stopped$"):
            download.fetch_fashion_mnist(target, system_dir=tmp_path / "none", use_apt=False, urls=(url,))
    assert _leftovers(target) == [] and not (target / LABELS).exists()


def test_download_with_too_large_content_length_is_refused_before_reading(real_copy, tmp_path):
    target = _all_but_labels(real_copy, tmp_path / "target")
    served = tmp_path / "served"
    served.mkdir()
    (served / LABELS).write_bytes(bytes(1_000_000))
    with _serving(served) as url:
        with pytest.raises(FetchError, match=rf"^{LABELS} from {url}: Content-Length 1,000,000 bytes is over the "
                                             rf"{download.max_download(LABELS):,} allowed .*not downloaded$"):
            download.fetch_fashion_mnist(target, system_dir=tmp_path / "none", use_apt=False, urls=(url,))
    assert _leftovers(target) == [] and not (target / LABELS).exists()


# --- fetch_fashion_mnist: order of sources ----------------------------------------------------


def test_present_but_mismatched_stops_instead_of_fetching(real_copy, tmp_path):
    target = _copy_real(real_copy, tmp_path / "target")
    _corrupt(target / LABELS)
    damaged = (target / LABELS).read_bytes()
    with pytest.raises(FetchError, match=rf"{LABELS}: .*never replaces existing files"):
        download.fetch_fashion_mnist(target, system_dir=real_copy, use_apt=False, urls=())
    assert (target / LABELS).read_bytes() == damaged


def test_system_dir_is_copied_into_an_empty_directory(real_copy, tmp_path):
    target = tmp_path / "new" / "raw"
    lines = []
    assert download.fetch_fashion_mnist(target, system_dir=real_copy, use_apt=False, urls=(), log=lines.append) == target
    download.verify(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert lines == [f"getting 4 Fashion-MNIST file(s) from {real_copy}"]


def test_only_missing_files_are_fetched_and_present_ones_kept(real_copy, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    shutil.copyfile(real_copy / LABELS, target / LABELS)
    inode = (target / LABELS).stat().st_ino
    _, origin = download.fetch_with_origin(target, system_dir=real_copy, use_apt=False, urls=())
    assert origin == f"1 already present, 3 from {real_copy}"
    assert (target / LABELS).stat().st_ino == inode
    download.verify(target)


def test_url_source_downloads_after_an_unreachable_one(real_copy, tmp_path):
    target = tmp_path / "target"
    lines = []
    with _serving(real_copy) as url:
        download.fetch_fashion_mnist(
            target, system_dir=tmp_path / "none", use_apt=False, urls=(_closed_port_url(), url), log=lines.append
        )
    download.verify(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert "refused" in lines[3].lower() and lines[-1].endswith(url)


def test_url_serving_a_corrupted_file_stops(real_copy, tmp_path):
    bad = _copy_real(real_copy, tmp_path / "bad")
    _corrupt(bad / LABELS)
    target = tmp_path / "target"
    with _serving(bad) as bad_url, _serving(real_copy) as good_url:
        with pytest.raises(FetchError, match=rf"{LABELS} from {bad_url} is not the Fashion-MNIST file"):
            download.fetch_fashion_mnist(target, system_dir=tmp_path / "none", use_apt=False, urls=(bad_url, good_url))
    assert list(target.iterdir()) == []  # nothing installed, no partial files


def test_url_missing_file_is_skipped_as_unavailable(real_copy, tmp_path):
    (real_copy / LABELS).unlink()
    with _serving(real_copy) as url:
        with pytest.raises(FetchError, match=rf"{url}: {LABELS}: HTTP 404"):
            download.fetch_fashion_mnist(tmp_path / "target", system_dir=tmp_path / "none", use_apt=False, urls=(url,))
    assert _leftovers(tmp_path / "target") == []


def test_all_sources_failing_lists_each_reason(tmp_path):
    missing_dir, closed = tmp_path / "no-such-dir", _closed_port_url()
    with pytest.raises(FetchError) as info:
        download.fetch_fashion_mnist(tmp_path / "target", system_dir=missing_dir, use_apt=False, urls=(closed,))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"no source could provide the Fashion-MNIST files for {tmp_path / 'target'} (")
    assert f"{missing_dir}: no such folder" in message
    assert f"{closed}: train-images-idx3-ubyte.gz: " in message and "refused" in message.lower()
    assert _leftovers(tmp_path / "target") == []


def test_apt_package_end_to_end(tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get or dpkg-deb is not on PATH")
    target = tmp_path / "target"
    try:
        _, origin = download.fetch_with_origin(target, system_dir=tmp_path / "none", urls=())
    except FetchError as err:
        if "apt-get download " in str(err):  # failed (no network, no package lists) or timed out
            pytest.skip(f"apt package not downloadable here: {err}")
        raise
    assert origin == f"from apt package {download.APT_PACKAGE}"
    download.verify(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)


# --- the fetch stage (stages/fetch.py) -----------------------------------------------------------


def _params(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _fetch_stage(params: str, local: Path, out: Path, capsys) -> tuple[int, str, str]:
    """Run the fetch stage in this process; return its exit status, stdout and stderr."""
    from stages import fetch as stage

    try:
        stage.main(["--params", params, "--local", str(local), "--out", str(out)])
        status = 0
    except SystemExit as stop:
        status = stop.code
    got, err = capsys.readouterr()
    return status, got, err


def _regzipped(fashion_dir: Path, folder: Path) -> Path:
    """The same content under another gzip header and level: other bytes, the same files."""
    folder.mkdir(parents=True)
    for name in FILES:
        with open(folder / name, "wb") as raw:
            with gzip.GzipFile(filename="x", mode="wb", fileobj=raw, compresslevel=1, mtime=7) as gz:
                gz.write(gzip.decompress((fashion_dir / name).read_bytes()))
    return folder


VERIFY = "data:\n  verify: fashion-mnist\n"


def test_stage_output_is_the_same_bytes_from_differently_gzipped_sources(fashion_dir, tmp_path, capsys):
    other = _regzipped(fashion_dir, tmp_path / "other")
    assert (other / LABELS).read_bytes() != (fashion_dir / LABELS).read_bytes()
    params = _params(tmp_path / "params.yaml", VERIFY)
    outs = []
    for source in (fashion_dir, other):
        out = tmp_path / f"out-{source.name}"
        status, got, err = _fetch_stage(params, source, out, capsys)
        assert (status, err) == (0, "")
        assert got.endswith(f"{out}: 4 Fashion-MNIST files, decompressed and verified (from {source})\n")
        outs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert outs[0] == outs[1]
    assert sorted(outs[0]) == sorted(download.plain_name(name) for name in FILES)
    for name in FILES:
        assert len(outs[0][download.plain_name(name)]) == SIZE[name]
        assert download.content_sha256(tmp_path / f"out-{fashion_dir.name}" / download.plain_name(name)) == SHA256[name]
    assert _leftovers(other) == [] and not list(tmp_path.glob("out-*/.*"))


def test_stage_with_verify_none_fetches_nothing(tmp_path, capsys):
    params = _params(tmp_path / "params.yaml", "data:\n  dir: mine\n  verify: none\n")
    status, got, err = _fetch_stage(params, tmp_path / "no-such-folder", tmp_path / "out", capsys)
    assert (status, got, err) == (0, f"{tmp_path / 'out'}: nothing fetched (data.verify: none)\n", "")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["NOT-FETCHED.txt"]


@pytest.mark.parametrize(
    "text, message",
    [
        (None, r"params.yaml: cannot read \(No such file or directory\)"),
        ("data: [\n", r"params.yaml: not valid YAML"),
        ("data: [a, b]\n", r"params.yaml: section 'data' is missing or not a mapping"),
        ("data:\n  dir: raw\n", r"params.yaml: param data.verify is missing"),
        ("data:\n  verify: sha1\n", r"params.yaml: data.verify must be one of 'fashion-mnist', 'none'; got 'sha1'"),
    ],
)
def test_stage_bad_params_give_one_line_and_exit_1(text, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        _params(tmp_path / "params.yaml", text)
    status, got, err = _fetch_stage("params.yaml", tmp_path, tmp_path / "out", capsys)
    assert status == 1
    assert got == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("fetch: error: ") and re.search(message, err)
    assert not (tmp_path / "out").exists()


def test_stage_stops_on_a_damaged_local_file_and_keeps_what_was_there(real_copy, tmp_path, capsys):
    """A damaged file in the local folder stops the stage (no fallback to the network), naming it;
    the output folder keeps exactly what it held, and the local folder is never written."""
    _corrupt(real_copy / LABELS)
    local_before = {p.name: p.read_bytes() for p in real_copy.iterdir()}
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    status, got, err = _fetch_stage(_params(tmp_path / "params.yaml", VERIFY), real_copy, out, capsys)
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"fetch: error: {LABELS} from {real_copy} is not the Fashion-MNIST file: "
                          "decompressed content has sha256 ")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert {p.name: p.read_bytes() for p in real_copy.iterdir()} == local_before


def test_stage_all_sources_failing_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "fetch_with_origin", functools.partial(
        download.fetch_with_origin, system_dir=tmp_path / "none", use_apt=False, urls=(_closed_port_url(),)))
    out = tmp_path / "out"
    status, got, err = _fetch_stage(_params(tmp_path / "params.yaml", VERIFY), tmp_path / "raw", out, capsys)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"fetch: error: no source could provide the Fashion-MNIST files for {out} "
                          f"({tmp_path / 'raw'}: no such folder; {tmp_path / 'none'}: no such folder; ")
    assert len(err) <= len("fetch: error: ") + 300 + 1
    assert got.startswith(f"getting 4 Fashion-MNIST file(s) from {tmp_path / 'raw'}\n")
    assert not out.exists()


def test_stage_output_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    status, _, err = _fetch_stage(_params(tmp_path / "params.yaml", VERIFY), tmp_path, tmp_path / "out", capsys)
    assert status == 1 and err == f"fetch: error: {tmp_path / 'out'}: is an existing file; give a folder path for this output\n"
    assert (tmp_path / "out").read_text() == "a file"


def test_local_folder_with_gunzipped_twins_is_a_source(real_copy, tmp_path):
    (real_copy / LABELS).with_suffix("").write_bytes(gzip.decompress((real_copy / LABELS).read_bytes()))
    (real_copy / LABELS).unlink()
    target = tmp_path / "target"
    _, origin = download.fetch_with_origin(target, local_dirs=[real_copy], system_dir=tmp_path / "none", use_apt=False,
                                        urls=())
    assert origin == f"from {real_copy}"
    download.verify(target)


def test_write_content_refuses_other_content_naming_the_file(real_copy, tmp_path):
    _corrupt(real_copy / LABELS)
    with pytest.raises(FetchError, match=rf"^{real_copy / LABELS}: decompressed content has sha256 [0-9a-f]{{64}}, "):
        download.write_content(real_copy / LABELS, LABELS, io.BytesIO())
    (tmp_path / "long.gz").write_bytes(gzip.compress(bytes(SIZE[LABELS] + 5000)))
    out = io.BytesIO()
    with pytest.raises(FetchError, match=rf"long.gz: decompressed content is over the 10,008 bytes of {LABELS}"):
        download.write_content(tmp_path / "long.gz", LABELS, out)
    assert len(out.getvalue()) <= SIZE[LABELS]  # reading stopped at the known size
    (tmp_path / "broken.gz").write_bytes((real_copy / LABELS).read_bytes()[:200])
    with pytest.raises(FetchError, match=rf"broken.gz: cannot be read as {LABELS}"):
        download.write_content(tmp_path / "broken.gz", LABELS, io.BytesIO())
