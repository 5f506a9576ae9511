"""fmproto.pipeline.params.load: params.yaml read exactly as DVC reads it, and hostile YAML refused in one line.

The reference is DVC itself: ``dvc.utils.serialize.parse_yaml`` (what ``dvc.lock`` and
``dvc params diff`` come from) in process, and the ``dvc params diff`` command end to end.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dvc.utils.serialize import YAMLFileCorruptedError, parse_yaml

from conftest import REPO
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import evaluate as evaluate_params

# Plain scalars on which YAML 1.1 (PyYAML) and YAML 1.2 (ruamel.yaml, DVC) disagree, and a few more.
TRICKY = {
    "octal_looking": ("012", 12),
    "sexagesimal": ("1:20", "1:20"),
    "yes": ("yes", "yes"),
    "on": ("on", "on"),
    "no": ("No", "No"),
    "small_float": ("1e-4", 0.0001),
    "big_float": ("1E3", 1000.0),
    "hex": ("0x1F", 31),
    "octal": ("0o17", 15),
    "underscores": ("1_000", 1000),
    "plus": ("+12", 12),
    "dot_float": (".5", 0.5),
    "bool": ("true", True),
    "tilde": ("~", None),
    "infinity": (".inf", float("inf")),
}


def typed(value):
    """A value with the type of every part spelled out, so that 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return {key: typed(v) for key, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return type(value).__name__, value


def write(tmp_path, text: str, name: str = "params.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def refused(path) -> str:
    with pytest.raises(P.ParamError) as info:
        P.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 300
    return message


# ---------------------------------------------------------------------------------------------------- the dialect


def test_tricky_scalars_are_read_as_dvc_reads_them(tmp_path):
    path = write(tmp_path, "evaluate:\n" + "".join(f"  {key}: {text}\n" for key, (text, _) in TRICKY.items()))
    loaded = P.load(path)
    assert typed(loaded) == typed({"evaluate": {key: value for key, (_, value) in TRICKY.items()}})
    assert typed(loaded) == typed(parse_yaml(path.read_text(encoding="utf-8"), str(path)))


@pytest.mark.parametrize("text", [
    (REPO / "params.yaml").read_text(encoding="utf-8"),
    "",
    "# nothing but a comment\n",
    "0\n",
    "evaluate: &base {k: 3, metric: cosine}\nsplit:\n  <<: *base\n  k: 4\n",
    "data: {classes: [a, 'b', \"c\", d e, 'yes', 012]}\n",
    "%YAML 1.1\n---\nevaluate: {k: 012, flag: yes}\n",
    "evaluate:\n  text: |\n    two\n    lines\n  folded: >\n    one\n    line\n",
    "evaluate: {a: &x [1, 2], b: *x, c: [*x, *x]}\n",
    "\ufeffevaluate: {k: 1}\r\n",
])
def test_load_agrees_with_dvc(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_bytes(text.encode("utf-8"))
    assert typed(P.load(path)) == typed(parse_yaml(path.read_text(encoding="utf-8"), str(path)))


def test_stages_see_the_yaml_1_2_value(tmp_path):
    committed = (REPO / "params.yaml").read_text()
    assert "\n  k: 5\n" in committed
    path = write(tmp_path, committed.replace("\n  k: 5\n", "\n  k: 012\n"))
    assert evaluate_params.read(path)["k"] == 12
    for text, shown in (("1:20", "'1:20'"), ("yes", "'yes'"), ("1e1", "10.0")):
        path = write(tmp_path, committed.replace("\n  k: 5\n", f"\n  k: {text}\n"))
        with pytest.raises(P.ParamError, match=f"evaluate.k must be an integer; got {shown}$"):
            evaluate_params.read(path)


@pytest.mark.e2e
def test_dvc_params_diff_shows_what_the_stages_read(tmp_path):
    """The real ``dvc params diff`` in a scratch repository: every value it shows is the one ``load`` gives."""
    from repos import BIN, git, run

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    run([BIN / "dvc", "init", "-q"], repo)
    tricky = {key: text for key, (text, _) in TRICKY.items() if key != "infinity"}  # JSON has no infinity
    write(repo, "evaluate:\n" + "".join(f"  {key}: 0\n" for key in tricky))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "zeros")
    path = write(repo, "evaluate:\n" + "".join(f"  {key}: {text}\n" for key, text in tricky.items()))
    shown = json.loads(run([BIN / "dvc", "params", "diff", "--all", "--json"], repo).stdout)["params.yaml"]
    loaded = P.load(path)["evaluate"]
    assert typed({dotted: change["new"] for dotted, change in shown.items()}) == typed(
        {f"evaluate.{key}": value for key, value in loaded.items()})
    assert shown["evaluate.octal_looking"]["new"] == 12 and shown["evaluate.sexagesimal"]["new"] == "1:20"


# ---------------------------------------------------------------------------------------------------- refused files


@pytest.mark.parametrize("text, message", [
    ("evaluate: {k: 5}\nsplit: {}\nevaluate: {k: 7}\n", "duplicate key evaluate (lines 1 and 3)"),
    ("evaluate:\n  k: 5\n  method: knn\n  k: 7\n", "duplicate key evaluate.k (lines 2 and 4)"),
    ("kmeans:\n  n_prototypes:\n    Sandal: 3\n    Shirt: 2\n    Sandal: 4\n",
     "duplicate key kmeans.n_prototypes.Sandal (lines 3 and 5)"),
    ("evaluate:\n  explain_confusions:\n  - {a: 1, a: 2}\n", r"duplicate key evaluate.explain_confusions\[0\].a \(lines 3 and 3\)"),
    ("evaluate:\n  12: 1\n  012: 2\n", "duplicate key evaluate.12 (lines 2 and 3)"),  # the same int in YAML 1.2
])
def test_duplicate_keys_are_refused_at_any_depth(tmp_path, text, message):
    path = write(tmp_path, text)
    assert refused(path).endswith(message.replace("\\", ""))
    with pytest.raises(YAMLFileCorruptedError):  # DVC refuses the same file
        parse_yaml(text, str(path))


@pytest.mark.parametrize("text, message", [
    ("evaluate: {k: [\n", "not valid YAML: while parsing a flow node; expected the node content, but found "
                          "'<stream end>' (line 2, column 1)"),
    ("evaluate:\n\tk: 1\n", "not valid YAML: while scanning for the next token; found character '\\t' that "
                            "cannot start any token (line 2, column 1)"),
    ("evaluate: {}\n---\nsplit: {}\n", "not valid YAML: expected a single document in the stream; but found "
                                       "another document (line 2, column 1)"),
    ("evaluate: {k: !!python/object:os.system x}\n", "not valid YAML: could not determine a constructor for the "
                                                     "tag 'tag:yaml.org,2002:python/object:os.system' (line 1, column 15)"),
    ("evaluate: {k: !!bool maybe}\n", "not valid YAML: KeyError 'maybe'"),
    ("evaluate: {k: 2001-13-45}\n", "not valid YAML: month must be in 1..12"),
    ("evaluate:\n  ? [a, b]\n  : 1\n", "a key must be a single value, not a list or mapping (line 2, column 5)"),
    ("evaluate: &a\n  k: *a\n", "evaluate.k is an alias of a value that contains it (line 1, column 11)"),
    ("evaluate: {k: " + "[" * 3000 + "]" * 3000 + "}\n", "not valid YAML: nested too deeply"),
    ("- a\n- b\n", "must be a mapping of sections; got list"),
])
def test_malformed_yaml_is_one_line_with_its_place(tmp_path, text, message):
    assert refused(write(tmp_path, text)).endswith(message)


def test_not_utf8_and_too_big(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"evaluate: {k: \xff}\n")
    assert refused(path).endswith("not valid UTF-8 (byte 0xff at offset 14)")
    path.write_text("evaluate: {k: 1}\n" + "#" * P.MAX_CHARS)
    assert refused(path).endswith(f"more than {P.MAX_CHARS:,} characters; is it the right file?")


def test_a_params_path_that_is_not_a_regular_file_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "params.yaml"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    assert refused(fifo) == f"{fifo}: is a FIFO, not a regular file"
    assert refused(tmp_path) == f"{tmp_path}: is a folder, not a regular file"
    assert refused(Path("/dev/null")) == "/dev/null: is a device or socket, not a regular file"


@pytest.mark.parametrize("section, hint", [
    ("evalute", "did you mean 'evaluate'?"),
    ("knn-scaling", "did you mean 'knn_scaling'?"),
    ("Data", "did you mean 'data'?"),
    ("paths", "known: data, ingest, dedup, split, centroids, kmeans, knn_scaling, ann, ann_frontier, features, gmlvq, "
              "evaluate"),
])
def test_unknown_sections_are_refused_with_the_nearest_name(tmp_path, section, hint):
    text = (REPO / "params.yaml").read_text() + f"{section}:\n  k: 3\n"
    assert refused(write(tmp_path, text)) == f"{tmp_path / 'params.yaml'}: unknown section {section!r} ({hint})"


# ---------------------------------------------------------------------------------------------------- aliases


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """About 1 KB that expands to ``width ** levels`` values: each list holds ``width`` copies of the last."""
    lines = ["evaluate:", f"  l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n  k: *l{levels - 1}\n"


def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    """In a child limited to 1 GB of address space (the old loader took 2.9 GB and more), peak under 20 MB."""
    path = write(tmp_path, alias_bomb())
    assert len(path.read_bytes()) < 1200
    script = textwrap.dedent(f"""
        import resource, sys, tracemalloc
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from fmproto.pipeline import params as P
        from fmproto.pipeline.specs import evaluate as evaluate_params
        from fmproto.pipeline.settings import method_settings  # what evaluate-valid, evaluate-test and explain call
        tracemalloc.start()
        for read in (lambda: evaluate_params.read({str(path)!r}),
                     lambda: method_settings({str(path)!r}, ["a", "b"])):
            try:
                read()
            except P.ParamError as err:
                print(err)
        print(tracemalloc.get_traced_memory()[1])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    *messages, peak = result.stdout.splitlines()
    expected = f"{path}: more than 100,000 values once its aliases are expanded (line 7, column 7); " \
               "is an alias repeated inside another?"
    assert messages == [expected, expected]
    assert int(peak) < 20e6


def test_aliases_within_the_budget_are_read(tmp_path):
    path = write(tmp_path, alias_bomb(levels=3) + "  method: *l0\n")
    loaded = P.load(path)
    assert loaded["evaluate"]["k"] == [[["x"] * 9] * 9] * 9
    assert typed(loaded) == typed(parse_yaml(path.read_text(), str(path)))


def test_a_long_string_repeated_by_aliases_is_refused(tmp_path):
    path = write(tmp_path, f"evaluate:\n  s: &s {'x' * (P.MAX_CHARS // 5)}\n  k: [*s, *s, *s, *s, *s, *s]\n")
    assert refused(path).endswith(f"more than {P.MAX_CHARS:,} characters of values once its aliases are expanded "
                                  "(line 3, column 6)")


# ---------------------------------------------------------------------------------------------------- at a stage


@pytest.mark.parametrize("text, line", [
    ("data: {verify: none}\nevalute: {k: 3}\n", "params.yaml: unknown section 'evalute' (did you mean 'evaluate'?)"),
    ("data: {verify: none}\ndata: {verify: fashion-mnist}\n", "params.yaml: duplicate key data (lines 1 and 2)"),
    ("data:\n  verify: none\n" + alias_bomb(), "params.yaml: more than 100,000 values once its aliases are expanded "
                                              "(line 9, column 7); is an alias repeated inside another?"),
])
def test_the_fetch_stage_prints_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, text, line):
    from stages import fetch

    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    with pytest.raises(SystemExit) as stop:
        fetch.main(["--params", "params.yaml", "--local", "raw", "--out", "out"])
    assert stop.value.code == 1
    assert capsys.readouterr() == ("", f"fetch: error: {line}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
