"""The stages that search exactly, under `dvc repro` against a real `dask scheduler` and two `dask worker`
processes on 127.0.0.1: every output the local run's bytes, nothing to rerun, the stages' clients in the
scheduler's log. Unset, the stages import no Dask; an address nobody answers at is one line."""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

import pytest
import yaml

from repos import BIN, git, run

pytestmark = pytest.mark.e2e
distributed = pytest.importorskip("distributed")  # the cluster extra

STAGES = ["dedup-check", "knn-scaling", "evaluate-valid", "evaluate-test"]


def _env(**extra) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "DASK_SCHEDULER_ADDRESS"}
    return {**env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """``(address, log)`` of a `dask scheduler` with two single-threaded `dask worker` processes."""
    folder = tmp_path_factory.mktemp("dask")
    file, log = folder / "scheduler.json", folder / "scheduler.log"
    processes = []
    try:
        with log.open("w") as out:
            processes.append(subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                                               "--no-dashboard", "--scheduler-file", file], stdout=out, stderr=out))
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            processes.append(subprocess.Popen([BIN / "dask", "worker", address, "--host", "127.0.0.1", "--nthreads",
                                               "1", "--memory-limit", "2GiB", "--no-dashboard"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, log
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_the_stages_on_a_cluster_write_the_local_bytes(repo, scheduler):
    address, log = scheduler
    lock, clients = (repo / "dvc.lock").read_bytes(), log.read_text().count("Receive client connection")
    env = _env(DASK_SCHEDULER_ADDRESS=address)
    assert run([BIN / "dvc", "status", "--json"], repo, env=env).stdout.strip() == "{}"  # not a dep: nothing to rerun
    run([BIN / "dvc", "repro", "-f", *STAGES], repo, env=env)
    assert git(repo, "status", "--porcelain").stdout == ""  # metrics/, plots/ and dvc.lock (every output's md5)
    assert (repo / "dvc.lock").read_bytes() == lock
    assert log.read_text().count("Receive client connection") - clients >= len(STAGES)


NO_DASK = """
import json, runpy, shlex, sys
for command in json.loads(sys.argv[1]):
    words = shlex.split(command)
    module = words[words.index("-m") + 1]
    sys.argv = [module, *words[words.index("-m") + 2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("dask", "distributed"))))
"""


def _commands(repo) -> list[str]:
    """The stages' commands from dvc.yaml, ``${paths.*}`` filled in."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    paths = next(entry["paths"] for entry in spec["vars"] if "paths" in entry)
    commands = [re.sub(r"\$\{paths\.(\w+)\}", lambda m: paths[m[1]], spec["stages"][name]["cmd"]) for name in STAGES]
    assert not any("${" in command for command in commands)
    return commands


def test_without_the_address_the_stages_import_no_dask(repo):
    out = run([sys.executable, "-c", NO_DASK, json.dumps(_commands(repo))], repo, env=_env()).stdout
    assert json.loads(out.splitlines()[-1]) == []
    assert git(repo, "status", "--porcelain").stdout == ""


def test_an_unreachable_scheduler_is_one_line_and_changes_nothing(repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # closed again: connecting is refused
    result = run([BIN / "dvc", "repro", "-s", "-f", "knn-scaling"], repo, check=False,
                 env=_env(DASK_SCHEDULER_ADDRESS=address))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("knn-scaling:")]
    assert lines == [f"knn-scaling: error: DASK_SCHEDULER_ADDRESS is '{address}', but no Dask scheduler answered "
                     f"there within 5 s (Timed out trying to connect to {address} after 5 s)"]
    assert "Traceback" not in result.stderr
    assert git(repo, "status", "--porcelain").stdout == ""
    assert run([BIN / "dvc", "status", "--json"], repo, env=_env()).stdout.strip() == "{}"
