"""fmproto.pipeline.guard and io.transaction: a failed run changes nothing that existed and leaves nothing new."""

import pytest

from fmproto.pipeline import io
from fmproto.pipeline import guard


def run_failing(files, folders, body):
    with pytest.raises(SystemExit) as info:
        with guard.stage_errors("stage", files=files, folders=folders):
            body()
    return info.value.code


def test_failure_keeps_existing_files_and_removes_new_ones(tmp_path, capsys):
    existing = tmp_path / "metrics.json"
    existing.write_text('{"old": 1}\n')
    figures = tmp_path / "figures"

    def body():
        io.write_json(existing, {"new": 2})
        io.write_csv(figures / "deep" / "table.csv", __import__("pandas").DataFrame({"a": [1]}))
        raise ValueError(f"{tmp_path / 'input.npz'}: broken")

    assert run_failing([existing], [figures], body) == 1
    assert existing.read_text() == '{"old": 1}\n'
    assert not figures.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert capsys.readouterr().err == f"stage: error: {tmp_path / 'input.npz'}: broken\n"


def test_failure_inside_an_existing_folder_keeps_its_content(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")

    def body():
        io.write_json(folder / "new.json", {"a": 1})
        raise OSError("disk full")

    assert run_failing([], [folder], body) == 1
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_success_writes_everything_at_the_end(tmp_path):
    target = tmp_path / "out" / "a.json"
    with guard.stage_errors("stage", files=[target]):
        io.write_json(target, {"a": 1})
        assert not target.exists()  # held back until the whole run succeeded
        io.write_json(target, {"a": 2})  # the last write wins
    assert io.read_json(target) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_bug_keeps_its_traceback_but_no_output(tmp_path):
    target = tmp_path / "a.json"
    with pytest.raises(KeyError):
        with guard.stage_errors("stage", files=[target]):
            io.write_json(target, {"a": 1})
            raise KeyError("bug")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [".", "reports"])
def test_an_existing_folder_as_output_file_is_a_usage_error(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "keep.png").write_bytes(b"x")
    ran = []
    assert run_failing([name], [], lambda: ran.append(1)) == 1
    assert ran == [] and (tmp_path / "reports" / "keep.png").read_bytes() == b"x"
    assert capsys.readouterr().err == f"stage: error: {name}: is an existing folder; give a file path for this output\n"


def test_an_existing_file_as_output_folder_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run_failing([], [tmp_path / "file"], lambda: None) == 1
    assert (tmp_path / "file").read_text() == "x"


def test_leftovers_of_a_killed_run_are_removed_and_nothing_else(tmp_path):
    folder = tmp_path / "plots"
    folder.mkdir()
    leftover = folder / f".rows.csv.abc123{io.TEMP_MARK}.csv"
    leftover.write_text("partial")
    beside = tmp_path / f".metrics.json.x1{io.TEMP_MARK}.json"
    beside.write_text("partial")
    other = tmp_path / f".other.json.x1{io.TEMP_MARK}.json"  # another output's leftover: not ours
    other.write_text("x")
    (folder / "rows.csv").write_text("kept")
    with guard.stage_errors("stage", files=[tmp_path / "metrics.json"], folders=[folder]):
        pass
    assert not leftover.exists() and not beside.exists() and other.exists()
    assert (folder / "rows.csv").read_text() == "kept"


def test_one_line_cuts_long_messages():
    message = guard.one_line(ValueError("x" * 1000 + "\nsecond line"))
    assert len(message) == guard.MAX_MESSAGE and message.endswith("...")
    assert guard.one_line(ValueError("a\nb")) == "a"


def make_special(tmp_path, kind: str) -> str:
    """An existing path that is not a regular file, as a user could name it for an output."""
    import os
    import socket

    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "link-to-file":
        (tmp_path / "real.json").write_text("mine")
        path.symlink_to(tmp_path / "real.json")
    elif kind == "link-to-nothing":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "link-to-device":
        path.symlink_to("/dev/null")
    else:
        return kind  # a device by its own name
    return str(path)


@pytest.mark.parametrize("kind, problem", [
    ("/dev/null", "is a character device; give a new path or a regular file"),
    ("fifo", "is a FIFO; give a new path or a regular file"),
    ("socket", "is a socket; give a new path or a regular file"),
    ("link-to-file", "is a symbolic link to a regular file: it would be replaced by a file, not written through; "
                     "give a new path or a regular file"),
    ("link-to-nothing", "is a symbolic link to nothing; give a new path or a regular file"),
    ("link-to-device", "is a symbolic link to a character device; give a new path or a regular file"),
])
def test_an_output_file_that_is_not_a_regular_file_is_refused_before_any_work(tmp_path, capsys, kind, problem):
    import os

    path = make_special(tmp_path, kind)
    before = os.lstat(path)
    ran = []
    assert run_failing([path], [], lambda: ran.append(1)) == 1
    assert ran == [] and capsys.readouterr().err == f"stage: error: {path}: {problem}\n"
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (before.st_ino, before.st_mode, before.st_mtime_ns)
    if kind == "link-to-file":
        assert (tmp_path / "real.json").read_text() == "mine"


def test_an_output_folder_that_is_a_fifo_or_under_a_file_is_refused(tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "fifo")
    assert run_failing([], [tmp_path / "fifo"], lambda: None) == 1
    assert capsys.readouterr().err == f"stage: error: {tmp_path / 'fifo'}: is a FIFO; give a folder path for this output\n"
    (tmp_path / "file").write_text("x")
    assert run_failing([tmp_path / "file" / "m.json"], [], lambda: None) == 1
    assert capsys.readouterr().err == (f"stage: error: {tmp_path / 'file' / 'm.json'}: cannot be created: "
                                       f"{tmp_path / 'file'} is a regular file, not a folder\n")
    assert (tmp_path / "file").read_text() == "x"


def test_a_fifo_inside_an_output_folder_is_refused_when_written(tmp_path, capsys):
    """A file the stage writes inside its output folder is checked as it is written."""
    import os

    folder = tmp_path / "figures"
    folder.mkdir()
    os.mkfifo(folder / "b.png")
    assert run_failing([], [folder], lambda: [io.write_json(folder / name, {}) for name in ("a.png", "b.png")]) == 1
    assert capsys.readouterr().err == f"stage: error: {folder / 'b.png'}: is a FIFO; give a new path or a regular file\n"
    assert sorted(p.name for p in folder.iterdir()) == ["b.png"]
