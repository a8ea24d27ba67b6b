"""`leaderboard validate`: valid submissions pass, each broken or hostile one fails with the
right JSON path and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_leaderboard_support import git, make_claimed, make_submission, write_submission

from cycl_bench.cli import main
from cycl_bench.data.base import protocol_hash
from cycl_bench.leaderboard.validate import submission_files, validate

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
    assert_fails(path, "$.results.per_seed[0].train_time_s", "finite number")


def test_folder_results_are_refused(tmp_path):
    path = write_submission(tmp_path, make_submission(data_source="folder"))
    assert_fails(path, "$.results.benchmark.data_source", "only runs on real data")


def test_synthetic_results_are_the_reference_track(tmp_path):
    path = write_submission(tmp_path, make_submission(data_source="synthetic"))
    [checked] = validate([path])
    assert checked.ok, checked.problems


def test_a_synthetic_run_must_have_the_shipped_synthetic_protocol(tmp_path):
    data = make_submission(data_source="synthetic")
    real = make_submission()["results"]["benchmark"]
    data["results"]["benchmark"]["protocol"] = real["protocol"]
    data["results"]["benchmark"]["protocol_hash"] = real["protocol_hash"]
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results.benchmark.protocol_hash", "not the shipped protocol's hash")


def test_models_list_every_seed_once(tmp_path):
    sha = "ab" * 32
    data = make_submission()
    data["models"] = [
        {"seed": 0, "sha256": sha},
        {"seed": 0, "sha256": sha},
        {"seed": 7, "sha256": sha},
    ]
    path = write_submission(tmp_path, data)
    [checked] = validate([path])
    reasons = [str(problem) for problem in checked.problems]
    assert "$.models[1].seed: seed 0 repeats" in reasons
    assert "$.models[2].seed: seed 7 is not in the results" in reasons
    assert any(r.startswith("$.models: no model for seed(s) 1, 2") for r in reasons)


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
    assert_fails(path, "$.submission_version", "Input should be 1")


@pytest.fixture
def committed_entry(tmp_path):
    """A repository whose main branch holds one entry."""
    git(tmp_path, "init", "-q", "-b", "main")
    path = write_submission(tmp_path / "submissions", make_submission(name="Kept"))
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "entry")
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
    data = make_submission(name="Bad", level=0.6, n_seeds=2, data_source="folder")
    bad = write_submission(tmp_path, data)
    assert main(["leaderboard", "validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"ok   {good}" in out
    assert f"FAIL {bad}" in out
    assert "$.results.per_seed: 2 seed(s); at least 3 are required" in out
    assert "$.results.benchmark.data_source: 'folder' data" in out


def test_cli_validate_passes_a_folder_of_good_files(tmp_path, capsys):
    write_submission(tmp_path, make_submission(name="One"))
    write_submission(tmp_path, make_submission(name="Two", level=0.7))
    write_submission(tmp_path, make_claimed())
    assert main(["leaderboard", "validate", str(tmp_path)]) == 0
    assert "3 file(s) checked, 0 failed" in capsys.readouterr().out


def test_cli_validate_with_an_unknown_base_is_a_user_error(committed_entry, capsys):
    assert main(["leaderboard", "validate", "--base", "no-such-ref", str(committed_entry)]) == 2
    assert "unknown git ref 'no-such-ref'" in capsys.readouterr().err


# -- numbers: finite and physically possible ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("bitops_reduction_vs_fp32", -1e300, "greater than or equal to 0"),
        ("bitops_reduction_vs_fp32", 1.0, "less than 1"),
        ("peak_memory_mb", 0.0, "greater than or equal to 1"),
        ("peak_memory_mb", 1e12, "less than or equal to"),
        ("train_bitops", 1e-300, "greater than or equal to 1"),
        ("train_bitops", 1e300, "less than or equal to"),
        ("train_time_s", 0.0, "greater than 0"),
        ("train_time_s", 1e12, "less than or equal to"),
        ("model_size_bytes", 0, "greater than or equal to 1"),
        ("seed", -1, "greater than or equal to 0"),
    ],
)
def test_an_impossible_per_seed_number_is_refused(tmp_path, field, value, words):
    data = make_submission()
    data["results"]["per_seed"][0][field] = value
    path = write_submission(tmp_path, data)
    assert_fails(path, f"$.results.per_seed[0].{field}", words)


def test_a_nan_summary_mean_is_refused_with_its_path(tmp_path):
    data = make_submission()
    data["results"]["summary"]["final_accuracy"]["mean"] = float("nan")
    path = write_submission(tmp_path, data)
    assert '"mean": NaN' in path.read_text()
    assert_fails(path, "$.results.summary.final_accuracy.mean", "finite number")


def test_an_infinite_peak_memory_is_refused_with_its_path(tmp_path):
    data = make_submission()
    data["results"]["per_seed"][1]["peak_memory_mb"] = float("inf")
    path = write_submission(tmp_path, data)
    assert '"peak_memory_mb": Infinity' in path.read_text()
    assert_fails(path, "$.results.per_seed[1].peak_memory_mb", "finite number")


def test_a_nan_inside_the_strategy_parameters_is_refused_with_its_path(tmp_path):
    data = make_submission()
    data["results"]["method"]["params"] = {"lr": [0.1, float("nan")]}
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results.method.params.lr[1]", "finite number")


def test_an_out_of_range_claimed_number_is_refused(tmp_path):
    data = make_claimed()
    data["numbers"]["final_accuracy"] = 1.2
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.numbers.final_accuracy", "less than or equal to 1")


# -- the summary recomputes from the per-seed rows -----------------------------------------------


def with_train_times(times: list[float], mean: float, std: float) -> dict:
    data = make_submission()
    for seed, time in zip(data["results"]["per_seed"], times, strict=True):
        seed["train_time_s"] = time
    data["results"]["summary"]["train_time_s"] = {"mean": mean, "std": std}
    return data


def test_a_summary_equal_to_the_seeds_by_hand_passes(tmp_path):
    # 100, 101, 102 s: mean 101; sample std sqrt((1 + 0 + 1) / 2) = 1
    path = write_submission(tmp_path, with_train_times([100.0, 101.0, 102.0], 101.0, 1.0))
    assert problems_of(path) == []


def test_a_summary_mean_the_seeds_do_not_give_fails(tmp_path):
    path = write_submission(tmp_path, with_train_times([100.0, 101.0, 102.0], 101.5, 1.0))
    assert_fails(path, "$.results.summary.train_time_s.mean", "the seeds give 101.0")


def test_a_summary_std_the_seeds_do_not_give_fails(tmp_path):
    # the population std sqrt(2 / 3) is not the sample std the summary holds
    path = write_submission(tmp_path, with_train_times([100.0, 101.0, 102.0], 101.0, 0.8165))
    assert_fails(path, "$.results.summary.train_time_s.std", "the seeds give 1.0")


def test_an_unknown_summary_key_fails(tmp_path):
    data = make_submission()
    data["results"]["summary"]["score"] = {"mean": 1e300, "std": 0.0}
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results.summary.score", "Input should be")


# -- JSON and schema -------------------------------------------------------------------------------


def test_a_repeated_json_key_fails(tmp_path):
    path = write_submission(tmp_path, make_submission())
    text = path.read_text().replace('"fast": false', '"fast": true, "fast": false', 1)
    path.write_text(text)
    assert problems_of(path) == [
        ("$", "key 'fast' appears twice in one JSON object; keep only one")
    ]


@pytest.mark.parametrize("status", [None, "Reproduced", 5])
def test_a_missing_or_unknown_status_fails_on_the_status(tmp_path, status):
    data = make_submission()
    if status is None:
        del data["status"]
    else:
        data["status"] = status
    path = write_submission(tmp_path, data)
    assert problems_of(path) == [("$.status", f"must be 'reproduced' or 'claimed', not {status!r}")]


def test_the_status_picks_the_schema(tmp_path):
    data = make_submission()
    data["status"] = "claimed"
    path = write_submission(tmp_path, data)
    assert_fails(path, "$.results", "Extra inputs are not permitted")
    assert_fails(path, "$.numbers", "Field required")


# -- the protocol: present, complete, and hashing to the shipped one ------------------------------


def with_protocol(change) -> dict:
    data = make_submission()
    change(data["results"]["benchmark"])
    return data


def test_a_missing_protocol_fails(tmp_path):
    path = write_submission(tmp_path, with_protocol(lambda b: b.pop("protocol")))
    assert_fails(path, "$.results.benchmark.protocol", "Field required")


def test_an_empty_protocol_fails(tmp_path):
    path = write_submission(tmp_path, with_protocol(lambda b: b.update(protocol={})))
    assert_fails(path, "$.results.benchmark.protocol", "at least 1 item")


def test_a_protocol_that_does_not_hash_to_the_claimed_hash_fails(tmp_path):
    # the shipped hash kept, the protocol itself changed: a fabricated entry
    path = write_submission(tmp_path, with_protocol(lambda b: b["protocol"].update(run=3)))
    assert_fails(path, "$.results.benchmark.protocol", "does not hash to protocol_hash")
    assert_fails(path, "$.results.benchmark.protocol.run", "the shipped protocol has 0")


def test_an_incomplete_protocol_fails_on_the_missing_key(tmp_path):
    def drop_run(benchmark):
        del benchmark["protocol"]["run"]
        benchmark["protocol_hash"] = protocol_hash(benchmark["protocol"])

    path = write_submission(tmp_path, with_protocol(drop_run))
    assert_fails(path, "$.results.benchmark.protocol.run", "missing; the shipped protocol has 0")
    assert_fails(path, "$.results.benchmark.protocol_hash", "not the shipped protocol's hash")


# -- duplicates: compared as content, not as bytes ------------------------------------------------


def test_a_matrix_changed_by_1e_9_is_a_duplicate(tmp_path):
    original = make_submission(name="Original")
    copy = make_submission(name="Copy")
    copy["entry"]["date"] = "2026-02-01"
    copy["results"]["per_seed"][0]["accuracy_matrix"][0][0] += 1e-9
    write_submission(tmp_path, original)
    path = write_submission(tmp_path, copy)
    assert_fails(path, "$", "duplicate entry: per_seed[0] has the accuracy matrix of per_seed[0]")


def test_a_run_under_another_seed_number_is_a_duplicate(tmp_path):
    write_submission(tmp_path, make_submission(name="Original"))
    copy = make_submission(name="Relabelled")
    copy["entry"]["date"] = "2026-02-01"
    for seed in copy["results"]["per_seed"]:
        seed["seed"] += 10
    path = write_submission(tmp_path, copy)
    assert_fails(path, "$", "duplicate entry")


def claim_copy(**changes) -> dict:
    data = make_claimed(name="Quoted again")
    data["entry"]["date"] = "2026-02-01"
    for key, value in changes.items():
        if key == "url":
            data["source"]["url"] = value
        elif key == "final_accuracy":
            data["numbers"]["final_accuracy"] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    "changes",
    [
        {"url": "https://example.org/leaderboard?"},
        {"url": "http://www.Example.org/leaderboard/#top"},
        {"url": "https://example.org/leaderboard?utm_source=x"},
        {"strategy": "nаive", "backbone": "Sоme CNN"},  # Cyrillic а and о
        {"strategy": "ＮＡＩＶＥ"},  # full-width letters
        {"final_accuracy": 0.1075 + 1e-9},
    ],
)
def test_a_disguised_copy_of_a_claim_is_a_duplicate(tmp_path, changes):
    write_submission(tmp_path, make_claimed())
    path = write_submission(tmp_path, claim_copy(**changes))
    assert_fails(path, "$", "duplicate entry: the same claim")


def test_a_claim_of_another_strategy_from_the_same_source_is_not_a_duplicate(tmp_path):
    write_submission(tmp_path, make_claimed())
    path = write_submission(tmp_path, claim_copy(strategy="ewc", final_accuracy=0.2622))
    assert problems_of(path) == []


def test_a_look_alike_name_needs_the_file_of_the_name_it_imitates(tmp_path):
    # 'Nаive' with a Cyrillic 'а' is not a new name: its file is naive.json, the original's
    data = make_submission(name="Nаive")
    path = write_submission(tmp_path, data, file_name="nive.json")
    assert_fails(path, "$", "expected 'naive.json'")


def test_the_newer_file_is_reported_not_the_one_it_copies(tmp_path):
    original = write_submission(tmp_path, make_submission(name="Original"))
    copy = make_submission(name="Copy")
    copy["entry"]["date"] = "2026-02-01"
    path = write_submission(tmp_path, copy)
    checked = {c.path: c for c in validate(submission_files([tmp_path]))}
    assert checked[original].ok
    assert [str(p) for p in checked[path].problems] == [
        f"$: duplicate entry: per_seed[0] has the accuracy matrix of per_seed[0] in {original}"
    ]


def test_an_entry_on_the_base_branch_is_older_whatever_date_a_copy_claims(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    original_data = make_submission(name="Original")
    original_data["entry"]["date"] = "2026-06-01"
    original = write_submission(tmp_path / "submissions", original_data)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "entry")
    copy = make_submission(name="Copy")
    copy["entry"]["date"] = "2020-01-01"  # backdated, to look like the original
    path = write_submission(tmp_path / "submissions", copy)
    checked = {c.path: c for c in validate([original, path], base="main")}
    assert checked[original].ok
    assert [p.reason for p in checked[path].problems] == [
        f"duplicate entry: per_seed[0] has the accuracy matrix of per_seed[0] in {original}"
    ]


# -- files: links are reported, never skipped -----------------------------------------------------


def test_a_linked_benchmark_folder_is_reported(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write_submission(elsewhere, make_submission())
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    (submissions / "core50_nc").symlink_to(elsewhere / "core50_nc")
    checked = validate(submission_files([submissions]))
    assert [(c.path.name, [str(p) for p in c.problems]) for c in checked] == [
        ("core50_nc", ["$: symbolic links are not accepted; commit the file itself"])
    ]


def test_a_file_named_inside_a_linked_benchmark_folder_is_refused(tmp_path):
    target = write_submission(tmp_path / "elsewhere", make_submission())
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "core50_nc").symlink_to(target.parent)
    path = tmp_path / "submissions" / "core50_nc" / target.name
    assert problems_of(path) == [("$", "symbolic links are not accepted; commit the file itself")]


def test_a_linked_file_in_a_folder_is_reported(tmp_path):
    target = write_submission(tmp_path / "elsewhere", make_submission(name="Real"))
    link = tmp_path / "submissions" / "core50_nc" / "real.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    checked = validate(submission_files([tmp_path / "submissions"]))
    assert [(c.path, c.ok) for c in checked] == [(link, False)]


def test_cli_validate_reports_a_linked_folder_and_exits_1(tmp_path, capsys):
    write_submission(tmp_path / "elsewhere", make_submission())
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "core50_nc").symlink_to(tmp_path / "elsewhere" / "core50_nc")
    assert main(["leaderboard", "validate", str(tmp_path / "submissions")]) == 1
    assert "symbolic links are not accepted" in capsys.readouterr().out
