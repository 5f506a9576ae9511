"""dvc.yaml stays honest: each stage's `.py` deps are exactly the repository modules its script imports.

The import closure is derived from the code (every `import` and `from ... import`, also inside
functions), over this repository's own modules; a package `__init__.py` counts only when it holds
code beyond its docstring. A dep that is missing means a core change would not rerun the stage; an
extra one means a change reruns it for nothing.
"""

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def module_file(name: str, root: Path = REPO) -> Path | None:
    """The repository file of dotted module ``name`` (a module or a package's __init__), or None."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the modules a file imports (``from a import b`` gives ``a.b`` when that is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def has_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)) for stmt in body)


def import_closure(script: Path, root: Path = REPO) -> set[str]:
    """Repository files ``script`` runs when it runs: itself and every module it imports, transitively."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
            for depth in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:depth]), root)
                if found is not None:
                    todo.append(found)
    return {str(p.relative_to(root)) for p in seen if p.name != "__init__.py" or has_code(p)}


def stage_script(cmd: str) -> Path:
    """The script a stage command runs: ``python -m stages.x`` gives ``stages/x.py``."""
    words = cmd.split()
    return REPO / (words[words.index("-m") + 1].replace(".", "/") + ".py")


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_its_import_closure(name):
    stage = STAGES[name]
    declared = {dep for dep in stage["deps"] if dep.endswith(".py")}
    closure = import_closure(stage_script(stage["cmd"]))
    assert declared == closure, (f"{name}: missing deps {sorted(closure - declared)}, "
                                 f"extra deps {sorted(declared - closure)}")


def test_a_missing_dep_is_caught(tmp_path):
    """The check itself: a module imported two levels down shows up in the closure."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""Docstring only."""\n')
    (tmp_path / "pkg" / "low.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "mid.py").write_text("def f():\n    from pkg import low\n")
    (tmp_path / "run.py").write_text("import pkg.mid\n")
    assert import_closure(tmp_path / "run.py", tmp_path) == {"run.py", "pkg/mid.py", "pkg/low.py"}
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg import low\n")
    assert "pkg/__init__.py" in import_closure(tmp_path / "run.py", tmp_path)


def test_no_module_imports_a_stage_script():
    """One-way doors: stage scripts import the package; nothing imports a stage script."""
    for path in [*REPO.glob("fmproto/**/*.py"), *REPO.glob("stages/*.py")]:
        assert not any(name.split(".")[0] == "stages" for name in imported_modules(path)), path


def test_the_committed_lock_matches_the_code():
    """dvc.lock was made on this code: every tracked source dep it records has the file's md5 now.

    Otherwise a fresh clone's first `dvc repro` reruns the stage and leaves dvc.lock modified (a
    comment edit to a dep after the last `dvc repro` is enough).
    """
    import hashlib

    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    stale = sorted(
        f"{name}: {dep['path']}"
        for name, entry in lock.items()
        for dep in entry.get("deps", [])
        if dep["path"].endswith(".py")
        and hashlib.md5((REPO / dep["path"]).read_bytes()).hexdigest() != dep["md5"]
    )
    assert not stale, f"dvc.lock is older than these deps (run dvc repro and commit it): {stale}"


# What every stage may depend on: plumbing that changes rarely (reading params, checking files,
# writing outputs all or nothing). Anything else is a dep only of the stages that use it.
PLUMBING = {"fmproto/pipeline/atomic.py", "fmproto/pipeline/checks.py", "fmproto/pipeline/guard.py",
            "fmproto/pipeline/io.py", "fmproto/pipeline/params.py"}


def params_sections(stage: dict) -> set[str]:
    """The params.yaml sections a stage declares (``kmeans`` or ``kmeans.seed`` both name kmeans)."""
    names = set()
    for entry in stage.get("params", []):
        # an entry is a key, or a mapping from a params file to its keys
        for key in ([k for keys in entry.values() for k in keys] if isinstance(entry, dict) else [entry]):
            names.add(str(key).split(".")[0])
    return names


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_section_spec_is_a_dep_only_of_its_readers(name):
    """Editing how ``kmeans.*`` is checked reruns kmeans and the stages that read kmeans params, no other."""
    stage = STAGES[name]
    specs = {Path(dep).stem for dep in stage["deps"] if dep.startswith("fmproto/pipeline/specs/")}
    assert specs <= params_sections(stage), f"{name} depends on specs of sections it does not read: {specs - params_sections(stage)}"


def test_what_every_stage_depends_on_is_plumbing():
    shared = set.intersection(*({dep for dep in stage["deps"] if dep.endswith(".py")} for stage in STAGES.values()))
    assert shared - {dep for dep in shared if dep.startswith("stages/")} <= PLUMBING


def test_index_files_and_the_image_reader_are_not_deps_of_fetch_or_ingest():
    for name in ("fetch", "ingest"):
        deps = set(STAGES[name]["deps"])
        assert "fmproto/search/ann_files.py" not in deps
        assert not any(dep.startswith(("fmproto/search/", "fmproto/evaluation/methods")) for dep in deps), name
    assert "fmproto/data/images.py" not in STAGES["ingest"]["deps"]


@pytest.mark.e2e
def test_a_kmeans_spec_edit_reruns_only_its_readers(repo):
    """The real `dvc status` after a comment line is appended to the kmeans spec module."""
    from repos import BIN, run

    spec = repo / "fmproto" / "pipeline" / "specs" / "kmeans.py"
    spec.write_text(spec.read_text() + "# a comment\n")
    status = yaml.safe_load(run([BIN / "dvc", "status", "--json"], repo).stdout or "{}")
    readers = {name for name, stage in STAGES.items() if "kmeans" in params_sections(stage)}
    assert set(status) == readers
    assert {"kmeans", "evaluate-valid", "evaluate-test", "explain-test"} == readers


def test_the_frontier_is_no_dep_of_the_index():
    index = STAGES["ann-index"]
    assert "ann_frontier" not in params_sections(index)
    assert not any("frontier" in dep for dep in index["deps"])


@pytest.mark.e2e
def test_an_ann_frontier_param_edit_reruns_only_the_frontier(repo):
    """The real `dvc status` after a frontier setting changes: models/ann.ann stays up to date."""
    from repos import BIN, run

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ann_frontier"]["recalls"] = [0.9]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = yaml.safe_load(run([BIN / "dvc", "status", "--json"], repo).stdout or "{}")
    assert set(status) == {"ann-frontier"}
