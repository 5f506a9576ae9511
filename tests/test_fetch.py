"""fmproto.fetch: checksums of decompressed content, the order of sources, bounded reads, and the
``fmproto fetch`` command's one-line errors.

The real files come from the session fixture ``fashion_dir`` (data/raw, verified there); every test
works on copies in ``tmp_path``. The URL source is served by a local HTTP server on 127.0.0.1.
"""

import functools
import gzip
import http.server
import re
import shutil
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from fmproto import fetch
from fmproto.cli.main import main
from fmproto.fetch import FILES, GZ_SIZE, SHA256, SIZE, FetchError

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
    fetch.verify(fashion_dir)
    assert fetch.content_sha256(fashion_dir / LABELS) == SHA256[LABELS]


def test_regzipped_copies_still_verify(fashion_dir, tmp_path):
    for name in FILES:
        payload = gzip.decompress((fashion_dir / name).read_bytes())
        with open(tmp_path / name, "wb") as raw:  # another stored file name, mtime and level
            with gzip.GzipFile(filename="other-name", mode="wb", fileobj=raw, compresslevel=1, mtime=1) as gz:
                gz.write(payload)
    assert (tmp_path / LABELS).read_bytes() != (fashion_dir / LABELS).read_bytes()
    fetch.verify(tmp_path)


def test_plain_file_is_hashed_as_is(fashion_dir, tmp_path):
    plain = tmp_path / LABELS.removesuffix(".gz")
    plain.write_bytes(gzip.decompress((fashion_dir / LABELS).read_bytes()))
    assert fetch.content_sha256(plain) == SHA256[LABELS]


def test_gunzipped_files_in_the_folder_verify(real_copy):
    for name in ("train-labels-idx1-ubyte.gz", LABELS):
        path = real_copy / name
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    fetch.verify(real_copy)
    assert fetch.fetch_fashion_mnist(real_copy, system_dir=real_copy / "none", use_apt=False, urls=()) == real_copy
    assert not (real_copy / LABELS).exists()  # the gunzipped copy counts; nothing fetched beside it


def test_corrupted_file_fails_naming_it(real_copy):
    _corrupt(real_copy / LABELS)
    expected = rf"{LABELS}: decompressed content has sha256 [0-9a-f]{{64}}, expected {SHA256[LABELS]}$"
    with pytest.raises(FetchError, match=expected):
        fetch.verify(real_copy)


def test_missing_file_is_named(real_copy):
    (real_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FetchError, match=r"train-labels-idx1-ubyte.gz: missing"):
        fetch.verify(real_copy)


def test_truncated_gzip_is_a_fetch_error(real_copy):
    path = real_copy / LABELS
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(FetchError, match=rf"{LABELS}: cannot be read"):
        fetch.verify(real_copy)


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
        assert 0 < GZ_SIZE[name] - (fashion_dir / name).stat().st_size < fetch.max_download(name)


def test_gzip_bomb_in_the_folder_is_a_mismatch_read_only_past_its_size(real_copy, monkeypatch):
    """1 GiB of zeros behind the real labels' content: reported after SIZE + 1 bytes, not inflated."""
    real = gzip.decompress((real_copy / LABELS).read_bytes())
    (real_copy / LABELS).write_bytes(gzip.compress(real, mtime=0) + _zeros_gzip(64))
    assert (real_copy / LABELS).stat().st_size < 2_000_000
    counting = _CountingGzip()
    monkeypatch.setattr(fetch.gzip, "open", counting)
    expected = rf"{LABELS}: decompressed content is over the 10,008 bytes of {LABELS}; not read further$"
    with pytest.raises(FetchError, match=expected):
        fetch.verify(real_copy)
    assert counting.n_bytes[LABELS] == SIZE[LABELS] + 1
    with pytest.raises(fetch.ContentTooLarge, match=r"over 5 bytes; not read further"):
        fetch.content_sha256(real_copy / LABELS, max_size=5)


