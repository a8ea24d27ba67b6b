"""Hostile submissions: one file per attack on the leaderboard validator, none of which may pass.

Each attack starts from a valid submission (its own accuracy matrices, so that attacks do not
repeat each other) and breaks one thing; it names the JSON path and the words of the problem
the validator must report. Two valid victims sit beside them for the duplicate attacks to copy.

Run `python tests/hostile_submissions.py OUT` to write the set into OUT for a look.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from test_leaderboard_support import (
    class_incremental_matrix,
    make_claimed,
    make_results,
    make_submission,
    write_submission,
)

from cycl_bench.data.base import protocol_hash


@dataclass(frozen=True)
class Attack:
    name: str
    where: str  # the JSON path the validator must report (a prefix for very long paths)
    words: str  # part of the reason it must give
    write: Callable[[Path, float], Path]  # (submissions folder, matrix level) -> the file


ATTACKS: list[Attack] = []


def attack(where: str, words: str):
    def register(write):
        ATTACKS.append(Attack(write.__name__, where, words, write))
        return write

    return register


# -- victims: valid, older entries that the duplicate attacks copy --------------------------------

VICTIM_RUN = "Victim run"
VICTIM_LEVEL = 0.97
VICTIM_URL = "https://example.org/leaderboard"


def victim_run() -> dict:
    data = make_submission(VICTIM_RUN, level=VICTIM_LEVEL)
    data["entry"]["date"] = "2020-01-01"
    return data


def victim_claim() -> dict:
    data = make_claimed(name="Victim claim")
    data["entry"]["date"] = "2020-01-01"
    return data


def write_victims(root: Path) -> list[Path]:
    return [write_submission(root, victim_run()), write_submission(root, victim_claim())]


# -- helpers -------------------------------------------------------------------------------------

REMOVE = object()


def run(name: str, level: float) -> dict:
    """A valid reproduced submission with matrices of its own."""
    return make_submission(name, level=level)


def write(root: Path, data: dict, file_name: str | None = None) -> Path:
    return write_submission(root, data, file_name)


def write_text(root: Path, name: str, text: str | bytes, folder: str = "core50_nc") -> Path:
    path = root / folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def edit(data: dict, where: str, value) -> None:
    """Set (or remove, with REMOVE) the value at `where`: keys and list indices joined by dots."""
    *parents, last = [int(p) if p.isdigit() else p for p in where.split(".")]
    for part in parents:
        data = data[part]
    if value is REMOVE:
        del data[last]
    else:
        data[last] = value


def edited(root: Path, level: float, name: str, where: str, value) -> Path:
    """A run named `name` with one value changed, written where its name says."""
    data = run(name, level)
    edit(data, where, value)
    return write(root, data)


def edited_seed(root: Path, level: float, name: str, key: str, value, index: int = 0) -> Path:
    """A run with per_seed[index][key] set to `value` and the summary recomputed by hand from
    the seeds, so that the value itself is the only thing wrong."""
    data = run(name, level)
    seed(data, index)[key] = value
    for summary_key, stat in data["results"]["summary"].items():
        values = [item[summary_key] for item in data["results"]["per_seed"]]
        stat.update(mean=statistics.fmean(values), std=statistics.stdev(values))
    return write(root, data)


def seed(data: dict, index: int = 0) -> dict:
    return data["results"]["per_seed"][index]


def with_protocol_hash_of_its_protocol(data: dict) -> dict:
    """The hash recomputed, so that protocol and hash agree with each other (not with the shipped
    protocol)."""
    benchmark = data["results"]["benchmark"]
    benchmark["protocol_hash"] = protocol_hash(benchmark["protocol"])
    return data


def newer_copy(data: dict, name: str) -> dict:
    data = copy.deepcopy(data)
    data["entry"]["name"] = name
    data["entry"]["date"] = "2026-03-01"
    return data


# -- numbers out of their physical range -----------------------------------------------------------


@attack("$.results.per_seed[0].bitops_reduction_vs_fp32", "greater than or equal to 0")
def reduction_minus_1e300(root, level):
    return edited_seed(root, level, "R -1e300", "bitops_reduction_vs_fp32", -1e300)


@attack("$.results.per_seed[0].bitops_reduction_vs_fp32", "less than 1")
def reduction_of_everything(root, level):
    return edited_seed(root, level, "R 1", "bitops_reduction_vs_fp32", 1.0)


@attack("$.results.per_seed[0].peak_memory_mb", "greater than or equal to 1")
def peak_memory_zero(root, level):
    return edited_seed(root, level, "Memory 0", "peak_memory_mb", 0.0)


@attack("$.results.per_seed[0].peak_memory_mb", "less than or equal to")
def peak_memory_an_exabyte(root, level):
    return edited_seed(root, level, "Memory 1e12", "peak_memory_mb", 1e12)


@attack("$.results.per_seed[0].train_bitops", "greater than or equal to 1")
def bitops_1e_minus_300(root, level):
    return edited_seed(root, level, "Bitops tiny", "train_bitops", 1e-300)


@attack("$.results.per_seed[0].train_bitops", "less than or equal to")
def bitops_1e300(root, level):
    return edited_seed(root, level, "Bitops huge", "train_bitops", 1e300)


@attack("$.results.per_seed[0].train_time_s", "greater than 0")
def time_zero(root, level):
    return edited_seed(root, level, "Time 0", "train_time_s", 0.0)


@attack("$.results.per_seed[0].train_time_s", "greater than 0")
def time_negative(root, level):
    return edited_seed(root, level, "Time -5", "train_time_s", -5.0)


@attack("$.results.per_seed[0].train_time_s", "less than or equal to")
def time_ten_thousand_years(root, level):
    return edited_seed(root, level, "Time 1e12", "train_time_s", 3.2e11)


@attack("$.results.per_seed[0].accuracy_matrix", "not a fraction in [0, 1]")
def accuracy_above_one(root, level):
    return edited(root, level, "Cell 1.5", "results.per_seed.0.accuracy_matrix.0.0", 1.5)


@attack("$.results.per_seed[1].final_accuracy", "greater than or equal to 0")
def final_accuracy_negative(root, level):
    return edited_seed(root, level, "Final -0.2", "final_accuracy", -0.2, 1)


@attack("$.results.summary.bwt.std", "greater than or equal to 0")
def negative_std(root, level):
    return edited(root, level, "Std -0.01", "results.summary.bwt.std", -0.01)


@attack("$.results.per_seed[0].model_size_bytes", "greater than or equal to 1")
def empty_model(root, level):
    return edited_seed(root, level, "Size 0", "model_size_bytes", 0)


@attack("$.results.per_seed[0].per_experience[0].train_time_s", "greater than or equal to 0")
def negative_experience_time(root, level):
    cost = {"train_time_s": -1.0, "peak_memory_mb": 500.0, "train_bitops": 1e11}
    return edited_seed(root, level, "Experience -1 s", "per_experience", [cost])


@attack("$.results.per_seed[0].seed", "greater than or equal to 0")
def negative_seed(root, level):
    return edited_seed(root, level, "Seed -1", "seed", -1)


@attack("$.results.benchmark.test_sizes[0]", "less than or equal to")
def trillion_test_images(root, level):
    return edited(root, level, "Test 1e12", "results.benchmark.test_sizes.0", 10**12)


@attack("$.numbers.final_accuracy", "less than or equal to 1")
def claimed_accuracy_above_one(root, level):
    data = make_claimed("Claimed 120%")
    edit(data, "numbers.final_accuracy", 1.2)
    return write(root, data)


@attack("$.numbers.runs", "greater than or equal to 1")
def claimed_zero_runs(root, level):
    data = make_claimed("Claimed 0 runs")
    edit(data, "numbers.runs", 0)
    return write(root, data)


@attack("$.weight_bits", "less than or equal to 32")
def claimed_64_bit_weights(root, level):
    return write(root, make_claimed("Claimed 64 bits", weight_bits=64))


# -- numbers that are not numbers ------------------------------------------------------------------


@attack("$.results.summary.final_accuracy.mean", "finite number")
def nan_summary_mean(root, level):
    return edited(root, level, "NaN mean", "results.summary.final_accuracy.mean", float("nan"))


@attack("$.results.per_seed[0].peak_memory_mb", "finite number")
def infinite_peak_memory(root, level):
    return edited(root, level, "Memory inf", "results.per_seed.0.peak_memory_mb", float("inf"))


@attack("$.results.per_seed[2].bwt", "finite number")
def minus_infinity_bwt(root, level):
    return edited(root, level, "BWT -inf", "results.per_seed.2.bwt", float("-inf"))


@attack("$.results.per_seed[0].train_bitops", "finite number")
def overflowing_literal(root, level):
    data = run("Bitops 1e999", level)
    seed(data)["train_bitops"] = 123456789.0
    text = json.dumps(data, indent=1).replace("123456789.0", "1e999")  # Python reads inf
    return write_text(root, "bitops-1e999", text)


@attack("$.results.method.params.lr", "finite number")
def nan_in_strategy_parameters(root, level):
    return edited(root, level, "NaN lr", "results.method.params", {"lr": float("nan")})


@attack("$.results.benchmark.protocol.image_size", "finite number")
def nan_in_protocol(root, level):
    where = "results.benchmark.protocol.image_size"
    return edited(root, level, "NaN protocol", where, float("nan"))


@attack("$.numbers.final_accuracy", "finite number")
def nan_claim(root, level):
    data = make_claimed("Claimed NaN")
    edit(data, "numbers.final_accuracy", float("nan"))
    return write(root, data)


# -- JSON that is not one plain object -------------------------------------------------------------


@attack("$", "key 'mean' appears twice")
def repeated_summary_key(root, level):
    text = json.dumps(run("Two means", level), indent=1)
    text = text.replace('"mean": ', '"mean": 0.99, "mean": ', 1)
    return write_text(root, "two-means", text)


@attack("$", "key 'status' appears twice")
def repeated_status_key(root, level):
    text = json.dumps(run("Two statuses", level), indent=1)
    text = text.replace('"status": "reproduced"', '"status": "claimed", "status": "reproduced"')
    return write_text(root, "two-statuses", text)


@attack("$", "nested too deeply")
def hundred_thousand_brackets(root, level):
    return write_text(root, "deep", "[" * 100_000 + "]" * 100_000)


@attack("$.results.config.deep", "maximum validation depth")
def deep_config(root, level):
    deep: object = 1
    for _ in range(500):
        deep = [deep]
    return edited(root, level, "Deep config", "results.config", {"deep": deep})


@attack("$", "capped at 5 MiB")
def six_mebibytes(root, level):
    text = json.dumps(run("Padded", level)) + " " * (6 * 2**20)
    return write_text(root, "padded", text)


@attack("$", "not UTF-8")
def binary_garbage(root, level):
    return write_text(root, "garbage", bytes(range(256)) * 16)


@attack("$", "not UTF-8")
def utf16_text(root, level):
    return write_text(root, "utf-16", json.dumps(run("UTF 16", level)).encode("utf-16"))


@attack("$", "valid dictionary")
def a_list_of_submissions(root, level):
    return write_text(root, "list", json.dumps([run("In a list", level)]))


@attack("$", "not valid JSON")
def empty_file(root, level):
    return write_text(root, "empty", b"")


@attack("$", "not valid JSON")
def truncated_file(root, level):
    text = json.dumps(run("Truncated", level))
    return write_text(root, "truncated", text[: len(text) // 2])


@attack("$", "not valid JSON")
def five_thousand_digit_integer(root, level):
    data = run("Big int", level)
    seed(data)["model_size_bytes"] = 987654321
    text = json.dumps(data).replace("987654321", "9" * 5000)
    return write_text(root, "big-int", text)


@attack("$", "lone surrogate")
def lone_surrogate(root, level):
    data = run("Surrogate", level)
    data["entry"]["description"] = "x"
    text = json.dumps(data).replace('"description": "x"', '"description": "\\ud800"')
    return write_text(root, "surrogate", text)


# -- schema version and status ---------------------------------------------------------------------


@attack("$.submission_version", "Input should be 1")
def version_2(root, level):
    return edited(root, level, "Version 2", "submission_version", 2)


@attack("$.submission_version", "Input should be 1")
def version_as_text(root, level):
    return edited(root, level, "Version text", "submission_version", "1")


@attack("$.status", "must be 'reproduced' or 'claimed'")
def status_missing(root, level):
    return edited(root, level, "No status", "status", REMOVE)


@attack("$.status", "must be 'reproduced' or 'claimed'")
def status_capitalised(root, level):
    return edited(root, level, "Capital status", "status", "Reproduced")


@attack("$.results", "Extra inputs are not permitted")
def run_labelled_as_claim(root, level):
    return edited(root, level, "Run as claim", "status", "claimed")


def with_models(name: str, level: float, **first) -> dict:
    """A valid run listing a model per seed, the first one's fields replaced by `first`."""
    data = run(name, level)
    data["models"] = [{"seed": seed, "sha256": f"{seed + 1:064x}"} for seed in range(3)]
    data["models"][0].update(first)
    return data


