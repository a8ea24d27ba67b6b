"""`leaderboard validate`: valid submissions pass, each broken or hostile one fails with the
right JSON path and reason."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_leaderboard_support import make_claimed, make_submission, write_submission

from cycl_bench.cli import main
from cycl_bench.leaderboard.validate import validate

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "leaderboard" / "submissions"


def problems_of(path: Path, base: str | None = None) -> list[tuple[str, str]]:
    (checked,) = [c for c in validate([path], base=base) if c.path == path]
    return [(p.where, p.reason) for p in checked.problems]


def assert_fails(path: Path, where: str, words: str) -> None:
    problems = problems_of(path)
    assert any(w == where and words in r for w, r in problems), problems


def test_a_consistent_reproduced_submission_passes(tmp_path):
    path = write_submission(tmp_path, make_submission())
    assert problems_of(path) == []


def test_a_claimed_submission_passes(tmp_path):
    path = write_submission(tmp_path, make_claimed())
    assert problems_of(path) == []


def test_the_shipped_reference_entries_pass():
    files = sorted(SHIPPED.rglob("*.json"))
    assert len(files) >= 9
    failures = {str(c.path): c.problems for c in validate(files) if not c.ok}
    assert failures == {}


def test_tampered_summary_numbers_fail(tmp_path):
    data = make_submission()
    data["results"]["summary"]["final_accuracy"]["mean"] += 0.05
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results.summary.final_accuracy.mean", "the seeds give")


def test_a_tampered_per_seed_number_fails(tmp_path):
    data = make_submission()
    data["results"]["per_seed"][1]["bwt"] = 0.0
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results.per_seed[1].bwt", "the matrix gives")


def test_nan_fails(tmp_path):
    data = make_submission()
    data["results"]["per_seed"][0]["train_time_s"] = float("nan")
    path = write_submission(tmp_path, data)
    assert "NaN" in path.read_text()
    assert_fails(path, "$.results.per_seed[0].train_time_s", "not a finite number")


def test_synthetic_results_are_refused(tmp_path):
    path = write_submission(tmp_path, make_submission(data_source="synthetic"))
    assert_fails(path, "$.results.benchmark.data_source", "only runs on real data")


def test_two_seeds_are_not_enough(tmp_path):
    path = write_submission(tmp_path, make_submission(n_seeds=2))
    assert_fails(path, "$.results.per_seed", "at least 3")


def test_an_unregistered_strategy_fails(tmp_path):
    path = write_submission(tmp_path, make_submission(strategy="magic_forgetless"))
    assert_fails(path, "$.results.method.strategy", "not a registered name")


def test_an_unregistered_backbone_fails(tmp_path):
    path = write_submission(tmp_path, make_submission(backbone="resnet9000"))
    assert_fails(path, "$.results.method.backbone", "not a registered name")


def test_a_wrong_protocol_hash_fails(tmp_path):
    data = make_submission()
    data["results"]["benchmark"]["protocol_hash"] = "0123456789abcdef"
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results.benchmark.protocol_hash", "not the shipped protocol's hash")


def test_a_name_holding_a_path_fails(tmp_path):
    data = make_submission(name="../../etc/passwd")
    path = write_submission(tmp_path, data, file_name="etc-passwd.json")
    assert_fails(path, "$.entry.name", "must not look like a file path")


def test_a_file_name_that_does_not_match_the_entry_fails(tmp_path):
    path = write_submission(tmp_path, make_submission(name="Alpha"), file_name="beta.json")
    assert_fails(path, "$", "expected 'alpha.json'")


def test_a_file_in_another_benchmarks_folder_fails(tmp_path):
    source = write_submission(tmp_path, make_submission())
    moved = tmp_path / "split_cifar10" / source.name
    moved.parent.mkdir()
    source.rename(moved)
    assert_fails(moved, "$", "its benchmark is 'core50_nc'")


def test_a_fifty_megabyte_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "core50_nc" / "huge.json"
    path.parent.mkdir()
    with path.open("wb") as handle:
        handle.write(b"{")  # never valid JSON: a parse attempt would give another reason
        handle.truncate(50 * 2**20)
    assert problems_of(path) == [("$", "file is 50.0 MiB; submissions are capped at 5 MiB")]


def test_a_symbolic_link_is_refused(tmp_path):
    target = write_submission(tmp_path, make_submission(name="Real"))
    link = target.parent / "link.json"
    link.symlink_to(target)
    assert problems_of(link) == [("$", "symbolic links are not accepted; commit the file itself")]


def test_a_script_in_the_method_name_passes_validation(tmp_path):
    path = write_submission(tmp_path, make_submission(name="<script>alert(1)</script>"))
    assert path.name == "script-alert-1-script.json"
    assert problems_of(path) == []


def test_a_javascript_link_fails(tmp_path):
    data = make_submission()
    data["entry"]["code_url"] = "javascript:alert(1)"
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.entry.code_url", "http")


def test_a_duplicate_entry_fails(tmp_path):
    first = make_submission(name="First")
    copy = json.loads(json.dumps(first))
    copy["entry"]["name"] = "Second"
    write_submission(tmp_path, first)
    path = write_submission(tmp_path, copy)
    assert_fails(path, "$", "duplicate entry")


def test_a_fast_run_is_refused(tmp_path):
    data = make_submission()
    data["results"]["fast"] = True
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results.fast", "not accepted")


def test_a_wrong_type_is_reported_with_its_path(tmp_path):
    data = make_submission()
    data["results"]["per_seed"][2]["accuracy_matrix"][0][0] = "high"
    path = write_submission(tmp_path, data)
    problems = problems_of(path)
    assert [w for w, _ in problems] == ["$.results.per_seed[2].accuracy_matrix[0][0]"]


def test_an_unknown_schema_version_fails(tmp_path):
    data = make_submission()
    data["submission_version"] = 2
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.submission_version", "must be 1")


def _git(folder: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def committed_entry(tmp_path):
    """A repository whose main branch holds one entry."""
    _git(tmp_path, "init", "-q", "-b", "main")
    path = write_submission(tmp_path / "submissions", make_submission(name="Kept"))
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "entry")
    return path


def test_changing_an_existing_entry_is_refused(committed_entry):
    data = json.loads(committed_entry.read_text())
    data["entry"]["hardware"] = "a faster machine"
    committed_entry.write_text(json.dumps(data))
    problems = problems_of(committed_entry, base="main")
    assert problems == [
        ("$", "changes an existing entry on main; set entry.update to true to replace it")
    ]


def test_changing_an_existing_entry_marked_as_update_passes(committed_entry):
    data = json.loads(committed_entry.read_text())
    data["entry"]["hardware"] = "a faster machine"
    data["entry"]["update"] = True
    committed_entry.write_text(json.dumps(data))
    assert problems_of(committed_entry, base="main") == []


def test_an_unchanged_entry_passes_the_base_check(committed_entry):
    assert problems_of(committed_entry, base="main") == []


def test_cli_validate_prints_each_failure_and_exits_1(tmp_path, capsys):
    good = write_submission(tmp_path, make_submission(name="Good"))
    data = make_submission(name="Bad", n_seeds=2, data_source="synthetic")
    bad = write_submission(tmp_path, data)
    assert main(["leaderboard", "validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"ok   {good}" in out
    assert f"FAIL {bad}" in out
    assert "$.results.per_seed: 2 seed(s); at least 3 are required" in out
    assert "$.results.benchmark.data_source: 'synthetic' data" in out


def test_cli_validate_passes_a_folder_of_good_files(tmp_path, capsys):
    write_submission(tmp_path, make_submission(name="One"))
    write_submission(tmp_path, make_submission(name="Two", level=0.7))
    write_submission(tmp_path, make_claimed())
    assert main(["leaderboard", "validate", str(tmp_path)]) == 0
    assert "3 file(s) checked, 0 failed" in capsys.readouterr().out


def test_cli_validate_with_an_unknown_base_is_a_user_error(committed_entry, capsys):
    assert main(["leaderboard", "validate", "--base", "no-such-ref", str(committed_entry)]) == 2
    assert "unknown git ref 'no-such-ref'" in capsys.readouterr().err
