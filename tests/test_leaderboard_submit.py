"""`submit`: a results file becomes a correctly named submission, or nothing is written."""

from __future__ import annotations

import json

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


def test_submit_refuses_synthetic_results_and_leaves_no_file(tmp_path, capsys):
    code = submit(tmp_path, results_file(tmp_path, data_source="synthetic"), "--name", "Synth")
    assert code == 1
    assert "only runs on real data" in capsys.readouterr().out
    assert not (tmp_path / "submissions" / "core50_nc" / "synth.json").exists()


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
