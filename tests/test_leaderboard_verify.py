"""`leaderboard verify`: a submission made from a fresh run verifies; a hand-edited number, a
swapped model file, a model from another run, a model that does not load and a URL that does not
answer each fail with their reason, and the site shows each tier.

The run is real and on the shipped core50_nc protocol (synthetic source, so no download):
tiny_bnn, no pretraining, one epoch per experience. What the models must give is the file's own
last accuracy row, measured when the run trained them: an expectation from outside `verify`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_leaderboard_support import make_submission, summary_of, write_submission

from cycl_bench.cli import main
from cycl_bench.evaluation.results import SeedResult, seed_metrics
from cycl_bench.export import load_model, pack_saved_model, save_model
from cycl_bench.quant.layers import BinaryConv2d
from cycl_bench.quant.precision import set_precision
from cycl_bench.registry import BACKBONES

CHEAP = [
    "backbone.name=tiny_bnn",
    "pretrain.schedule=none",
    "strategy.*.first_epochs=1",
    "strategy.*.epochs=1",
]
NAME = "CWR star tiny"
SLUG = "cwr-star-tiny"


def fresh_run(out: Path, *extra: str) -> Path:
    code = main(
        [
            "run",
            "core50_nc",
            "--data",
            "synthetic",
            "--strategy",
            "cwr_star",
            "--wandb",
            "disabled",
            "--out",
            str(out),
            *CHEAP,
            *extra,
        ]
    )
    assert code == 0
    (run_dir,) = (out / "core50_nc").iterdir()
    return run_dir


def submit(run_dir: Path, root: Path, *extra: str) -> int:
    return main(
        [
            "submit",
            str(run_dir / "results" / "cwr_star.json"),
            "--name",
            NAME,
            "--author",
            "A. Author",
            "--license",
            "MIT",
            "--hardware",
            "2-core CPU",
            "--submissions",
            str(root / "submissions"),
            *extra,
        ]
    )


def verify(root: Path, *extra: str) -> int:
    return main(
        [
            "leaderboard",
            "verify",
            str(root / "submissions"),
            "--models",
            str(root / "models"),
            "--records",
            str(root / "records"),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return fresh_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def board(run_dir, tmp_path):
    """A submission of the fresh run with its packed models, as `submit` writes them."""
    assert submit(run_dir, tmp_path, "--models-out", str(tmp_path / "models")) == 0
    return tmp_path


def submission_file(root: Path) -> Path:
    return root / "submissions" / "core50_nc" / f"{SLUG}.json"


def model_file(root: Path, seed: int) -> Path:
    return root / "models" / "core50_nc" / f"{SLUG}-seed{seed}.pt"


def record(root: Path) -> dict:
    return json.loads((root / "records" / "core50_nc" / f"{SLUG}.json").read_text())


def build(root: Path) -> str:
    site = root / "site"
    args = ["leaderboard", "build", "--submissions", str(root / "submissions"), "--out", str(site)]
    assert main([*args, "--verifications", str(root / "records")]) == 0
    return (site / "core50_nc.html").read_text()


def table(page: str, table_id: str) -> str:
    return page.split(f'id="{table_id}"')[1].split("</table>")[0]


def test_a_submission_from_a_fresh_run_verifies(board, run_dir, capsys):
    data = json.loads(submission_file(board).read_text())
    assert [model["seed"] for model in data["models"]] == [0, 1, 2]
    assert verify(board) == 0
    out = capsys.readouterr().out
    assert f"verified {submission_file(board)}: 3 seed(s), largest difference 0 image(s)" in out
    found = record(board)
    assert found["status"] == "verified"
    results = json.loads((run_dir / "results" / "cwr_star.json").read_text())
    for check, seed in zip(found["seeds"], results["per_seed"], strict=True):
        assert check["measured"] == seed["accuracy_matrix"][-1]  # exactly, on this machine
    page = build(board)
    assert NAME in table(page, "synthetic-verified")
    assert "No entries." in table(page, "synthetic-reproduced")
    assert "No entries." in table(page, "verified")  # the real-data track stays apart
    assert "synthetic data" in table(page, "synthetic-verified")


def test_a_hand_edited_number_fails_as_drifted(board, capsys):
    path = submission_file(board)
    data = json.loads(path.read_text())
    results = data["results"]
    seed = results["per_seed"][0]
    sizes = results["benchmark"]["test_sizes"]
    seed["accuracy_matrix"][-1][8] += 3 / sizes[8]  # three more images right on view 8
    seed.update(seed_metrics(seed["accuracy_matrix"], sizes))
    per_seed = [SeedResult.model_validate(s) for s in results["per_seed"]]
    results["summary"] = {k: v.model_dump() for k, v in summary_of(per_seed).items()}
    path.write_text(json.dumps(data))
    assert main(["leaderboard", "validate", str(path)]) == 0  # consistent: only a model tells
    assert verify(board) == 1
    out = capsys.readouterr().out
    assert "DRIFTED" in out
    assert "seed 0, test view 8: the file says" in out
    assert "(3 of 45 images)" in out
    assert record(board)["status"] == "drifted"
    page = build(board)
    assert "No entries." in table(page, "synthetic-verified")
    assert "drifted" in table(page, "synthetic-reproduced")


def test_a_swapped_model_file_fails_on_its_sha256(board, capsys):
    shutil.copyfile(model_file(board, 1), model_file(board, 0))
    assert verify(board) == 1
    out = capsys.readouterr().out
    assert f"FAILED   {submission_file(board)}: {model_file(board, 0)} has sha256" in out
    assert "the submission lists" in out
    assert record(board)["status"] == "failed"
    assert submission_file(board).is_file()  # nothing deleted


def test_a_model_from_another_run_fails_on_its_numbers(board, tmp_path_factory, capsys):
    other = fresh_run(tmp_path_factory.mktemp("other"), "strategy.*.lr=0.01", "seeds=[0]")
    sha = pack_saved_model(other / "models" / "cwr_star-seed0.pt", model_file(board, 0))
    path = submission_file(board)
    data = json.loads(path.read_text())
    data["models"][0]["sha256"] = sha
    path.write_text(json.dumps(data))
    assert verify(board) == 1
    out = capsys.readouterr().out
    assert "DRIFTED" in out and "seed 0, test view" in out


def test_a_model_of_another_seed_fails_on_what_it_says(board, capsys):
    shutil.copyfile(model_file(board, 1), model_file(board, 0))
    path = submission_file(board)
    data = json.loads(path.read_text())
    data["models"][0]["sha256"] = data["models"][1]["sha256"]
    path.write_text(json.dumps(data))
    assert verify(board) == 1
    assert "the model was trained with seed 1, the entry with 0" in capsys.readouterr().out


def test_a_model_that_does_not_load_fails_naming_the_file(board, capsys):
    garbage = model_file(board, 2)
    garbage.write_bytes(b"not a model")
    path = submission_file(board)
    data = json.loads(path.read_text())
    data["models"][2]["sha256"] = hashlib.sha256(b"not a model").hexdigest()
    path.write_text(json.dumps(data))
    assert verify(board) == 1
    assert f"{garbage} is not a readable saved model" in capsys.readouterr().out


def test_a_url_that_does_not_answer_fails_in_one_line(board, capsys):
    model_file(board, 0).unlink()
    path = submission_file(board)
    data = json.loads(path.read_text())
    data["models"][0]["url"] = "http://127.0.0.1:9/model.pt"  # the discard port: refused
    path.write_text(json.dumps(data))
    assert verify(board, "--cache-dir", str(board / "cache")) == 1
    out = capsys.readouterr().out
    assert "http://127.0.0.1:9/model.pt does not answer" in out
    assert "Traceback" not in out


def test_an_entry_without_models_is_skipped_and_stays_reproduced(run_dir, tmp_path, capsys):
    assert submit(run_dir, tmp_path) == 0  # no --models-out: the run's own files are listed
    path = submission_file(tmp_path)
    data = json.loads(path.read_text())
    assert (
        data["models"][0]["sha256"]
        == json.loads((run_dir / "results" / "cwr_star.json").read_text())["per_seed"][0][
            "model_sha256"
        ]
    )
    del data["models"]
    path.write_text(json.dumps(data))
    (tmp_path / "models").mkdir()
    assert verify(tmp_path) == 0
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "records").exists()
    assert "no models" in table(build(tmp_path), "synthetic-reproduced")


def test_a_real_data_entry_without_its_dataset_is_not_verified_yet(tmp_path, capsys):
    data = make_submission("On CORe50")
    data["models"] = [{"seed": seed, "sha256": f"{seed:064x}"} for seed in range(3)]
    write_submission(tmp_path / "submissions", data)
    (tmp_path / "models").mkdir()
    assert verify(tmp_path, "--data-root", str(tmp_path / "no-data")) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "not verified yet: CORe50 is not in" in out
    assert "downloads are off here" in out
    assert not (tmp_path / "no-data").exists() or not any((tmp_path / "no-data").rglob("*.zip"))
    assert "not verified yet" in table(build(tmp_path), "reproduced")


def test_verify_bad_options_are_one_line(board, capsys):
    (board / "records-file").write_text("")
    assert verify(board, "--records", str(board / "records-file")) == 2
    assert "--records: " in (err := capsys.readouterr().err) and "is a file; give a folder" in err
    assert verify(board, "--device", "tpu") == 2
    assert "--device: 'tpu' is not cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.slow
def test_rerun_retrains_a_seed_and_gives_the_same_matrix(board, capsys):
    assert verify(board, "--rerun") == 0
    assert record(board)["mode"] == "rerun"
    assert len(record(board)["seeds"]) == 4


# -- packed models --------------------------------------------------------------------------


def test_a_packed_model_computes_what_the_full_one_does(tmp_path):
    kwargs = {"num_classes": 10, "in_channels": 3, "image_size": 16}
    model = BACKBONES.build("tiny_bnn", **kwargs)
    set_precision(model, weight_bits=1, act_bits=1)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, BinaryConv2d):
                layer.weight.normal_()
                layer.weight[0, 0, 0, 0] = -0.0  # the sign of -0 is -1 (binary_sign)
    full, packed = tmp_path / "full.pt", tmp_path / "packed.pt"
    save_model(model, full, backbone="tiny_bnn", backbone_kwargs=kwargs, deployed_bits=1)
    pack_saved_model(full, packed)
    payload = torch.load(packed, weights_only=True)
    binary = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    # 8 signs per byte, per tensor rounded up: a hand count from the layer shapes
    assert sum(item["bits"].numel() for item in payload["packed_signs"].values()) == sum(
        -(-layer.weight.numel() // 8) for layer in binary
    )
    a, _ = load_model(full)
    b, _ = load_model(packed)
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert packed.stat().st_size < full.stat().st_size / 4


# -- the suite's own reference entries, shipped with their models --------------------------------

SHIPPED = Path(__file__).resolve().parent.parent / "leaderboard"


def shipped_reference_entries() -> list[Path]:
    return sorted(
        path
        for path in (SHIPPED / "submissions").glob("*/*.json")
        if '"models"' in path.read_text(encoding="utf-8")
    )


def sha256_of(path: Path) -> str:
    """The file's SHA-256, by hashlib (not the package's helper, which verify itself uses)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shipped_reference_entries_carry_their_models_and_a_current_record():
    from cycl_bench.leaderboard.validate import validate
    from cycl_bench.leaderboard.verify import read_record, record_path

    entries = shipped_reference_entries()
    assert {path.parent.name for path in entries} >= {"core50_nc", "split_cifar10"}
    for item in validate(entries):
        assert item.ok, item.problems
        submission = item.submission
        assert submission.track == "synthetic" and not submission.results.fast
        record = read_record(record_path(SHIPPED / "verifications", submission))
        assert record is not None and record.status == "verified", item.path
        assert record.submission_sha256 == sha256_of(item.path)  # the file as it is now
        for model in submission.models:
            path = SHIPPED / "models" / model_file_name(submission, model.seed)
            assert sha256_of(path) == model.sha256