def test_plain_file_too_large_is_a_mismatch(fashion_dir, tmp_path):
    big = tmp_path / LABELS.removesuffix(".gz")
    big.write_bytes(gzip.decompress((fashion_dir / LABELS).read_bytes()) + b"\x00")
    assert "decompressed content is over the 10,008 bytes" in fetch._mismatch(big, LABELS)


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
    limit = fetch.max_download(LABELS)
    assert GZ_SIZE[LABELS] < limit <= GZ_SIZE[LABELS] + 64 * 1024 + GZ_SIZE[LABELS] // 20
    with _serving_with(_EndlessHandler) as url:
        with pytest.raises(FetchError, match=rf"^{LABELS} from {url}: download passed the {limit:,} bytes "
                                             rf"allowed \(the official file has 5,148\); stopped$"):
            fetch.fetch_fashion_mnist(target, system_dir=tmp_path / "none", use_apt=False, urls=(url,))
    assert _leftovers(target) == [] and not (target / LABELS).exists()


def test_download_with_too_large_content_length_is_refused_before_reading(real_copy, tmp_path):
    target = _all_but_labels(real_copy, tmp_path / "target")
    served = tmp_path / "served"
    served.mkdir()
    (served / LABELS).write_bytes(bytes(1_000_000))
    with _serving(served) as url:
        with pytest.raises(FetchError, match=rf"^{LABELS} from {url}: Content-Length 1,000,000 bytes is over the "
                                             rf"{fetch.max_download(LABELS):,} allowed .*not downloaded$"):
            fetch.fetch_fashion_mnist(target, system_dir=tmp_path / "none", use_apt=False, urls=(url,))
    assert _leftovers(target) == [] and not (target / LABELS).exists()


# --- fetch_fashion_mnist: order of sources ----------------------------------------------------


def test_present_but_mismatched_stops_instead_of_fetching(real_copy, tmp_path):
    target = _copy_real(real_copy, tmp_path / "target")
    _corrupt(target / LABELS)
    damaged = (target / LABELS).read_bytes()
    with pytest.raises(FetchError, match=rf"{LABELS}: .*never replaces existing files"):
        fetch.fetch_fashion_mnist(target, system_dir=real_copy, use_apt=False, urls=())
    assert (target / LABELS).read_bytes() == damaged