@attack("$.models[0].url", "http")
def model_url_runs_a_script(root, level):
    return write(root, with_models("Model script", level, url="javascript:alert(1)"))


@attack("$.models[0].sha256", "should match pattern")
def model_sha_not_a_digest(root, level):
    return write(root, with_models("Model sha", level, sha256="../../models/other.pt"))


@attack("$.models[0].seed", "is not in the results")
def model_of_a_seed_never_run(root, level):
    return write(root, with_models("Model seed", level, seed=99))


@attack("$.score", "Extra inputs are not permitted")
def extra_field(root, level):
    return edited(root, level, "Extra field", "score", 1.0)


@attack("$.results.summary.score", "Input should be")
def unknown_summary_key(root, level):
    return edited(root, level, "Extra summary", "results.summary.score", {"mean": 1e300, "std": 0})


@attack("$.results.summary.bwt", "missing")
def missing_summary_key(root, level):
    return edited(root, level, "No BWT summary", "results.summary.bwt", REMOVE)


# -- the protocol ----------------------------------------------------------------------------------


@attack("$.results.benchmark.protocol", "Field required")
def protocol_missing(root, level):
    return edited(root, level, "No protocol", "results.benchmark.protocol", REMOVE)


@attack("$.results.benchmark.protocol", "at least 1 item")
def protocol_empty(root, level):
    return edited(root, level, "Empty protocol", "results.benchmark.protocol", {})