def model_file_name(submission, seed: int) -> str:
    from cycl_bench.leaderboard.submission import model_file_name as name

    return name(submission.benchmark, submission.entry.name, seed)


def test_a_fresh_clone_verifies_a_reference_entry_with_no_network(tmp_path, capsys):
    (path,) = [p for p in shipped_reference_entries() if p.parent.name == "split_cifar10"][:1]
    args = ["leaderboard", "verify", str(path), "--models", str(SHIPPED / "models")]
    assert main([*args, "--records", str(tmp_path)]) == 0
    assert "largest difference 0 image(s)" in capsys.readouterr().out


def test_submit_refuses_a_run_whose_model_changed_and_lists_none_out_of_its_folder(
    run_dir, tmp_path, capsys
):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    model = copy / "models" / "cwr_star-seed1.pt"
    model.write_bytes(model.read_bytes() + b"edited")
    assert submit(copy, tmp_path) == 2
    assert "is not the model" in capsys.readouterr().err
    assert not (tmp_path / "submissions").exists()
    alone = tmp_path / "elsewhere" / "results" / "cwr_star.json"  # the file without its run
    alone.parent.mkdir(parents=True)
    shutil.copy(run_dir / "results" / "cwr_star.json", alone)
    assert submit(alone.parent.parent, tmp_path) == 0
    assert "not in its run folder; the submission lists no models" in capsys.readouterr().out
    assert "models" not in json.loads(submission_file(tmp_path).read_text())
