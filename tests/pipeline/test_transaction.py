"""The commit of a stage's outputs, all or nothing, and a stage under DVC.

io.transaction checks every target before it replaces any, keeps each replaced target's old file
until all are in place and puts them all back when one fails; an OSError names the output it hit.
Under DVC (DVC_STAGE set) a stage stops when its dvc process exits, and an output folder ends up
holding exactly the files of the run; run directly, nothing the run did not write is removed.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fmproto.pipeline import io
from fmproto.pipeline import guard

from repos import BIN, git, run


def existing_outputs(tmp_path: Path) -> dict[Path, bytes]:
    """Four outputs of an earlier run, each holding its own old bytes."""
    folder = tmp_path / "out"
    folder.mkdir()
    old = {folder / name: f'"old {name}"\n'.encode() for name in ("a.json", "b.json", "c.json", "d.json")}
    for path, data in old.items():
        path.write_bytes(data)
    return old


def write_all(targets) -> None:
    for path in targets:
        io.write_json(path, {"new": path.name})


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if io.TEMP_MARK in p.name]


def run_failing(body, files=(), folders=()) -> int:
    with pytest.raises(SystemExit) as info:
        with guard.stage_errors("stage", files=files, folders=folders):
            body()
    return info.value.code


# ------------------------------------------------------------------------------------------- the commit


def _no_hard_links(*args, **kwargs):
    raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard-link-backups", "rename-backups"])
@pytest.mark.parametrize("fail_at", [1, 3, 5])
def test_a_failed_replacement_puts_every_target_back(tmp_path, monkeypatch, capsys, fail_at, hard_links):
    """The fail_at-th os.replace of the commit fails: every target holds its old bytes again, the new
    output and its new folder are gone, and no temp file or backup is left."""
    old = existing_outputs(tmp_path)
    new = tmp_path / "new" / "e.json"
    targets = [*old, new]
    real_replace, calls = os.replace, []

    def replace(source, target, **kwargs):
        calls.append(target)
        if len(calls) == fail_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO), source, None, target)
        return real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    if not hard_links:  # a file system without them, or protected_hardlinks: the old file is renamed aside
        monkeypatch.setattr(os, "link", _no_hard_links)
    assert run_failing(lambda: write_all(targets), files=targets) == 1
    assert {path: path.read_bytes() for path in old} == old
    assert not new.parent.exists()
    assert temp_files(tmp_path) == []
    failed = targets[fail_at - 1]
    assert capsys.readouterr().err == (f"stage: error: {failed}: cannot replace it ({os.strerror(errno.EIO)}); "
                                       "no output was changed\n")


def test_a_target_that_became_a_folder_stops_the_commit_before_any_change(tmp_path, capsys):
    old = existing_outputs(tmp_path)
    blocker = tmp_path / "out" / "z.json"  # new when the run starts, a non-empty folder at its end
    targets = [*old, blocker]

    def body():
        write_all(targets)
        blocker.mkdir()
        (blocker / "keep.txt").write_text("keep")

    assert run_failing(body, files=targets) == 1
    assert {path: path.read_bytes() for path in old} == old
    assert (blocker / "keep.txt").read_text() == "keep"
    assert temp_files(tmp_path) == []
    assert capsys.readouterr().err == f"stage: error: {blocker}: cannot replace it: it is now a folder; no output was changed\n"


def chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("locked", ["file", "folder"])
def test_an_immutable_target_or_folder_is_found_before_any_change(tmp_path, capsys, locked):
    """chattr +i on the last target before the run, or on its folder at the end of the run: refused
    before any target changes. Needs root and a file system with inode flags; skipped elsewhere."""
    probe = tmp_path / "probe"
    probe.touch()
    if not (chattr("+i", probe) and chattr("-i", probe)):
        pytest.skip("chattr +i is not allowed here (needs root, and ext4, xfs or btrfs)")
    probe.unlink()
    old = existing_outputs(tmp_path)
    last = tmp_path / "locked" / "z.json"
    last.parent.mkdir()
    last.write_bytes(b'"old z"\n')
    old[last] = last.read_bytes()
    lock = last if locked == "file" else last.parent

    def body():
        write_all(old)
        if locked == "folder":  # its temp file is already there
            chattr("+i", lock)

    if locked == "file":
        chattr("+i", lock)
    try:
        assert run_failing(body, files=list(old)) == 1
    finally:
        chattr("-i", lock)
    assert {path: path.read_bytes() for path in old} == old
    why = "the file is immutable" if locked == "file" else f"its folder {last.parent} is immutable"
    assert capsys.readouterr().err == f"stage: error: {last}: cannot replace it: {why} (chattr +i); no output was changed\n"
    if locked == "folder":  # nothing could remove the temp file from the locked folder: the next run does
        assert [p.parent for p in temp_files(tmp_path)] == [last.parent]
        with guard.stage_errors("stage", files=[last]):
            pass
    assert temp_files(tmp_path) == []


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write(2) raises it: no file named


def _write_to(path):
    def body():
        with io.atomic_path(path) as tmp:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(tmp))  # names only the temp file
    return body


@pytest.mark.parametrize("writer", ["write_json", "save_arrays", "temp file named"])
def test_an_os_error_names_the_output_it_hit(tmp_path, monkeypatch, capsys, writer):
    target = tmp_path / "result.out"
    target.write_bytes(b"old")
    if writer == "write_json":
        monkeypatch.setattr(Path, "write_text", _full_disk)
        body, strerror = lambda: io.write_json(target, {"a": 1}), os.strerror(errno.ENOSPC)
    elif writer == "save_arrays":
        monkeypatch.setattr(np, "savez", _full_disk)
        body, strerror = lambda: io.save_arrays(target, x=np.zeros(3)), os.strerror(errno.ENOSPC)
    else:
        body, strerror = _write_to(target), os.strerror(errno.EACCES)
    assert run_failing(body, files=[target]) == 1
    assert capsys.readouterr().err == f"stage: error: {target}: {strerror}\n"
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with pytest.raises(OSError) as info:  # outside a transaction too
        body()
    assert info.value.filename == str(target) and target.read_bytes() == b"old"


def test_sigterm_during_the_commit_waits_for_it_to_finish(tmp_path, monkeypatch, capsys):
    old = existing_outputs(tmp_path)
    real_replace = os.replace

    def replace(source, target, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # on every replacement: none may be cut short
        return real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert run_failing(lambda: write_all(old), files=list(old)) == 130
    assert all(json.loads(path.read_text()) == {"new": path.name} for path in old)
    assert temp_files(tmp_path) == []
    assert capsys.readouterr().err == "stage: error: interrupted (stopped by signal 15) after every output was written\n"


# ------------------------------------------------------------------------------- output folders under DVC


def a_folder_of_an_earlier_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """reports/: files of an earlier run at two depths, a link to a file outside, and one file this run rewrites."""
    folder = tmp_path / "reports"
    (folder / "old" / "deep").mkdir(parents=True)
    for name in ("gone.png", "old/deep/gone.png", "kept.png"):
        (folder / name).write_bytes(b"earlier run")
    (tmp_path / "elsewhere.png").write_bytes(b"the user's")
    (folder / "link.png").symlink_to(tmp_path / "elsewhere.png")
    return folder, ["gone.png", "kept.png", "link.png", "old/deep/gone.png"]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.parametrize("under_dvc", [True, False], ids=["under-dvc", "run-directly"])
def test_an_output_folder_holds_exactly_the_runs_files_under_dvc(tmp_path, monkeypatch, under_dvc):
    folder, earlier = a_folder_of_an_earlier_run(tmp_path)
    if under_dvc:
        monkeypatch.setenv("DVC_STAGE", "report")  # as DVC sets it for every stage command
    else:
        monkeypatch.delenv("DVC_STAGE", raising=False)
    metrics = tmp_path / "metrics.json"
    with guard.stage_errors("stage", files=[metrics], folders=[folder]):
        write_all([folder / "kept.png", folder / "new" / "fresh.png", metrics])
    written = ["kept.png", "new/fresh.png"]
    assert files_in(folder) == (written if under_dvc else sorted({*earlier, *written}))
    assert json.loads((folder / "kept.png").read_text()) == {"new": "kept.png"}
    assert (tmp_path / "elsewhere.png").read_bytes() == b"the user's"  # a link is removed, never its target
    assert temp_files(tmp_path) == []


def test_a_failed_run_under_dvc_keeps_the_folders_files(tmp_path, monkeypatch):
    folder, earlier = a_folder_of_an_earlier_run(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "report")

    def body():
        write_all([folder / "kept.png", folder / "new" / "fresh.png"])
        raise ValueError("bad input")

    assert run_failing(body, folders=[folder]) == 1
    assert files_in(folder) == earlier and (folder / "kept.png").read_bytes() == b"earlier run"
    assert temp_files(tmp_path) == []


# --------------------------------------------------------------------------------- a stage outlives no dvc

SLEEPER = """
import os, sys, time
from pathlib import Path
from fmproto.pipeline import io
from fmproto.pipeline import guard

