"""Pretraining with DDP: two CPU processes (gloo) train what one process would, counted once."""

import json
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from test_pretrain import IMAGE_SHAPE, prototype_stream
from torch.utils.data import DataLoader, TensorDataset

from cycl_bench.cli import main
from cycl_bench.errors import UserError
from cycl_bench.models.checkpoint import load_pretrained
from cycl_bench.pretrain.callback import CyclicPrecision, schedule_for
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.pretrain.module import BackboneClassifier
from cycl_bench.pretrain.run import pretrain, trainer_launch
from cycl_bench.quant.cost import TrainingCost
from cycl_bench.quant.precision import get_precision, set_precision
from cycl_bench.registry import BACKBONES
from cycl_bench.spec import RunSpec

EPOCHS, BATCH = 4, 16
TRAIN = 4 * 60  # the first experience: four classes of 60 images
VAL = 4 * 20  # their test images; even, so no process pads its share with repeats


@pytest.fixture(scope="module")
def stream():
    return prototype_stream()


@pytest.fixture(scope="module")
def runs(stream, tmp_path_factory):
    """The same pretraining in one process and in two (devices=2: forked CPU processes)."""
    cache_dir = tmp_path_factory.mktemp("cache")
    results = {}
    for devices in (1, 2):
        config = PretrainConfig(
            epochs=EPOCHS, batch_size=BATCH, data="first_experience", devices=devices
        )
        results[devices] = pretrain(
            config,
            RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=cache_dir),
            stream=stream,
            seed=0,
            out_dir=tmp_path_factory.mktemp(f"out{devices}"),
        )
    return results


def sidecar(result) -> dict:
    return json.loads((result.checkpoint.parent / "pretrain.json").read_text())


def test_ddp_checkpoint_loads_and_evaluates_like_a_single_process_one(stream, runs):
    single, ddp = runs[1], runs[2]
    single_state = torch.load(single.checkpoint, weights_only=True)
    ddp_state = torch.load(ddp.checkpoint, weights_only=True)
    assert {k: (v.shape, v.dtype) for k, v in ddp_state.items()} == {
        k: (v.shape, v.dtype) for k, v in single_state.items()
    }
    model = BACKBONES.build("tiny_bnn", **ddp.backbone_kwargs)
    assert load_pretrained(model, ddp.checkpoint) == []
    assert get_precision(model) == (1, 1, 32)  # deployed: 1 bit, float gradients
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(x).argmax(1) == y).sum())
            for x, y, *_ in DataLoader(stream.test_views[0], batch_size=40)
        )
    accuracy = correct / VAL
    assert accuracy > 0.8 > 3 / 4  # chance is 1/4
    # the reported accuracy is the global one: both processes' halves of the validation set
    assert ddp.val_accuracy == pytest.approx(accuracy, abs=1e-6)


def test_ddp_counts_the_samples_of_every_process_once(runs):
    single, ddp = sidecar(runs[1]), sidecar(runs[2])
    # tiny_bnn in cyclebnn mode costs the same per sample at every cycled k (1 x 1 convolutions)
    model = BACKBONES.build("tiny_bnn", **runs[1].backbone_kwargs)
    set_precision(model, weight_bits=3, act_bits=3, grad_bits=8)
    per_sample = TrainingCost(model, IMAGE_SHAPE).step(batch_size=1)
    assert single["samples"] == ddp["samples"] == TRAIN * EPOCHS
    assert ddp["train_bitops"] == single["train_bitops"] == TRAIN * EPOCHS * per_sample
    assert ddp["fp32_bitops"] == single["fp32_bitops"]