@attack("$.results.benchmark.protocol", "does not hash to protocol_hash")
def protocol_changed_hash_kept(root, level):
    return edited(root, level, "Small images", "results.benchmark.protocol.image_size", 32)


@attack("$.results.benchmark.protocol_hash", "not the shipped protocol's hash")
def protocol_of_another_stream(root, level):
    data = run("Other stream", level)
    edit(data, "results.benchmark.protocol.image_size", 32)
    return write(root, with_protocol_hash_of_its_protocol(data))


@attack("$.results.benchmark.protocol.run", "missing; the shipped protocol has 0")
def protocol_incomplete(root, level):
    data = run("Incomplete protocol", level)
    edit(data, "results.benchmark.protocol.run", REMOVE)
    return write(root, with_protocol_hash_of_its_protocol(data))


@attack("$.results.benchmark.protocol_hash", "should match pattern")
def protocol_hash_not_hex(root, level):
    return edited(root, level, "Bad hash", "results.benchmark.protocol_hash", "<b>nope</b>")


# -- numbers that the raw data does not give -------------------------------------------------------


@attack("$.results.summary.final_accuracy.mean", "the seeds give")
def summary_mean_raised(root, level):
    data = run("Raised mean", level)
    data["results"]["summary"]["final_accuracy"]["mean"] += 1e-3
    return write(root, data)