def test_system_dir_is_copied_into_an_empty_directory(real_copy, tmp_path):
    target = tmp_path / "new" / "raw"
    lines = []
    assert fetch.fetch_fashion_mnist(target, system_dir=real_copy, use_apt=False, urls=(), log=lines.append) == target
    fetch.verify(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert lines == [f"getting 4 Fashion-MNIST file(s) from {real_copy}"]


def test_only_missing_files_are_fetched_and_present_ones_kept(real_copy, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    shutil.copyfile(real_copy / LABELS, target / LABELS)
    inode = (target / LABELS).stat().st_ino
    _, origin = fetch.fetch_with_origin(target, system_dir=real_copy, use_apt=False, urls=())
    assert origin == f"1 already present, 3 from {real_copy}"
    assert (target / LABELS).stat().st_ino == inode
    fetch.verify(target)


def test_url_source_downloads_after_an_unreachable_one(real_copy, tmp_path):
    target = tmp_path / "target"
    lines = []
    with _serving(real_copy) as url:
        fetch.fetch_fashion_mnist(
            target, system_dir=tmp_path / "none", use_apt=False, urls=(_closed_port_url(), url), log=lines.append
        )
    fetch.verify(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert "refused" in lines[3].lower() and lines[-1].endswith(url)


def test_url_serving_a_corrupted_file_stops(real_copy, tmp_path):
    bad = _copy_real(real_copy, tmp_path / "bad")
    _corrupt(bad / LABELS)
    target = tmp_path / "target"
    with _serving(bad) as bad_url, _serving(real_copy) as good_url:
        with pytest.raises(FetchError, match=rf"{LABELS} from {bad_url} is not the Fashion-MNIST file"):
            fetch.fetch_fashion_mnist(target, system_dir=tmp_path / "none", use_apt=False, urls=(bad_url, good_url))
    assert list(target.iterdir()) == []  # nothing installed, no partial files


def test_url_missing_file_is_skipped_as_unavailable(real_copy, tmp_path):
    (real_copy / LABELS).unlink()
    with _serving(real_copy) as url:
        with pytest.raises(FetchError, match=rf"{url}: {LABELS}: HTTP 404"):
            fetch.fetch_fashion_mnist(tmp_path / "target", system_dir=tmp_path / "none", use_apt=False, urls=(url,))
    assert _leftovers(tmp_path / "target") == []


def test_all_sources_failing_lists_each_reason(tmp_path):
    missing_dir, closed = tmp_path / "no-such-dir", _closed_port_url()
    with pytest.raises(FetchError) as info:
        fetch.fetch_fashion_mnist(tmp_path / "target", system_dir=missing_dir, use_apt=False, urls=(closed,))
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
        _, origin = fetch.fetch_with_origin(target, system_dir=tmp_path / "none", urls=())
    except FetchError as err:
        if "apt-get download " in str(err):  # failed (no network, no package lists) or timed out
            pytest.skip(f"apt package not downloadable here: {err}")
        raise
    assert origin == f"from apt package {fetch.APT_PACKAGE}"
    fetch.verify(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)


# --- fmproto fetch ------------------------------------------------------------------------------


def _params(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _fetch_cli(params: str, capsys) -> tuple[int, str, str]:
    """Run ``fmproto fetch --params params``; return its exit status, stdout and stderr."""
    try:
        main(["fetch", "--params", params])
        status = 0
    except SystemExit as stop:
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "text, message",
    [
        (None, r"params.yaml: cannot read \(No such file or directory\)"),
        ("data: [\n", r"params.yaml: not valid YAML"),
        ("data: [a, b]\n", r"params.yaml: section 'data' is missing or not a mapping"),
        ("data:\n  verify: none\n", r"params.yaml: param data.dir is missing"),
        ("data:\n  dir: raw\n", r"params.yaml: param data.verify is missing"),
        ("data:\n  dir: 3\n  verify: none\n", r"params.yaml: data.dir must be a non-empty string .*; got 3"),
        ("data:\n  dir: raw\n  verify: sha1\n",
         r"params.yaml: data.verify must be one of 'fashion-mnist', 'none'; got 'sha1'"),
        ("data:\n  dir: raw\n  verify: none\n", r"data.dir raw is not a folder"),
    ],
)
def test_cli_bad_params_give_one_line_and_exit_1(text, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        _params(tmp_path / "params.yaml", text)
    status, out, err = _fetch_cli("params.yaml", capsys)
    assert status == 1
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("fmproto fetch: error: ")
    assert re.search(message, err)


def test_cli_stops_on_a_damaged_present_file(fashion_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").mkdir()
    shutil.copyfile(fashion_dir / LABELS, tmp_path / "raw" / LABELS)
    _corrupt(tmp_path / "raw" / LABELS)
    status, out, err = _fetch_cli(_params(tmp_path / "p.yaml", "data:\n  dir: raw\n  verify: fashion-mnist\n"),
                                  capsys)
    assert status == 1
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"fmproto fetch: error: raw/{LABELS}: decompressed content has sha256 ")


def test_cli_with_files_present_prints_one_line(real_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = _params(tmp_path / "params.yaml", "data:\n  dir: real\n  verify: fashion-mnist\n")
    assert _fetch_cli(params, capsys) == (0, "real: 4 Fashion-MNIST files verified (already present)\n", "")


def test_cli_verify_none_only_checks_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    params = _params(tmp_path / "params.yaml", "data:\n  dir: mine\n  verify: none\n")
    status, _, err = _fetch_cli(params, capsys)
    assert status == 1
    assert err == "fmproto fetch: error: data.dir mine is empty (data.verify is 'none', so nothing is fetched)\n"
    (tmp_path / "mine" / "fashion-train.csv").write_text("label,pixel1\n0,0\n")
    assert _fetch_cli(params, capsys) == (0, "mine: 1 file(s) used as they are (data.verify: none)\n", "")


def test_cli_all_sources_failing_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fetch, "fetch_with_origin", functools.partial(
        fetch.fetch_with_origin, system_dir=tmp_path / "none", use_apt=False, urls=(_closed_port_url(),)))
    status, out, err = _fetch_cli(_params(tmp_path / "p.yaml", "data:\n  dir: raw\n  verify: fashion-mnist\n"),
                                  capsys)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("fmproto fetch: error: no source could provide the Fashion-MNIST files for raw (")
    assert len(err) <= len("fmproto fetch: error: ") + 300 + 1
    assert out.startswith("getting 4 Fashion-MNIST file(s) from ")
