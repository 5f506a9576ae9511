"""The GitHub Actions workflows: what zizmor finds (offline), and the shape GitHub's pattern for untrusted code
asks for, read from the YAML: actions pinned by commit, no expression pasted into a shell, a read-only job
for the pull request's code, and a posting workflow that never checks out or runs it."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s+(v\d+\.\d+\.\d+)\s*$")
# A posting step that names any of these runs something other than bash, jq and gh on the artifact.
RUNS_CODE = re.compile(r"(?<![\w-])(make|python3?|pip|dvc|fmproto|node|npm|npx|source|eval|exec|sh|bash|chmod)(?![\w-])"
                       r"|\./|\.venv")


def load(name: str) -> dict:
    # YAML 1.2 (ruamel), as GitHub reads it: `on` stays a key, not the boolean PyYAML makes of it.
    return YAML(typ="safe").load((WORKFLOWS / name).read_text())


def workflows() -> dict[str, dict]:
    return {path.name: load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def zizmor() -> str:
    """The zizmor of the environment running the tests; skipped outside the one `make test` builds."""
    found = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    if found is None:
        if Path(sys.prefix, ".installed-test").exists():
            pytest.fail("zizmor is in requirements/test.txt but not installed: run `make env-test`")
        pytest.skip("zizmor is not installed (make env-test installs it)")
    return found


def findings(*flags: str) -> list[dict]:
    result = subprocess.run([zizmor(), "--offline", "--min-severity", "medium", "--format", "json", *flags,
                             ".github/workflows/"], capture_output=True, text=True, cwd=REPO)
    # Exit codes 11-14 mean findings; anything else but 0 is zizmor failing (a workflow it cannot parse).
    assert result.returncode in (0, 11, 12, 13, 14), result.stderr
    return json.loads(result.stdout)


def test_zizmor_finds_nothing_at_medium_or_above():
    found = findings()
    assert found == [], [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in found]


def test_the_only_finding_zizmor_is_told_to_ignore_is_the_workflow_run_trigger():
    """An ignore comment is a decision: this one, with its reason, and no other."""
    found = [(f["ident"], f["locations"][0]["symbolic"]["key"]["Local"]["verbatim_path"])
             for f in findings("--no-ignores")]
    assert found == [("dangerous-triggers", ".github/workflows/metrics-comment.yml")]


def test_every_action_is_pinned_by_commit_with_its_tag_in_a_comment():
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"^\s*(-\s+)?uses:", line):
                match = PINNED.match(line)
                assert match, f"{path.name}:{number}: not `owner/action@<40-hex commit>  # vX.Y.Z`: {line.strip()}"
                pins.setdefault(match[1], set()).add((match[2], match[3]))
    assert pins, "no action found: the pattern no longer reads the workflows"
    assert {action: sorted(p) for action, p in pins.items() if len(p) > 1} == {}, "one commit per action"


def test_no_expression_is_pasted_into_a_shell():
    for name, workflow in workflows().items():
        for job_id, step in steps(workflow):
            assert "${{" not in step.get("run", ""), f"{name}: {job_id}: {step.get('name')}: pass it through env:"
            if "actions/github-script@" in step.get("uses", ""):
                assert "${{" not in step["with"]["script"], f"{name}: {job_id}: {step.get('name')}"


def test_every_job_declares_its_permissions_and_the_workflow_none():
    for name, workflow in workflows().items():
        assert workflow.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in workflow["jobs"].items():
            assert isinstance(job.get("permissions"), dict), f"{name}: {job_id} has no permissions:"
        assert "pull_request_target" not in workflow["on"], f"{name}: pull_request_target runs with a write token"


def test_the_job_running_the_pull_requests_code_can_only_read():
    workflow = load("metrics.yml")
    assert "pull_request" in workflow["on"]
    for job_id, job in workflow["jobs"].items():
        assert set(job["permissions"].values()) <= {"read", "none"}, f"metrics.yml: {job_id}: {job['permissions']}"
        for _, step in steps({"jobs": {job_id: job}}):
            if "actions/checkout@" in step.get("uses", ""):
                assert step["with"]["persist-credentials"] is False, "the token would stay in .git/config"


def test_the_posting_workflow_runs_on_the_metrics_run_and_never_on_its_code():
    poster, metrics = load("metrics-comment.yml"), load("metrics.yml")
    assert poster["on"]["workflow_run"]["workflows"] == [metrics["name"]]
    uploaded = {step["with"]["name"] for _, step in steps(metrics) if "upload-artifact@" in step.get("uses", "")}
    for job_id, step in steps(poster):
        uses, run = step.get("uses", ""), step.get("run", "")
        assert not uses.startswith("./"), f"{job_id}: a local action is the pull request's code"
        assert uses.split("@")[0] in ("", "actions/download-artifact"), f"{job_id}: {uses}"
        if uses:
            assert step["with"]["name"] in uploaded
            assert step["with"]["path"].startswith("${{ runner.temp }}"), "the artifact stays out of the workspace"
        assert not RUNS_CODE.search(run), f"{job_id}: {step.get('name')}: {RUNS_CODE.search(run)[0]!r}"
    for job_id, job in poster["jobs"].items():
        assert job["permissions"] == {"actions": "read", "pull-requests": "write"}, job_id
        assert "github.event.workflow_run.event == 'pull_request'" in job["if"]
