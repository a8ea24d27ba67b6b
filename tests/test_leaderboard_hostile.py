"""The hostile-submission set (tests/hostile_submissions.py): every file fails validation, each for
the reason its attack targets, and the valid entries the copies imitate still pass."""

from __future__ import annotations

import contextlib
import io

import pytest
from hostile_submissions import ATTACKS, write_all

from cycl_bench.cli import main
from cycl_bench.leaderboard.validate import submission_files, validate


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "submissions"
    root.mkdir()
    files = write_all(root)
    return root, files


@pytest.fixture(scope="module")
def checked(submissions):
    root, _ = submissions
    return {item.path: item for item in validate(submission_files([root]))}


def test_the_set_holds_at_least_forty_distinct_attacks():
    names = [attack.name for attack in ATTACKS]
    assert len(names) >= 40
    assert len(set(names)) == len(names)
    assert len({(attack.where, attack.words) for attack in ATTACKS}) >= 40


def test_every_hostile_file_is_checked_and_none_passes(submissions, checked):
    _, files = submissions
    assert set(files.values()) <= set(checked)
    passed = [name for name, path in files.items() if checked[path].ok]
    assert passed == []


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_each_attack_is_refused_for_what_it_attacks(attack, submissions, checked):
    _, files = submissions
    problems = checked[files[attack.name]].problems
    assert any(p.where.startswith(attack.where) and attack.words in p.reason for p in problems), [
        str(p) for p in problems
    ]


@pytest.mark.parametrize(
    "attack",
    [attack for attack in ATTACKS if attack.words.startswith("duplicate entry")],
    ids=lambda attack: attack.name,
)
def test_each_copy_is_reported_against_the_entry_it_copies(attack, submissions, checked):
    _, files = submissions
    (problem,) = checked[files[attack.name]].problems
    assert problem.reason.endswith(("/victim-run.json", "/victim-claim.json")), problem


def test_the_entries_that_the_copies_imitate_still_pass(submissions, checked):
    root, _ = submissions
    victims = [root / "core50_nc" / "victim-run.json", root / "core50_nc" / "victim-claim.json"]
    assert [(checked[path].path, checked[path].problems) for path in victims] == [
        (path, []) for path in victims
    ]


def test_no_problem_line_is_longer_than_a_screenful(checked):
    assert max(len(str(p)) for item in checked.values() for p in item.problems) <= 700


def test_cli_validate_fails_the_set_without_a_traceback(submissions):
    root, files = submissions
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["leaderboard", "validate", str(root)]) == 1
    for path in files.values():
        assert f"FAIL {path}" in out.getvalue()
    assert "Traceback" not in err.getvalue()