with guard.stage_errors("sleeper", files=["out.json"]):
    Path(os.environ["STAGE_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(float(sys.argv[1]))
    io.write_json("out.json", {"slept": float(sys.argv[1])})
"""


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: only its parent has not collected it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {seconds} s"
        time.sleep(0.05)


@pytest.mark.e2e
def test_a_stage_stops_when_dvc_is_killed(tmp_path):
    """SIGTERM to `dvc repro` alone: its stage, 60 s from writing its output, is gone within seconds,
    says why on dvc's stderr, and writes nothing."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    run([BIN / "dvc", "init", "-q"], repo)
    (repo / "sleeper.py").write_text(SLEEPER)
    (repo / "dvc.yaml").write_text("stages:\n  sleeper:\n    cmd: python sleeper.py 60\n"
                                   "    deps: [sleeper.py]\n    outs: [out.json]\n")
    pid_file = tmp_path / "stage.pid"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "STAGE_PID_FILE": str(pid_file)}
    with open(tmp_path / "dvc.log", "wb") as log:
        dvc = subprocess.Popen([BIN / "dvc", "repro"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    stage = None
    try:
        wait_for(lambda: pid_file.exists() or dvc.poll() is not None, 120, "the stage did not start")
        assert dvc.poll() is None, (tmp_path / "dvc.log").read_text()
        stage = int(pid_file.read_text())
        dvc.send_signal(signal.SIGTERM)
        dvc.wait(timeout=60)
        wait_for(lambda: not running(stage), 5, "the stage still runs")
    finally:
        if stage is not None and running(stage):
            os.kill(stage, signal.SIGKILL)
        if dvc.poll() is None:
            dvc.kill()
            dvc.wait()
    assert not (repo / "out.json").exists() and temp_files(repo) == []
    log = (tmp_path / "dvc.log").read_text()
    assert f"sleeper: error: stopped: dvc (pid {dvc.pid}) exited; no output written\n" in log, log


FAKE_DVC = """#!{python}
# Stands in for dvc: starts the stage command, then exits once the stage is ready to commit.
import os, subprocess, sys, time
subprocess.Popen(sys.argv[1:])
while not os.path.exists(os.environ["READY_FILE"]):
    time.sleep(0.02)
"""

READY_TO_COMMIT = """
import os, sys, time
from pathlib import Path
from fmproto.pipeline import io
from fmproto.pipeline import guard

guard.DVC_POLL_SECONDS = 3600  # the watch never looks: only the check before the commit can see dvc gone
with guard.stage_errors("stage", files=[sys.argv[1]]):
    Path(os.environ["STAGE_PID_FILE"]).write_text(str(os.getpid()))
    io.write_json(sys.argv[1], {"written": True})
    Path(os.environ["READY_FILE"]).touch()
    while not Path(os.environ["DVC_GONE_FILE"]).exists():
        time.sleep(0.02)
"""


@pytest.mark.e2e
def test_a_stage_whose_dvc_exited_refuses_to_commit(tmp_path):
    """dvc exits while the stage finishes its work, unseen by the watch: the commit refuses."""
    fake = tmp_path / "bin" / "dvc"
    fake.parent.mkdir()
    fake.write_text(FAKE_DVC.format(python=sys.executable))
    fake.chmod(0o755)
    (tmp_path / "stage.py").write_text(READY_TO_COMMIT)
    files = {name: tmp_path / name for name in ("READY_FILE", "DVC_GONE_FILE", "STAGE_PID_FILE")}
    env = {**os.environ, "DVC_STAGE": "stage", **{name: str(path) for name, path in files.items()}}
    out = tmp_path / "out.json"
    with open(tmp_path / "stage.log", "wb") as log:
        dvc = subprocess.Popen([fake, sys.executable, tmp_path / "stage.py", out], env=env, stdout=log, stderr=log)
    dvc.wait(timeout=60)
    stage = int(files["STAGE_PID_FILE"].read_text())
    files["DVC_GONE_FILE"].touch()
    try:
        wait_for(lambda: not running(stage), 30, "the stage still runs")
    finally:
        if running(stage):
            os.kill(stage, signal.SIGKILL)
    assert (tmp_path / "stage.log").read_text() == f"stage: error: stopped: dvc (pid {dvc.pid}) exited; no output written\n"
    assert not out.exists() and temp_files(tmp_path) == []
