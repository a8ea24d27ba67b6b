"""The W&B session against the real wandb library in offline mode, read back from the run file."""

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2

from cycl_bench.errors import UserError
from cycl_bench.logging import WandbSession, check_wandb_mode, experience_accuracies
from cycl_bench.logging.wandb_run import offline_runs, offline_sync_hint

BLOCK_SIZE = 32 * 1024  # the .wandb file is a LevelDB-style log of protobuf records
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(run_dir: Path) -> list:
    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, position = [], [], 7
    while position + 7 <= len(data):
        if BLOCK_SIZE - position % BLOCK_SIZE < 7:
            position += BLOCK_SIZE - position % BLOCK_SIZE
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            break
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def read_finished_run(run_dir: Path, timeout_s: float = 30.0) -> list:
    """The records once the exit record is on disk: the wandb service writes the offline run
    file asynchronously, so `finish()` can return a moment before the file is complete (it is
    complete at the latest when the process exits)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_records(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_dir} has no exit record after {timeout_s} s")
        time.sleep(0.05)


def item_key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def run_contents(run_dir: Path) -> dict:
    """The parts of an offline run the tests check: run info, config, history, summary,
    artifacts and exit code."""
    contents = {"history": [], "summary": {}, "artifacts": [], "exit_code": None}
    for record in read_finished_run(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            contents["group"] = record.run.run_group
            contents["name"] = record.run.display_name
            contents["project"] = record.run.project
            contents["tags"] = list(record.run.tags)
            contents["config"] = {
                item.key: json.loads(item.value_json) for item in record.run.config.update
            }
        elif kind == "history":
            row = {item_key(item): json.loads(item.value_json) for item in record.history.item}
            contents["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                contents["summary"][item_key(item)] = json.loads(item.value_json)
        elif kind == "artifact":
            entries = {entry.path for entry in record.artifact.manifest.contents}
            contents["artifacts"].append((record.artifact.name, record.artifact.type, entries))
        elif kind == "exit":
            contents["exit_code"] = record.exit.exit_code
    return contents


def new_session(out_dir, **overrides):
    arguments = dict(
        mode="offline",
        out_dir=out_dir,
        group="core50_nc",
        name="core50_nc/naive/seed0",
        config={"strategy": {"name": "naive", "lr": 0.01}, "seed": 0},
        tags=("synthetic",),
    )
    return WandbSession(**(arguments | overrides))


def test_offline_run_records_config_metrics_summary_and_artifact(tmp_path, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    out_dir = tmp_path / "out"
    results_file = out_dir / "results.json"
    plot_file = out_dir / "curves.png"
    out_dir.mkdir()
    results_file.write_text('{"schema_version": 1}')
    plot_file.write_bytes(b"\x89PNG\r\n\x1a\n")

    session = new_session(out_dir)
    assert session.active
    for index in range(3):
        session.log_experience(index, {"accuracy/seen_so_far": 0.5 + 0.1 * index, "bitops": 7.0})
    run_dir = session.finish(
        summary={"final_accuracy": 0.7, "bwt": -0.05}, files=[results_file, plot_file]
    )

    assert not session.active
    assert run_dir.parent == out_dir / "wandb" and run_dir.name.startswith("offline-run-")
    assert list(workdir.iterdir()) == []  # nothing written to the current directory
    contents = run_contents(run_dir)
    assert contents["group"] == "core50_nc"
    assert contents["name"] == "core50_nc/naive/seed0"
    assert contents["project"] == "cycl_bench"
    assert contents["tags"] == ["synthetic"]
    assert contents["config"]["strategy"] == {"name": "naive", "lr": 0.01}
    history = contents["history"]
    assert [row["_step"] for row in history] == [0, 1, 2]
    assert [row["experience"] for row in history] == [0, 1, 2]
    assert [row["accuracy/seen_so_far"] for row in history] == pytest.approx([0.5, 0.6, 0.7])
    assert contents["summary"]["final_accuracy"] == 0.7
    assert contents["summary"]["bwt"] == -0.05
    assert contents["artifacts"] == [
        ("core50_nc-naive-seed0-results", "results", {"results.json", "curves.png"})
    ]
    assert (run_dir / "artifact-files" / "results.json").read_text() == '{"schema_version": 1}'
    assert contents["exit_code"] == 0


def test_exception_inside_the_session_marks_the_run_failed(tmp_path):
    with pytest.raises(RuntimeError, match="strategy crashed"):
        with new_session(tmp_path) as session:
            session.log_experience(0, {"accuracy/seen_so_far": 0.3})
            raise RuntimeError("strategy crashed")
    (run_dir,) = offline_runs(tmp_path)
    assert run_contents(run_dir)["exit_code"] == 1


def test_disabled_mode_writes_nothing(tmp_path):
    session = new_session(tmp_path, mode="disabled")
    assert not session.active
    session.log_experience(0, {"accuracy/seen_so_far": 0.5})
    assert session.finish(summary={"final_accuracy": 0.5}) is None
    assert not (tmp_path / "wandb").exists()
    assert offline_sync_hint(tmp_path) is None


def test_unknown_mode_is_a_user_error_with_a_suggestion(tmp_path):
    with pytest.raises(UserError, match="unknown W&B mode 'ofline'.*did you mean 'offline'"):
        new_session(tmp_path, mode="ofline")


def test_online_mode_without_credentials_says_to_log_in(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match="wandb login"):
        check_wandb_mode("online")


def test_a_wandb_start_failure_warns_once_and_the_session_becomes_a_no_op(tmp_path, capsys):
    (tmp_path / "wandb").write_text("a file where wandb wants its folder")
    session = new_session(tmp_path)
    assert not session.active
    session.log_experience(0, {"accuracy/seen_so_far": 0.5})
    assert session.finish(summary={"final_accuracy": 0.5}) is None
    warnings = [line for line in capsys.readouterr().err.splitlines() if "W&B" in line]
    assert len(warnings) == 1
    assert "W&B start failed" in warnings[0] and "local results are unaffected" in warnings[0]


def test_a_wandb_failure_mid_run_warns_once_and_the_run_goes_on(tmp_path):
    """The W&B service process dies between two experiences; a subprocess, so the dead
    service does not leak into the other tests."""
    script = textwrap.dedent(
        f"""
        import os, signal, subprocess
        from pathlib import Path
        from cycl_bench.logging import WandbSession

        out = Path({str(tmp_path)!r})
        session = WandbSession(mode="offline", out_dir=out, group="g", name="r", config={{}})
        session.log_experience(0, {{"accuracy/seen_so_far": 0.5}})
        children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                                  capture_output=True, text=True, check=True).stdout
        for line in children.splitlines():
            if "wandb-core" in line:
                os.kill(int(line.split()[0]), signal.SIGKILL)
        for index in (1, 2):
            session.log_experience(index, {{"accuracy/seen_so_far": 0.6}})
        session.finish(summary={{"final_accuracy": 0.6}})
        (out / "results.json").write_text("complete")
        """
    )
    # without the parent's service address (WANDB_SERVICE), so the child starts its own service
    environment = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=environment
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "results.json").read_text() == "complete"
    warnings = [line for line in completed.stderr.splitlines() if line.startswith("warning: W&B")]
    assert len(warnings) == 1, completed.stdout + completed.stderr
    # which call notices the dead service first depends on timing
    assert re.match(r"warning: W&B (log|finish) failed for run 'r'", warnings[0])


def test_an_unreachable_online_server_is_tried_once_per_process(tmp_path):
    """Online with credentials wandb cannot use (a made-up key; no server reachable here, or one
    that refuses the key): the first run warns after the init timeout, the next skips at once."""
    script = textwrap.dedent(
        f"""
        from cycl_bench.logging import WandbSession
        for seed in (0, 1):
            WandbSession(mode="online", out_dir={str(tmp_path)!r}, group="g", name=f"r{{seed}}",
                         config={{}}).finish()
        print("run completed")
        """
    )
    environment = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"} | {
        "WANDB_API_KEY": "0" * 40,
        "WANDB_INIT_TIMEOUT": "2",
        "HOME": str(tmp_path),
        "NETRC": str(tmp_path / "netrc"),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
    }
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=environment
    )
    assert completed.returncode == 0, completed.stderr
    assert "run completed" in completed.stdout
    warnings = [line for line in completed.stderr.splitlines() if line.startswith("warning: W&B")]
    assert len(warnings) == 2, completed.stderr
    assert warnings[0].startswith("warning: W&B start failed for run 'r0'")
    assert "an earlier online run could not start" in warnings[1]


def test_experience_accuracies_weight_the_views_learned_so_far():
    row = [0.8, 0.6, 0.0]
    metrics = experience_accuracies(1, row, [10, 30, 20])
    assert metrics["accuracy/view_0"] == 0.8
    assert metrics["accuracy/view_2"] == 0.0
    assert metrics["accuracy/seen_so_far"] == pytest.approx((0.8 * 10 + 0.6 * 30) / 40)
    shared_test_set = experience_accuracies(4, [0.55], [300])
    assert shared_test_set == {"accuracy/view_0": 0.55, "accuracy/seen_so_far": 0.55}


def test_sync_hint_names_the_offline_runs_and_the_command(tmp_path):
    for seed in range(2):
        new_session(tmp_path, name=f"run{seed}").finish()
    hint = offline_sync_hint(tmp_path)
    assert hint.startswith(f"W&B: 2 offline runs in {tmp_path / 'wandb'}")
    assert f"wandb sync {tmp_path / 'wandb'}/offline-run-*" in hint
