"""The leaderboard workflow (.github/workflows/leaderboard.yml): pull requests are validated with
the base branch's code and only their submissions are taken; third-party actions are pinned to
commit SHAs; a pull request that changes submissions and code is refused by a real run of the
workflow's own check on real git merges."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from test_leaderboard_support import git

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "leaderboard.yml"
REVERIFY = WORKFLOWS / "leaderboard-reverify.yml"
PINNED = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+(?:\.\d+)*)$")
MAJOR_VERSIONS = {
    "actions/checkout": "v4",
    "actions/setup-python": "v5",
    "actions/upload-artifact": "v4",
    "actions/upload-pages-artifact": "v3",
    "actions/deploy-pages": "v4",
}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True


def check_steps(workflow: dict) -> list[dict]:
    return workflow["jobs"]["check"]["steps"]


def step(workflow: dict, name: str) -> dict:
    (found,) = [s for s in check_steps(workflow) if s.get("name") == name]
    return found


@pytest.mark.parametrize("path", [WORKFLOW, REVERIFY], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version_in_a_comment(path):
    lines = [line for line in path.read_text().splitlines() if "uses:" in line]
    assert lines
    pinned = [PINNED.match(line) for line in lines]
    assert all(pinned), [line for line, match in zip(lines, pinned, strict=True) if not match]
    for match in pinned:
        action, _, version = match.groups()
        assert version.split(".")[0] == MAJOR_VERSIONS[action], match.group(0)


def test_pull_requests_run_the_base_branchs_workflow_with_a_read_only_token(workflow):
    assert set(triggers(workflow)) >= {"pull_request_target", "push"}
    assert "pull_request" not in triggers(workflow)
    assert workflow["permissions"] == {"contents": "read"}
    assert "permissions" not in workflow["jobs"]["check"]
    assert "github.event.pull_request.number" in workflow["concurrency"]["group"]


def test_the_package_comes_from_the_base_commit_and_the_pull_request_is_data(workflow):
    steps = check_steps(workflow)
    checkouts = [s for s in steps if s.get("uses", "").startswith("actions/checkout@")]
    base, pull_request = checkouts
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert "path" not in base["with"]
    assert pull_request["with"]["path"] == "pull-request"
    assert all(c["with"]["persist-credentials"] is False for c in checkouts)
    install = step(workflow, "Install the base commit's package")
    assert "pip install -e ." in install["run"] and "working-directory" not in install
    for s in steps:
        if "pull-request" in s.get("run", "") and s["name"] != "Submissions only":
            assert s["name"] == "Take only the pull request's submissions"
    take = step(workflow, "Take only the pull request's submissions")["run"]
    assert "cp -a pull-request/leaderboard/submissions leaderboard/submissions" in take
    names = [s.get("name") for s in steps]
    order = [
        "Submissions only",
        "Install the base commit's package",
        "Take only the pull request's submissions",
        "Validate submissions",
        "Verify the changed submissions' models",
        "Build site",
    ]
    assert [n for n in names if n in order] == order
    validate = step(workflow, "Validate submissions")
    assert validate["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    assert '--base "$BASE_SHA"' in validate["run"]


def test_pull_requests_verify_their_changed_submissions_and_main_verifies_all(workflow):
    verify = step(workflow, "Verify the changed submissions' models")["run"]
    assert "done < changed-submissions.txt" in verify
    assert "python -m cycl_bench leaderboard verify $files" in verify
    assert "> changed-submissions.txt" in step(workflow, "Submissions only")["run"]
    build = {s.get("name"): s for s in workflow["jobs"]["build"]["steps"]}
    assert "leaderboard verify" in build["Verify every entry's models"]["run"]


def test_the_weekly_reverification_opens_an_issue_with_the_only_write_token():
    reverify = yaml.safe_load(REVERIFY.read_text())
    assert "schedule" in triggers(reverify)
    assert reverify["permissions"] == {"contents": "read"}
    (job,) = reverify["jobs"].values()
    assert job["permissions"] == {"contents": "read", "issues": "write"}
    steps = {s.get("name"): s for s in job["steps"]}
    assert "leaderboard verify" in steps["Re-verify every entry"]["run"]
    opener = steps["Open an issue when an entry drifted"]
    assert opener["if"] == "steps.verify.outputs.code != '0'"
    assert "gh issue create" in opener["run"] and "gh issue comment" in opener["run"]
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False


# -- the "Submissions only" check, run by bash on real merge commits ----------------------------


def merged_pull_request(tmp_path: Path, change) -> Path:
    """A work folder holding `pull-request/`: a merge of a branch made by `change` into main,
    checked out at the merge commit, as the workflow's second checkout leaves it."""
    repository = tmp_path / "pull-request"
    repository.mkdir()
    git(repository, "init", "-q", "-b", "main")
    for name in ("cycl_bench/leaderboard/validate.py", "leaderboard/submissions/a/old.json"):
        (repository / name).parent.mkdir(parents=True, exist_ok=True)
        (repository / name).write_text("base\n")
    git(repository, "add", ".")
    git(repository, "commit", "-q", "-m", "base")
    git(repository, "checkout", "-q", "-b", "contribution")
    change(repository)
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", "contribution")
    git(repository, "checkout", "-q", "main")
    git(repository, "merge", "-q", "--no-ff", "-m", "merge", "contribution")
    return tmp_path


def run_check(workflow: dict, work: Path) -> subprocess.CompletedProcess:
    script = step(workflow, "Submissions only")["run"]
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )


def write(path: Path, text: str = "new\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_pull_request_of_submissions_only_passes_the_check(workflow, tmp_path):
    work = merged_pull_request(
        tmp_path, lambda repo: write(repo / "leaderboard/submissions/a/new.json")
    )
    done = run_check(workflow, work)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_pull_request_of_code_only_passes_the_check(workflow, tmp_path):
    work = merged_pull_request(
        tmp_path, lambda repo: write(repo / "cycl_bench/leaderboard/validate.py")
    )
    assert run_check(workflow, work).returncode == 0


def test_a_pull_request_of_submissions_and_validator_code_fails_the_check(workflow, tmp_path):
    def change(repo: Path) -> None:
        write(repo / "leaderboard/submissions/a/new.json")
        write(repo / "cycl_bench/leaderboard/validate.py", "def validate(paths): return []\n")

    done = run_check(workflow, merged_pull_request(tmp_path, change))
    assert done.returncode == 1
    assert "::error title=Submissions and code in one pull request::" in done.stdout
    assert "  cycl_bench/leaderboard/validate.py" in done.stdout


def test_code_moved_into_the_submissions_folder_fails_the_check(workflow, tmp_path):
    def move(repo: Path) -> None:
        source = repo / "cycl_bench/leaderboard/validate.py"
        write(repo / "leaderboard/submissions/a/validate.py", source.read_text())
        source.unlink()

    done = run_check(workflow, merged_pull_request(tmp_path, move))
    assert done.returncode == 1
    assert "  cycl_bench/leaderboard/validate.py" in done.stdout
