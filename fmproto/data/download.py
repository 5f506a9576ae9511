"""Get the four real Fashion-MNIST files, checked against known checksums, without root.

Checksums are of the decompressed bytes, so any gzip of the real content passes; reads stop one byte past the
expected size, and files are staged and all checked before any is moved in (a failure leaves no partial file)."""

import gzip
import hashlib
import http.client
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO

FILES: tuple[str, ...] = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# SHA-256 of the decompressed IDX bytes: Debian re-gzipped upstream's content, so the .gz md5s cover only one.
SHA256: dict[str, str] = dict(zip(FILES, (
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
)))
# Bytes decompressed, and as the official server sends them (other gzips, e.g. Debian's, differ a little).
SIZE: dict[str, int] = dict(zip(FILES, (47_040_016, 60_008, 7_840_016, 10_008)))
GZ_SIZE: dict[str, int] = dict(zip(FILES, (26_421_880, 29_515, 4_422_102, 5_148)))
# How far a download may exceed GZ_SIZE: room for another gzip of the content, small next to an endless response.
DOWNLOAD_SLACK, DOWNLOAD_SLACK_FRACTION = 64 * 1024, 0.05
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
APT_PACKAGE = "dataset-fashion-mnist"
URL_TIMEOUT = 20.0  # seconds per connect or read, so an offline machine moves on quickly
APT_TIMEOUT = 300.0  # seconds for each of apt-get download and dpkg-deb -x
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """Files fail their checksum, or no source could provide them; the message is one line."""


class ContentTooLarge(FetchError):
    """The decompressed content runs past the size it may have; reading stopped there."""


class _Unavailable(Exception):
    """This source cannot provide the files (absent, no network); the next source is tried."""


