"""`submit`: a results file becomes a correctly named submission, or nothing is written."""

from __future__ import annotations

import json
import statistics

from test_leaderboard_support import class_incremental_matrix, make_results

from cycl_bench.cli import main
from cycl_bench.evaluation.results import write_results


def results_file(tmp_path, **options):
    matrices = [class_incremental_matrix(seed, 0.8) for seed in range(3)]
    return write_results(make_results(matrices, **options), tmp_path / "run" / "results.json")


def submit(tmp_path, result, *extra):
    return main(
        [
            "submit",
            str(result),
            "--author",
            "A. Author",
            "--author",
            "B. Author",
            "--license",
            "CC-BY-4.0",
            "--hardware",
            "1x test CPU",
            "--code-url",
            "https://example.org/code",
            "--date",
            "2026-02-03",
            "--submissions",
            str(tmp_path / "submissions"),
            *extra,
        ]
    )


def test_submit_writes_the_entry_under_its_benchmark_with_a_slugged_name(tmp_path, capsys):
    code = submit(tmp_path, results_file(tmp_path), "--name", "HQ-CWR* (16-bit head)")
    assert code == 0, capsys.readouterr()
    path = tmp_path / "submissions" / "core50_nc" / "hq-cwr-16-bit-head.json"
    data = json.loads(path.read_text())
    assert data["status"] == "reproduced"
    assert data["entry"]["name"] == "HQ-CWR* (16-bit head)"
    assert data["entry"]["authors"] == ["A. Author", "B. Author"]
    assert data["entry"]["date"] == "2026-02-03"
    assert len(data["results"]["per_seed"]) == 3


def test_submit_refuses_a_name_that_is_a_path(tmp_path, capsys):
    code = submit(tmp_path, results_file(tmp_path), "--name", "../../outside")
    assert code == 2
    assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "outside.json").exists()
    assert not (tmp_path / "submissions").exists()


def test_submit_refuses_folder_results_and_leaves_no_file(tmp_path, capsys):
    code = submit(tmp_path, results_file(tmp_path, data_source="folder"), "--name", "Own")
    assert code == 1
    assert "only runs on real data" in capsys.readouterr().out
    assert not (tmp_path / "submissions" / "core50_nc" / "own.json").exists()


def test_submit_does_not_overwrite_an_entry_without_update(tmp_path, capsys):
    result = results_file(tmp_path)
    assert submit(tmp_path, result, "--name", "Twice") == 0
    assert submit(tmp_path, result, "--name", "Twice") == 2
    assert "--update" in capsys.readouterr().err
    assert submit(tmp_path, result, "--name", "Twice", "--update") == 0
    path = tmp_path / "submissions" / "core50_nc" / "twice.json"
    assert json.loads(path.read_text())["entry"]["update"] is True


def test_submit_refuses_a_non_http_link(tmp_path, capsys):
    code = submit(
        tmp_path, results_file(tmp_path), "--name", "X", "--paper-url", "javascript:alert(1)"
    )
    assert code == 2
    assert "--paper-url" in capsys.readouterr().err


def test_submit_never_writes_through_a_symbolic_link(tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("not a submission\n")
    entry = tmp_path / "submissions" / "core50_nc" / "linked.json"
    entry.parent.mkdir(parents=True)
    entry.symlink_to(outside)
    code = submit(tmp_path, results_file(tmp_path), "--name", "Linked", "--update")
    assert code == 2
    assert "symbolic link" in capsys.readouterr().err
    assert outside.read_text() == "not a submission\n"


def test_submit_never_writes_into_a_linked_benchmark_folder(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "core50_nc").symlink_to(elsewhere)
    assert submit(tmp_path, results_file(tmp_path), "--name", "Moved") == 2
    assert "symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_submit_refuses_a_folder_in_the_entrys_place(tmp_path, capsys):
    (tmp_path / "submissions" / "core50_nc" / "taken.json").mkdir(parents=True)
    assert submit(tmp_path, results_file(tmp_path), "--name", "Taken", "--update") == 2
    assert "not a file" in capsys.readouterr().err


def test_a_failing_update_leaves_the_existing_entry_as_it_was(tmp_path, capsys):
    assert submit(tmp_path, results_file(tmp_path), "--name", "Stable") == 0
    path = tmp_path / "submissions" / "core50_nc" / "stable.json"
    before = path.read_bytes()
    own_images = results_file(tmp_path, data_source="folder")
    assert submit(tmp_path, own_images, "--name", "Stable", "--update") == 1
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["stable.json"]


def test_submit_refuses_results_with_an_impossible_cost(tmp_path, capsys):
    result = results_file(tmp_path)
    data = json.loads(result.read_text())
    data["per_seed"][0]["peak_memory_mb"] = 0.0
    memory = [seed["peak_memory_mb"] for seed in data["per_seed"]]
    data["summary"]["peak_memory_mb"] = {
        "mean": statistics.fmean(memory),
        "std": statistics.stdev(memory),
    }
    result.write_text(json.dumps(data))
    assert submit(tmp_path, result, "--name", "Free lunch") != 0
    printed = capsys.readouterr()
    assert "per_seed[0].peak_memory_mb" in printed.out + printed.err
    assert "Traceback" not in printed.err
    assert not (tmp_path / "submissions" / "core50_nc" / "free-lunch.json").exists()
