"""The locks in requirements/: every distribution pinned with its hashes, one version of each across them,
each make target installing its own, and the environment the tests run in being the test lock's."""

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCKS = ("core", "cnn", "report", "cluster", "test")
# What only the network, the report's pictures or the tests and benches need: never in the lean default.
HEAVY = {"torch", "sympy", "scipy", "scikit-learn", "faiss-cpu", "hypothesis", "pytest", "vl-convert-python"}
# The cluster extra: only with DASK_SCHEDULER_ADDRESS set is it imported, so the lean lock goes without it.
DASK = {"dask", "distributed"}


def read_lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """``{name: (version, hashes)}`` of ``requirements/<name>.txt``, continuation lines joined."""
    text = (REPO / "requirements" / f"{name}.txt").read_text().replace("\\\n", " ")
    entries = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", pin)
        assert match, f"{name}.txt: {pin!r} is not name==version"
        hashes = [option.removeprefix("--hash=sha256:") for option in options]
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes) and hashes, f"{name}.txt: {pin} without sha256 hashes"
        entries[canonicalize_name(match[1])] = (match[2], hashes)
    return entries


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, tuple[str, list[str]]]]:
    return {name: read_lock(name) for name in LOCKS}


def declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (project["optional-dependencies"][extra] if extra else project["dependencies"])]


def test_every_entry_is_pinned_with_hashes_and_one_version_across_the_locks(locks):
    versions: dict[str, set[str]] = {}
    for entries in locks.values():
        for name, (version, _) in entries.items():
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


@pytest.mark.parametrize("lock, extras", [("core", ()), ("cnn", ("cnn",)), ("report", ("report",)),
                                          ("cluster", ("cluster",)), ("test", ("cnn", "report", "cluster", "test"))])
def test_each_lock_holds_pyprojects_pins_and_their_extras(locks, lock, extras):
    for requirement in declared() + [r for extra in extras for r in declared(extra)]:
        name = canonicalize_name(requirement.name)
        assert name in locks[lock], f"{lock}.txt lacks {requirement}"
        assert requirement.specifier.contains(locks[lock][name][0], prereleases=True), (lock, requirement)
    assert "setuptools" in locks[lock]  # fmproto installs without build isolation, from the locked setuptools


def test_the_lean_lock_has_nothing_heavy_and_the_others_add_to_it(locks):
    assert (HEAVY | DASK).isdisjoint(locks["core"]), (HEAVY | DASK) & set(locks["core"])
    for lock in ("cnn", "report", "cluster", "test"):
        assert set(locks["core"]) <= set(locks[lock])
    assert set(locks["cnn"]) | set(locks["report"]) | set(locks["cluster"]) <= set(locks["test"])
    assert HEAVY | DASK <= set(locks["test"])
    assert HEAVY.isdisjoint(locks["cluster"]), HEAVY & set(locks["cluster"])


def test_pytorch_is_the_cpu_build(locks):
    assert all(locks[lock]["torch"][0].endswith("+cpu") for lock in ("cnn", "test"))
    assert not any(name.startswith("nvidia-") or name.startswith("triton") for name in locks["test"])


def test_the_environment_running_the_tests_is_the_test_lock(locks):
    """``make test`` installs requirements/test.txt: every distribution here is in it, at its version."""
    if not Path(sys.prefix, ".installed-test").exists():
        pytest.skip("not the environment `make test` built")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("fmproto")
    installed.pop("pip")  # the venv's own, as the Python that made it brought it
    assert {name: version for name, version in installed.items()
            if locks["test"].get(name, (None,))[0] != version} == {}


@pytest.mark.parametrize("target, locks", [("env", ["core"]), ("repro", ["core"]), ("best", ["cnn"]),
                                           ("report", ["report"]), ("env-cluster", ["cluster"]), ("test", ["test"]),
                                           ("sweep", ["cnn", "core"])])
def test_each_target_installs_from_its_lock_with_hashes(tmp_path, target, locks):
    """``make -n`` in a copy with no environment: the install commands the target would run."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    closed = "TORCH_INDEX=http://127.0.0.1:9/whl/cpu"  # a closed port: asked and refused at once
    out = subprocess.run(["make", "-n", target, closed], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    installs = [line for line in out.splitlines() if " install " in line and " -r requirements/" in line]
    assert [re.search(r"-r requirements/(\w+)\.txt", line)[1] for line in installs] == locks
    assert all("--require-hashes" in line for line in installs)
    assert "--force-reinstall --no-deps --require-hashes" in out and "HNSWLIB_NO_NATIVE=1" in out  # the portable build
    assert re.search(r"install --quiet --no-deps --no-build-isolation -e \.", out)
    assert "download.pytorch.org" not in out and "--index-url" not in out  # the closed index is not asked


def test_pytorch_alone_comes_from_the_cpu_index_where_it_answers(tmp_path):
    """A local index standing in for PyTorch's: asked for torch, and for nothing else."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    (tmp_path / "index" / "torch").mkdir(parents=True)
    (tmp_path / "index" / "torch" / "index.html").write_text("<html></html>")
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"], cwd=tmp_path / "index",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = re.search(r"port (\d+)", server.stdout.readline())[1]
        index = f"http://127.0.0.1:{port}/whl"
        (tmp_path / "index" / "whl").symlink_to(tmp_path / "index")
        out = subprocess.run(["make", "-n", "best", f"TORCH_INDEX={index}"], cwd=tmp_path, capture_output=True,
                             text=True, check=True).stdout
    finally:
        server.kill()
        server.wait()
    asked = [line for line in out.replace("\\\n", " ").splitlines() if index in line]
    assert len(asked) == 1 and f"--index-url {index}" in asked[0] and "-r .venv/torch.txt" in asked[0]