def test_ddp_steps_the_schedule_over_its_own_step_count(runs):
    config = PretrainConfig(epochs=EPOCHS, batch_size=BATCH, devices=2)
    record = sidecar(runs[2])
    steps = EPOCHS * (TRAIN // 2 // BATCH + 1)  # 120 images per process: 7 batches and a part
    assert record["steps"] == steps == runs[2].steps
    schedule = schedule_for(config, total_steps=steps)
    assert [tuple(bits) for bits in record["applied_bits"]] == [
        (step, schedule(step), schedule(step), 8) for step in range(steps)
    ]


def test_the_process_count_is_in_the_cache_key_the_launcher_is_not(runs):
    assert runs[1].cache_key != runs[2].cache_key
    one = PretrainConfig().cache_fields()
    assert "devices" not in one and "strategy" not in one  # one process keeps its old key
    two = PretrainConfig(devices=2).cache_fields()
    assert two != one
    assert PretrainConfig(devices=2, strategy="ddp_spawn").cache_fields() == two
    assert PretrainConfig(devices=2, strategy="ddp").cache_fields() == two
    # DDP with one process orders the data with its own sampler: not the plain run either
    assert PretrainConfig(strategy="ddp").cache_fields() not in (one, two)


class RankProbe(pl.Callback):
    """Writes the bits each process trains every step with, one file per process."""

    def __init__(self, folder):
        self.folder = folder
        self.steps = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append([trainer.global_step, *get_precision(pl_module.backbone)])

    def on_train_end(self, trainer, pl_module):
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.steps))


def test_every_process_sets_the_same_bits_at_the_same_global_step(tmp_path):
    torch.manual_seed(0)
    config = PretrainConfig(epochs=2, batch_size=8)
    backbone = BACKBONES.build("tiny_bnn", num_classes=4, image_size=16)
    module = BackboneClassifier(backbone, num_classes=4, lr=1e-3, weight_decay=1e-5)
    data = TensorDataset(torch.randn(160, *IMAGE_SHAPE), torch.arange(160) % 4)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork",
        callbacks=[
            CyclicPrecision.from_config(config, input_shape=IMAGE_SHAPE),
            RankProbe(tmp_path),
        ],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(data, batch_size=8, shuffle=True))
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    schedule = schedule_for(config, total_steps=20)  # 80 images per process, batches of 8
    assert first == second == [[s, schedule(s), schedule(s), 8] for s in range(20)]


# -- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, problem",
    [({"devices": 0}, "devices=0"), ({"strategy": "fsdp"}, "strategy='fsdp'")],
)
def test_bad_devices_or_strategy_is_a_user_error(fields, problem):
    with pytest.raises(UserError, match=problem):
        PretrainConfig(**fields)


@pytest.mark.parametrize(
    "fields, device, problem",
    [
        ({"devices": 2, "strategy": "ddp"}, "cpu", "re-running the command"),
        ({"devices": 2}, "cuda:0", "names one GPU"),
        ({}, "tpu", "not cpu, cuda or cuda:N"),
    ],
)
def test_a_launch_that_cannot_work_is_a_user_error(fields, device, problem):
    with pytest.raises(UserError, match=problem):
        trainer_launch(PretrainConfig(**fields), device, rerunnable=False)


def test_the_run_device_picks_the_accelerator():
    assert trainer_launch(PretrainConfig(), "cpu", rerunnable=False) == {
        "accelerator": "cpu",
        "devices": 1,
        "strategy": "auto",
    }
    two = trainer_launch(PretrainConfig(devices=2), "cpu", rerunnable=False)
    assert two == {"accelerator": "cpu", "devices": 2, "strategy": "ddp_fork"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="torch sees 0 GPU"):
            trainer_launch(PretrainConfig(), "cuda", rerunnable=False)


PRETRAIN = ["pretrain", "--backbone", "tiny_bnn", "--benchmark", "core50_nc"]


def test_bad_devices_option_exits_2_with_one_line(capsys):
    assert main([*PRETRAIN, "--devices", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "devices=0" in err


def test_unknown_strategy_option_is_refused_by_the_parser(capsys):
    assert main([*PRETRAIN, "--strategy", "fsdp"]) == 2
    assert "--strategy: invalid choice: 'fsdp'" in capsys.readouterr().err


# -- the command, with Lightning's ddp (it re-runs the command for the second process) --------


@pytest.mark.slow
def test_pretrain_command_with_ddp_writes_one_entry_and_reports_once(tmp_path):
    argv = [
        *("--backbone", "tiny_bnn", "--benchmark", "core50_nc", "--data", "synthetic"),
        *("--fast", "--epochs", "1", "--pretrain-data", "first_experience"),
        *("--devices", "2", "--strategy", "ddp"),
        *("--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "cycl_bench", "pretrain", *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("pretrained tiny_bnn") == 1
    assert [path.name[:9] for path in (tmp_path / "cache").iterdir()] == ["tiny_bnn-"]
    record = json.loads((tmp_path / "out" / "pretrain.json").read_text())
    assert record["devices"] == 2 and record["steps"] > 0