def content_sha256(path: str | Path, max_size: int = max(SIZE.values()), out: BinaryIO | None = None) -> str:
    """SHA-256 hex digest of the content, gunzipped if it starts ``1f 8b``; each chunk also goes to ``out``.
    ``ContentTooLarge`` past ``max_size`` bytes (not inflated further); a damaged gzip raises ``OSError``,
    ``EOFError`` or ``zlib.error``."""
    path = Path(path)
    with path.open("rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    digest, n_bytes = hashlib.sha256(), 0
    with gzip.open(path, "rb") if is_gzip else path.open("rb") as f:
        while chunk := f.read(min(_CHUNK, max_size + 1 - n_bytes)):
            n_bytes += len(chunk)
            if n_bytes > max_size:
                raise ContentTooLarge(f"{path}: decompressed content is over {max_size:,} bytes; not read further")
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
    return digest.hexdigest()


def plain_name(name: str) -> str:
    """The decompressed IDX file's name for ``name`` (one of ``FILES``): without ``.gz``."""
    return name.removesuffix(".gz")


def write_content(path: str | Path, name: str, out: BinaryIO) -> None:
    """Write the decompressed content of ``path`` (the file ``name``) to ``out``: the same whichever gzip held it.
    ``FetchError`` naming ``path`` if it is not the real ``name``; ``out`` may then hold part of it."""
    if problem := _mismatch(Path(path), name, out):
        raise FetchError(f"{path}: {problem}")


def max_download(name: str) -> int:
    """The most bytes a download of ``name`` (one of ``FILES``) may take before it is stopped."""
    return GZ_SIZE[name] + max(DOWNLOAD_SLACK, int(GZ_SIZE[name] * DOWNLOAD_SLACK_FRACTION))


def verify(directory: str | Path) -> None:
    """``FetchError`` naming the first of the four files (each gzipped or plain without ``.gz``) missing from
    ``directory`` or not the real one (with the sha256 got and expected)."""
    for name in FILES:
        path = _local_path(Path(directory), name)
        if not path.exists():
            raise FetchError(f"{path}: missing")
        if problem := _mismatch(path, name):
            raise FetchError(f"{path}: {problem}")


def fetch_fashion_mnist(directory: str | Path, **sources) -> Path:
    """``directory`` (created if needed) holding the four verified files; ``fetch_with_origin`` without the origin."""
    return fetch_with_origin(directory, **sources)[0]


def fetch_with_origin(directory: str | Path, *, local_dirs: Sequence[str | Path] = (),
                      system_dir: str | Path = SYSTEM_DIR, use_apt: bool = True, urls: Sequence[str] = (OFFICIAL_URL,),
                      log: Callable[[str], None] | None = None) -> tuple[Path, str]:
    """Make ``directory`` hold the four verified files; return it and where they came from.

    Sources, in order, for the files it lacks (those it has are checked, never replaced): ``local_dirs`` (read
    only), ``system_dir`` (Debian's ``dataset-fashion-mnist``), that package via ``apt-get download``, then
    ``urls`` (``url/<file name>``), each skipped when absent or unreachable. ``FetchError`` at once for a file
    failing its checksum or a download over ``max_download``, or when every source failed."""
    directory = Path(directory)
    log = log or (lambda line: None)
    present = [name for name in FILES if _local_path(directory, name).exists()]
    for name in present:
        path = _local_path(directory, name)
        if problem := _mismatch(path, name):
            raise FetchError(f"{path}: {problem}; fetch never replaces existing files, so remove or replace it")
    missing = [name for name in FILES if name not in present]
    if not missing:
        return directory, "already present"
    sources = [(str(folder), partial(_from_folder, folder)) for folder in [*map(Path, local_dirs), Path(system_dir)]]
    sources += [(f"apt package {APT_PACKAGE}", _from_apt)] if use_apt else []
    sources += [(url, partial(_from_url, url)) for url in urls]
    reasons = []
    for label, install in sources:
        log(f"getting {len(missing)} Fashion-MNIST file(s) from {label}")
        try:
            install(directory, missing)
        except _Unavailable as err:
            log(f"  {label}: {err}")
            reasons.append(f"{label}: {err}")
        else:
            origin = f"from {label}"
            return directory, f"{len(present)} already present, {len(missing)} {origin}" if present else origin
    what = "the Fashion-MNIST files" if not present else ", ".join(missing)
    raise FetchError(f"no source could provide {what} for {directory} ({'; '.join(reasons)})")


def _local_path(directory: Path, name: str) -> Path:
    """``directory / name``, or its decompressed twin (no ``.gz``) when only that one exists."""
    path, plain = directory / name, directory / plain_name(name)
    return plain if not path.exists() and plain.exists() else path


def _mismatch(path: Path, name: str, out: BinaryIO | None = None) -> str | None:
    """Why ``path`` does not hold the real ``name``, or None when its content checks out (and went to ``out``)."""
    try:
        got = content_sha256(path, SIZE[name], out)
    except ContentTooLarge:
        return f"decompressed content is over the {SIZE[name]:,} bytes of {name}; not read further"
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        return f"cannot be read as {name} ({err})"
    if got != SHA256[name]:
        return f"decompressed content has sha256 {got}, expected {SHA256[name]}"
    return None


def _install(directory: Path, names: list[str], origin: str, copy: Callable[[str, BinaryIO], None]) -> None:
    """Stage each file through ``copy(name, out)`` next to its target, check all, then move them in."""
    directory.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name in names:
            staged[name] = directory / f".{name}.{uuid.uuid4().hex[:8]}.part"
            with staged[name].open("xb") as out:  # "x": created with the usual umask permissions
                copy(name, out)
        for name, tmp in staged.items():
            if problem := _mismatch(tmp, name):
                raise FetchError(f"{name} from {origin} is not the Fashion-MNIST file: {problem}")
        for name, tmp in staged.items():
            tmp.replace(directory / name)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def _from_folder(folder: Path, directory: Path, names: list[str], origin: str | None = None) -> None:
    if not folder.is_dir():
        raise _Unavailable("no such folder")
    if absent := [name for name in names if not _local_path(folder, name).is_file()]:
        raise _Unavailable(f"lacks {', '.join(absent)}")

    def copy(name: str, out: BinaryIO) -> None:
        with _local_path(folder, name).open("rb") as f:  # a gunzipped twin is checked by content alike
            shutil.copyfileobj(f, out, _CHUNK)

    _install(directory, names, origin or str(folder), copy)


def _from_apt(directory: Path, names: list[str]) -> None:
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if not apt_get or not dpkg_deb:
        raise _Unavailable(f"{'apt-get' if not apt_get else 'dpkg-deb'} is not on PATH")
    with tempfile.TemporaryDirectory(prefix="fmproto-apt-") as tmp:
        _run([apt_get, "download", APT_PACKAGE], cwd=tmp)
        debs = sorted(Path(tmp).glob(f"{APT_PACKAGE}_*.deb"))
        if not debs:
            raise _Unavailable("apt-get download left no .deb file")
        _run([dpkg_deb, "-x", str(debs[0]), "root"], cwd=tmp)
        try:
            _from_folder(Path(tmp, "root", *SYSTEM_DIR.parts[1:]), directory, names, origin=debs[0].name)
        except _Unavailable as err:  # the package installs to SYSTEM_DIR
            raise _Unavailable(f"{debs[0].name} {SYSTEM_DIR}: {err}") from None


def _run(args: list[str], cwd: str) -> None:
    """A failure to run ``args`` becomes ``_Unavailable`` with its last error line."""
    what = f"{Path(args[0]).name} {args[1]}"
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise _Unavailable(f"{what} timed out after {APT_TIMEOUT:.0f} s") from None
    except OSError as err:
        raise _Unavailable(f"{what} could not start ({err})") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("E:")] or lines or [f"exit status {done.returncode}"]
        raise _Unavailable(f"{what} failed: {errors[-1]}")


def _from_url(base: str, directory: Path, names: list[str]) -> None:
    def copy(name: str, out: BinaryIO) -> None:
        url, limit = base.rstrip("/") + "/" + name, max_download(name)
        try:
            response = urllib.request.urlopen(url, timeout=URL_TIMEOUT)
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError is an OSError
            raise _Unavailable(f"{name}: {_why(err)}") from None
        with response:
            length = (response.headers.get("Content-Length") or "").strip()
            expected = int(length) if re.fullmatch(r"[0-9]{1,18}", length) else None  # else: not trusted
            if expected is not None and expected > limit or re.fullmatch(r"[0-9]{19,}", length):
                shown = f"{expected:,}" if expected is not None else f"{length[:3]}... ({len(length)} digits)"
                raise FetchError(f"{name} from {base}: Content-Length {shown} bytes is over the "
                                 f"{limit:,} allowed (the official file has {GZ_SIZE[name]:,}); not downloaded")
            n_bytes = 0
            while True:
                try:
                    chunk = response.read(min(_CHUNK, limit + 1 - n_bytes))
                except (OSError, http.client.HTTPException) as err:
                    raise _Unavailable(f"{name}: download broke off ({_why(err)})") from None
                if not chunk:
                    break
                n_bytes += len(chunk)
                if n_bytes > limit:
                    raise FetchError(f"{name} from {base}: download passed the {limit:,} bytes allowed "
                                     f"(the official file has {GZ_SIZE[name]:,}); stopped")
                out.write(chunk)
        if expected is not None and n_bytes != expected:
            raise _Unavailable(f"{name}: download broke off after {n_bytes} of {expected} bytes")

    _install(directory, names, base, copy)


def _why(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__