@attack("$.results.summary.final_accuracy.std", "the seeds give")
def summary_std_halved(root, level):
    data = run("Halved std", level)
    data["results"]["summary"]["final_accuracy"]["std"] /= 2
    return write(root, data)


@attack("$.results.per_seed[0].bwt", "the matrix gives")
def per_seed_bwt_improved(root, level):
    return edited_seed(root, level, "Better BWT", "bwt", 0.0)


# -- copies, however disguised ---------------------------------------------------------------------


@attack("$", "duplicate entry")
def copy_with_a_cell_moved_by_1e_9(root, level):
    data = newer_copy(victim_run(), "Nudged copy")
    seed(data)["accuracy_matrix"][0][0] -= 1e-9
    return write(root, data)


@attack("$", "duplicate entry")
def copy_under_other_seed_numbers(root, level):
    data = newer_copy(victim_run(), "Relabelled copy")
    for index, item in enumerate(data["results"]["per_seed"]):
        item["seed"] = 100 + index
    return write(root, data)


@attack("$", "duplicate entry")
def one_borrowed_seed(root, level):
    matrices = [class_incremental_matrix(s, level) for s in range(2)]
    matrices.append(class_incremental_matrix(0, VICTIM_LEVEL))  # the victim's seed 0
    data = make_submission("Borrowed seed", level=level)
    data["results"] = make_results(matrices).model_dump(mode="json")
    return write(root, data)


def claim(name: str, changes: dict) -> dict:
    """A newer copy of the victim's claim, with `changes` (dotted paths as keys)."""
    data = newer_copy(victim_claim(), name)
    for where, value in changes.items():
        edit(data, where, value)
    return data


@attack("$", "duplicate entry: the same claim")
def claim_with_question_mark(root, level):
    return write(root, claim("Claim with ?", {"source.url": VICTIM_URL + "?"}))


@attack("$", "duplicate entry: the same claim")
def claim_with_decorated_url(root, level):
    return write(
        root,
        claim("Claim with www", {"source.url": "http://www.EXAMPLE.org:443/leaderboard/#top"}),
    )


@attack("$", "duplicate entry: the same claim")
def claim_in_cyrillic(root, level):
    return write(root, claim("Claim in Cyrillic", {"strategy": "nаіve", "backbone": "Ѕоmе СNN"}))


