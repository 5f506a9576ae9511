"""The posting step of metrics-comment.yml, run as GitHub runs it (bash -eo pipefail) against a stand-in `gh`:
it posts once, then updates its own comment; and it treats the artifact, written by the pull request's code,
as data (a number that is not one, a moved head, a huge or hostile report)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- fmproto-metrics -->"
HEAD = "a" * 40
RUN_URL = "https://github.com/o/r/actions/runs/7"
BOT = "github-actions[bot]"

# A stand-in for the GitHub CLI: answers `gh api` from state.json and logs every call (the body it was given
# included) to calls.jsonl.
FAKE_GH = """\
import json, sys
from pathlib import Path
here = Path(__file__).parent
args = sys.argv[1:]
state = json.loads((here / "state.json").read_text())
body = None
if "--input" in args:
    body = json.loads(Path(args[args.index("--input") + 1]).read_text())
method = args[args.index("--method") + 1] if "--method" in args else "GET"
path = next(a for a in args[1:] if a.startswith("repos/"))
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({"method": method, "path": path, "body": body}) + "\\n")
parts = path.split("/")
if method == "GET" and parts[3] == "pulls":
    if parts[4] not in state["pulls"]:
        sys.exit("gh: Not Found (HTTP 404)")
    print(json.dumps({"number": int(parts[4]), "head": {"sha": state["pulls"][parts[4]]}}))
elif method == "GET" and parts[-1] == "comments":
    for page in state["pages"]:  # --paginate prints one JSON array a page
        print(json.dumps(page))
else:
    print("{}")
"""


def comment_step() -> dict:
    workflow = YAML(typ="safe").load((REPO / ".github" / "workflows" / "metrics-comment.yml").read_text())
    (job,) = workflow["jobs"].values()
    (step,) = [step for step in job["steps"] if "run" in step]
    return step


@pytest.fixture
def post(tmp_path):
    """Run the step with ``pr_number`` and ``report`` as the artifact; returns (exit code, output, calls)."""
    for tool in ("bash", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (GitHub's runners have it)")
    step = comment_step()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gh.py").write_text(FAKE_GH)
    (fake / "gh").write_text(f"#!/bin/sh\nexec {sys.executable} {fake / 'gh.py'} \"$@\"\n")
    (fake / "gh").chmod(0o755)
    artifact = tmp_path / "artifact"
    artifact.mkdir()

    def run(pr_number: str | bytes, report: str | bytes = "## fmproto: report\n", *, pulls=None, pages=((),),
            run_prs=()):
        (artifact / "pr-number").write_bytes(pr_number.encode() if isinstance(pr_number, str) else pr_number)
        (artifact / "report.md").write_bytes(report.encode() if isinstance(report, str) else report)
        (fake / "state.json").write_text(json.dumps({"pulls": pulls or {"12": HEAD}, "pages": [list(p) for p in pages]}))
        (fake / "calls.jsonl").write_text("")
        values = {"GH_TOKEN": "t", "REPO": "o/r", "ARTIFACT": str(artifact), "BODY": str(tmp_path / "comment.json"),
                  "HEAD_SHA": HEAD, "RUN_URL": RUN_URL, "RUN_PRS": json.dumps([{"number": n} for n in run_prs])}
        assert set(step["env"]) == set(values), "the step's env changed: give this test its values"
        env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), **values}
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in (fake / "calls.jsonl").read_text().splitlines()]
        return result.returncode, result.stdout + result.stderr, calls

    return run


def writes(calls: list[dict]) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in calls if c["method"] != "GET"]


def test_posts_a_marked_comment_when_there_is_none(post):
    code, out, calls = post("12\n", "## fmproto: this change against `origin/main`\n")
    assert code == 0, out
    assert writes(calls) == [("POST", "repos/o/r/issues/12/comments")]
    body = calls[-1]["body"]["body"]
    assert body.startswith(MARKER + "\n## fmproto: this change against `origin/main`\n")
    assert RUN_URL in body


def test_updates_its_own_comment_and_leaves_a_persons_alone(post):
    pages = [[{"id": 1, "user": {"login": "someone"}, "body": MARKER + " quoted"}],
             [{"id": 2, "user": {"login": BOT}, "body": "another bot comment"},
              {"id": 3, "user": {"login": BOT}, "body": MARKER + "\nold report"}]]
    code, out, calls = post("12", pages=pages)
    assert code == 0, out
    assert writes(calls) == [("PATCH", "repos/o/r/issues/comments/3")]
    assert "## fmproto: report" in calls[-1]["body"]["body"]


@pytest.mark.parametrize("pr_number", ["", "0", "-1", "1e3", "12 13", "12; touch pwned", "$(touch pwned)",
                                       "12345678901", b"\xff\xfe12"])
def test_a_pr_number_that_is_not_one_is_refused(post, tmp_path, pr_number):
    code, out, calls = post(pr_number)
    assert code != 0 and "pr-number must be a pull request number" in out
    assert calls == [] and not (tmp_path / "pwned").exists()


def test_a_number_outside_the_runs_pull_requests_is_refused(post):
    code, out, calls = post("12", run_prs=[13, 14])
    assert code != 0 and "#12 is not one of this run's: [13,14]" in out
    assert calls == []


def test_the_runs_own_pull_request_is_accepted(post):
    code, out, calls = post("12", run_prs=[12])
    assert code == 0, out
    assert writes(calls) == [("POST", "repos/o/r/issues/12/comments")]


def test_nothing_is_posted_when_the_pull_request_has_moved_on(post):
    code, out, calls = post("12", pulls={"12": "b" * 40})
    assert code == 0 and "not posted" in out
    assert writes(calls) == []


def test_an_unknown_pull_request_fails(post):
    code, out, calls = post("99")
    assert code != 0 and "Not Found" in out
    assert writes(calls) == []


def test_a_huge_or_hostile_report_is_cut_to_valid_text_and_never_run(post, tmp_path):
    report = b"$(touch pwned) `touch pwned` \xff\xfe " + "\u00e9".encode() * 200_000
    code, out, calls = post("12", report)
    assert code == 0, out
    body = calls[-1]["body"]["body"]
    assert len(body) <= 65_536 and "*The report is cut at 60000 characters" in body
    assert body.startswith(MARKER + "\n$(touch pwned) `touch pwned` \ufffd")
    assert not (tmp_path / "pwned").exists()