@attack("$", "duplicate entry: the same claim")
def claim_in_greek_capitals(root, level):
    return write(root, claim("Claim in Greek", {"strategy": "ΝΑΙVΕ"}))


@attack("$", "duplicate entry: the same claim")
def claim_nudged_by_1e_9(root, level):
    return write(root, claim("Nudged claim", {"numbers.final_accuracy": 0.1075 + 1e-9}))


@attack("$", "expected 'victim-run.json'")
def look_alike_name(root, level):
    data = run("Viсtim run", level)  # Cyrillic 'с'
    return write(root, data, file_name="vitim-run.json")


# -- files that are not plain files ----------------------------------------------------------------


@attack("$", "symbolic links are not accepted")
def linked_file(root, level):
    target = write_submission(root.parent / "outside", run("Linked", level))
    link = root / "core50_nc" / "linked.json"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


@attack("$", "symbolic links are not accepted")
def linked_benchmark_folder(root, level):
    outside = root.parent / "outside-folder"
    write_submission(outside, make_submission("Linked folder", level=level, benchmark="core50_ni"))
    link = root / "core50_ni"
    link.symlink_to(outside / "core50_ni", target_is_directory=True)
    return link


@attack("$", "symbolic links are not accepted")
def link_to_a_system_file(root, level):
    link = root / "core50_nc" / "passwd.json"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/etc/passwd")
    return link


@attack("$", "not a regular file")
def named_pipe(root, level):
    path = root / "core50_nc" / "pipe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)  # reading it would wait forever
    return path


@attack("$", "not a regular file")
def folder_named_like_a_file(root, level):
    path = root / "core50_nc" / "folder.json"
    path.mkdir(parents=True)
    return path


# -- the rules of a reproduced entry ---------------------------------------------------------------


@attack("$.results.fast", "not accepted")
def smoke_test_run(root, level):
    return edited(root, level, "Fast run", "results.fast", True)


@attack("$.results.per_seed", "at least 3 are required")
def two_seeds(root, level):
    return write(root, make_submission("Two seeds", level=level, n_seeds=2))


@attack("$.results.per_seed[1].seed", "repeats")
def repeated_seed_number(root, level):
    return edited_seed(root, level, "Seed twice", "seed", 0, 1)


@attack("$.results.method.strategy", "not a registered name")
def unregistered_strategy(root, level):
    return write(root, make_submission("Magic", level=level, strategy="magic_forgetless"))


@attack("$.results.benchmark.data_source", "only runs on real data")
def folder_data(root, level):
    return write(root, make_submission("Own images", level=level, data_source="folder"))


@attack("$", "its benchmark is 'core50_nc'")
def wrong_benchmark_folder(root, level):
    path = root / "split_cifar10" / "wrong-folder.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run("Wrong folder", level)))
    return path


@attack("$", "does not match entry.name")
def wrong_file_name(root, level):
    return write(root, run("Right name", level), file_name="other-name.json")


@attack("$.entry.code_url", "http")
def javascript_link(root, level):
    return edited(root, level, "Script link", "entry.code_url", "javascript:alert(1)")


@attack("$.entry.paper_url", "quotes")
def link_breaking_out_of_its_attribute(root, level):
    url = 'https://example.org/"><script>alert(1)</script>'
    return edited(root, level, "Quoted link", "entry.paper_url", url)


@attack("$.entry.name", "control characters")
def right_to_left_override(root, level):
    return write(root, run("Good\u202eexe.dab", level), file_name="good-exe-dab.json")


@attack("$.entry.name", "must not look like a file path")
def name_as_a_path(root, level):
    return write(root, run("../../etc/passwd", level), file_name="etc-passwd.json")


@attack("$.entry.name", "at most 80 characters")
def name_of_500_letters(root, level):
    return write(root, run("A" * 500, level), file_name="a.json")


@attack("$.benchmark", "not a registered name")
def claim_on_an_unknown_benchmark(root, level):
    data = make_claimed("Elsewhere")
    data["benchmark"] = "imagenet"
    return write(root, data)


def write_all(root: Path) -> dict[str, Path]:
    """Every attack into `root` (a submissions folder), with the victims; name -> file."""
    write_victims(root)
    return {a.name: a.write(root, 0.3 + 0.005 * i) for i, a in enumerate(ATTACKS)}


if __name__ == "__main__":
    written = write_all(Path(sys.argv[1]))
    print(f"{len(written)} hostile submissions written into {sys.argv[1]}")
