import csv
import hashlib
import json
import os
import shutil

import pytest
import pytorch_lightning as pl
import torch
from avalanche.benchmarks import nc_benchmark
from torch.utils.data import DataLoader, TensorDataset

from cycl_bench.cli import main
from cycl_bench.data.base import Stream
from cycl_bench.errors import UserError
from cycl_bench.models.checkpoint import load_pretrained
from cycl_bench.pretrain.callback import CyclicPrecision, schedule_for
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.pretrain.module import BackboneClassifier
from cycl_bench.pretrain.run import pretrain
from cycl_bench.quant.precision import get_precision
from cycl_bench.registry import BACKBONES
from cycl_bench.spec import RunSpec

IMAGE_SHAPE = (3, 16, 16)
CLASSES = 8  # two experiences of four classes


def prototype_stream(seed: int = 0, *, train_per_class: int = 60) -> Stream:
    """A small class-incremental stream: each class is a noisy copy of its own random image."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(CLASSES, *IMAGE_SHAPE, generator=generator)

    def draw(per_class: int) -> TensorDataset:
        labels = torch.arange(CLASSES).repeat_interleave(per_class)
        images = prototypes[labels] + torch.randn(len(labels), *IMAGE_SHAPE, generator=generator)
        dataset = TensorDataset(images, labels)
        dataset.targets = labels.tolist()
        return dataset

    benchmark = nc_benchmark(
        draw(train_per_class),
        draw(20),
        n_experiences=2,
        task_labels=False,
        seed=seed,
        fixed_class_order=list(range(CLASSES)),
    )
    return Stream(
        name="prototypes",
        scenario="nc",
        source="synthetic",
        benchmark=benchmark,
        test_views=[experience.dataset for experience in benchmark.test_stream],
        classes_per_experience=[[0, 1, 2, 3], [4, 5, 6, 7]],
        num_classes=CLASSES,
        image_shape=IMAGE_SHAPE,
        protocol={"name": "prototypes", "seed": seed, "train_per_class": train_per_class},
    )


@pytest.fixture(scope="module")
def stream() -> Stream:
    return prototype_stream()


@pytest.fixture(scope="module")
def cyclic_run(stream, tmp_path_factory):
    """One short cyclic-precision pretraining of tiny_bnn, shared by the tests that read it."""
    config = PretrainConfig(epochs=4, batch_size=32, data="first_experience")
    cache_dir = tmp_path_factory.mktemp("cache")
    result = pretrain(
        config,
        RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=cache_dir),
        stream=stream,
        seed=0,
        out_dir=tmp_path_factory.mktemp("out"),
    )
    return config, cache_dir, result


# -- config ------------------------------------------------------------------------------


def test_config_defaults_follow_the_papers():
    config = PretrainConfig()
    assert (config.schedule, config.mode) == ("cyclic", "cyclebnn")
    assert (config.min_bits, config.max_bits, config.cycles) == (2, 6, 8)
    assert (config.eval_bits, config.grad_bits) == (1, 8)
    assert (config.lr, config.weight_decay) == (1e-3, 1e-5)
    assert config.data == "synthetic"  # a generic source separate from the stream
    assert config.closing_fraction == 0.0


def test_cpt_mode_closes_at_the_eval_bits_unless_told_otherwise():
    assert PretrainConfig(mode="cpt").closing_fraction == 0.1
    assert PretrainConfig(mode="cpt", closing_fraction=0.0).closing_fraction == 0.0


@pytest.mark.parametrize(
    "fields",
    [
        {"min_bits": 0},
        {"max_bits": 9},
        {"eval_bits": 0},
        {"min_bits": 5, "max_bits": 3},
        {"cycles": 0},
        {"grad_bits": 1},
        {"closing_fraction": 1.0},
    ],
)
def test_invalid_config_is_a_user_error(fields):
    with pytest.raises(UserError):
        PretrainConfig(**fields)


def test_unknown_config_key_is_refused():
    with pytest.raises(ValueError):
        PretrainConfig(cycle=8)


# -- the callback ------------------------------------------------------------------------


class PrecisionProbe(pl.Callback):
    """Reads the precision the backbone really has during training and validation batches."""

    def __init__(self):
        self.training: list[tuple[int, tuple]] = []
        self.validation: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.training.append((trainer.global_step, get_precision(pl_module.backbone)))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.validation.append(get_precision(pl_module.backbone))


def test_callback_sets_the_scheduled_bits_every_step_and_evaluates_at_one_bit(tmp_path):
    torch.manual_seed(0)
    config = PretrainConfig(epochs=2, batch_size=16)
    backbone = BACKBONES.build("tiny_bnn", num_classes=4, image_size=16)
    module = BackboneClassifier(backbone, num_classes=4, lr=1e-3, weight_decay=1e-5)
    data = TensorDataset(torch.randn(160, *IMAGE_SHAPE), torch.arange(160) % 4)
    cyclic = CyclicPrecision.from_config(config, input_shape=IMAGE_SHAPE)
    probe = PrecisionProbe()
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[cyclic, probe],
        logger=pl.loggers.CSVLogger(tmp_path, name="", version=""),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(data, batch_size=16), DataLoader(data, batch_size=80))

    schedule = schedule_for(config, total_steps=20)
    expected = [(step, (schedule(step), schedule(step), 8)) for step in range(20)]
    assert probe.training == expected
    assert {bits for _, bits in probe.training} >= {(2, 2, 8), (6, 6, 8)}
    assert {bits[:2] for bits in probe.validation} == {(1, 1)}
    # left at the deployment precision; gradient quantization belongs to the schedule only
    assert get_precision(backbone) == (1, 1, 32)

    with open(tmp_path / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["precision/weight_bits"]]
    assert [int(float(row["precision/weight_bits"])) for row in rows] == [
        bits[0] for _, bits in expected
    ]
    bitops = [float(row["cost/train_bitops"]) for row in rows]
    assert bitops == sorted(bitops) and bitops[0] > 0


def test_callback_records_and_logs_both_cost_conventions_by_hand(tmp_path):
    """tiny_bnn (cyclebnn, 16x16, 4 classes), two steps of 3 samples at k = 2 then k = 6 with
    8-bit gradients. Per sample, counted by hand in test_cost.py (stem 221,184 MACs, binary
    convolutions 3,538,944, projections 262,144, classifier 512): the 8-bit layers cost
    222,068,736 BitOPs per step in both conventions; the binary convolutions cost 1 x 1 and
    1 x 8 twice, 17 x 3,538,944, at either k in the suite's count, and k x k + 2 x k x 8 in the
    CPT/CycleBNN convention (36 x and 132 x 3,538,944); FP32 12,131,500,032 per step."""
    torch.manual_seed(0)
    backbone = BACKBONES.build("tiny_bnn", num_classes=4, image_size=16)
    module = BackboneClassifier(backbone, num_classes=4, lr=1e-3, weight_decay=1e-5)
    data = TensorDataset(torch.randn(6, *IMAGE_SHAPE), torch.arange(6) % 4)
    callback = CyclicPrecision(
        lambda total_steps: lambda step: (2, 6)[step], input_shape=IMAGE_SHAPE, grad_bits=8
    )
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[callback],
        logger=pl.loggers.CSVLogger(tmp_path, name="", version=""),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(data, batch_size=3))

    fixed, binary, fp32 = 222_068_736, 3_538_944, 12_131_500_032
    suite = [3 * (fixed + 17 * binary), 3 * (fixed + 17 * binary)]
    cpt = [3 * (fixed + 36 * binary), 3 * (fixed + 132 * binary)]
    record = callback.record()
    assert [bits[1:] for bits in record["applied_bits"]] == [[2, 2, 8], [6, 6, 8]]
    assert record["train_bitops"] == sum(suite) == 3 * 564_461_568
    assert record["cpt_convention_bitops"] == sum(cpt) == 3 * 1_038_680_064
    assert record["fp32_bitops"] == 2 * 3 * fp32
    assert record["bitops_reduction_vs_fp32"] == pytest.approx(1 - sum(suite) / (6 * fp32))
    assert record["cpt_convention_reduction_vs_fp32"] == pytest.approx(1 - sum(cpt) / (6 * fp32))

    with open(tmp_path / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["cost/train_bitops"]]
    assert [float(row["cost/train_bitops"]) for row in rows] == [suite[0], sum(suite)]
    assert [float(row["cost/cpt_convention_bitops"]) for row in rows] == [cpt[0], sum(cpt)]
    assert float(rows[-1]["cost/cpt_convention_reduction_vs_fp32"]) == pytest.approx(
        1 - sum(cpt) / (6 * fp32)
    )


# -- pretrain() ----------------------------------------------------------------------------


def test_short_cyclic_pretraining_is_well_above_chance_at_one_bit(cyclic_run):
    _, _, result = cyclic_run
    chance = 1 / 4  # validation holds the four classes of the first experience
    assert not result.from_cache
    assert result.val_accuracy > 0.8 > 3 * chance


def test_pretraining_records_the_applied_schedule_and_its_cost(cyclic_run):
    config, _, result = cyclic_run
    record = json.loads((result.checkpoint.parent / "pretrain.json").read_text())
    schedule = schedule_for(config, total_steps=result.steps)
    applied = [tuple(bits) for bits in record["applied_bits"]]
    assert applied == [(step, schedule(step), schedule(step), 8) for step in range(result.steps)]
    assert result.schedule_png.stat().st_size > 0
    with open(result.metrics_csv) as file:
        header = next(csv.reader(file))
    assert {"precision/weight_bits", "cost/train_bitops", "val/accuracy"} <= set(header)
    assert {"cost/cpt_convention_bitops", "cost/cpt_convention_reduction_vs_fp32"} <= set(header)
    assert 0 < result.train_bitops < result.fp32_bitops
    assert 0.9 < result.reduction_vs_fp32 < 1
    # cyclebnn mode: the convolutions multiply 1 x 1 bits; the CPT/CycleBNN convention prices
    # them at the scheduled 2..6 bits, so it counts more and saves less
    assert result.train_bitops < result.cpt_convention_bitops < result.fp32_bitops
    assert record["cpt_convention_bitops"] == result.cpt_convention_bitops
    assert record["cpt_convention_reduction_vs_fp32"] == pytest.approx(
        result.cpt_convention_reduction_vs_fp32
    )
    assert record["bitops_reduction_vs_fp32"] == pytest.approx(result.reduction_vs_fp32)


def test_checkpoint_is_a_plain_state_dict_that_reproduces_the_accuracy(stream, cyclic_run):
    _, _, result = cyclic_run
    assert isinstance(torch.load(result.checkpoint, weights_only=True), dict)
    model = BACKBONES.build("tiny_bnn", **result.backbone_kwargs)
    assert load_pretrained(model, result.checkpoint) == []
    assert get_precision(model)[:2] == (1, 1)
    test = stream.test_views[0]
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(x).argmax(1) == y).sum()) for x, y, *_ in DataLoader(test, batch_size=40)
        )
    assert correct / len(test) == pytest.approx(result.val_accuracy, abs=1e-6)


def test_a_second_identical_call_comes_from_the_cache(stream, cyclic_run, tmp_path):
    config, cache_dir, first = cyclic_run
    spec = RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=cache_dir)
    again = pretrain(config, spec, stream=stream, seed=0, out_dir=tmp_path)
    assert again.from_cache
    assert again.checkpoint == first.checkpoint
    assert again.val_accuracy == first.val_accuracy
    assert again.train_bitops == first.train_bitops
    assert (tmp_path / "pretrain_metrics.csv").is_file()


def test_a_changed_field_misses_the_cache(stream, tmp_path):
    def run(config):
        config = config.model_copy(update={"data": "first_experience"})
        return pretrain(
            config,
            RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=tmp_path / "cache"),
            stream=stream,
            seed=0,
            out_dir=tmp_path / "out",
            fast=True,
        )

    first = run(PretrainConfig(epochs=1, batch_size=64))
    changed = run(PretrainConfig(epochs=1, batch_size=64, cycles=4))
    assert not changed.from_cache
    assert changed.cache_key != first.cache_key
    assert run(PretrainConfig(epochs=1, batch_size=64, num_workers=0)).from_cache


@pytest.mark.parametrize("damage", ["truncated", "empty", "random", "old entry, truncated"])
def test_a_damaged_cached_checkpoint_is_moved_aside_and_rebuilt(stream, tmp_path, capsys, damage):
    runs = iter(range(3))

    def run():  # each into a new out_dir: one that kept the checkpoint would restore it
        config = PretrainConfig(epochs=1, batch_size=64, data="first_experience")
        spec = RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=tmp_path / "cache")
        out_dir = tmp_path / f"out{next(runs)}"
        return pretrain(config, spec, stream=stream, seed=0, out_dir=out_dir, fast=True)

    first = run()
    whole = first.checkpoint.read_bytes()
    folder = first.checkpoint.parent
    if damage.startswith("old entry"):  # written before the sha256 was recorded
        sidecar = json.loads((folder / "pretrain.json").read_text())
        del sidecar["checkpoint_sha256"]
        (folder / "pretrain.json").write_text(json.dumps(sidecar))
    first.checkpoint.write_bytes(
        {"empty": b"", "random": os.urandom(len(whole))}.get(damage, whole[: len(whole) // 2])
    )
    again = run()
    assert not again.from_cache
    assert again.checkpoint.read_bytes() == whole  # rebuilt: the same weights
    assert "is damaged (not the file written with it); moved aside to" in capsys.readouterr().err
    (aside,) = [p for p in (tmp_path / "cache").iterdir() if ".aside-" in p.name]
    assert (aside / "backbone.pt").stat().st_size < len(whole) or damage == "random"
    assert run().from_cache  # the rebuilt entry is whole


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pretrain_into(stream, cache_dir, out_dir):
    config = PretrainConfig(epochs=1, batch_size=64, data="first_experience")
    spec = RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=cache_dir)
    return pretrain(config, spec, stream=stream, seed=0, out_dir=out_dir, fast=True)


def test_a_run_folder_keeps_its_backbone_and_restores_it_to_an_empty_cache(stream, tmp_path):
    first = pretrain_into(stream, tmp_path / "cache", tmp_path / "run")
    kept = tmp_path / "run" / "backbone.pt"
    assert kept.read_bytes() == first.checkpoint.read_bytes()
    record = json.loads((tmp_path / "run" / "pretrain.json").read_text())
    assert record["checkpoint_sha256"] == sha256_of(kept)

    # another machine, or a lost cache: the run folder's own weights, not a new pretraining
    again = pretrain_into(stream, tmp_path / "empty cache", tmp_path / "run")
    assert again.from_cache
    assert str(again.checkpoint).startswith(str(tmp_path / "empty cache"))
    assert again.checkpoint.read_bytes() == kept.read_bytes()
    assert again.val_accuracy == first.val_accuracy


def test_a_run_folder_refuses_a_cache_that_holds_other_weights(stream, tmp_path):
    first = pretrain_into(stream, tmp_path / "cache", tmp_path / "run")
    measured = (tmp_path / "run" / "pretrain.json").read_text()
    # the same key pretrained on another machine: other weights, a whole entry
    other = tmp_path / "other cache" / first.checkpoint.parent.name
    shutil.copytree(first.checkpoint.parent, other)
    weights = torch.load(other / "backbone.pt", weights_only=True)
    name = next(iter(weights))
    weights[name] = weights[name] + 0.5
    torch.save(weights, other / "backbone.pt")
    sidecar = json.loads((other / "pretrain.json").read_text())
    sidecar["checkpoint_sha256"] = sha256_of(other / "backbone.pt")
    (other / "pretrain.json").write_text(json.dumps(sidecar))

    with pytest.raises(UserError, match="the cache holds another .*not bit-reproducible"):
        pretrain_into(stream, tmp_path / "other cache", tmp_path / "run")
    assert (tmp_path / "run" / "pretrain.json").read_text() == measured  # the evidence is kept
    assert (tmp_path / "run" / "backbone.pt").read_bytes() == first.checkpoint.read_bytes()


def test_a_run_folder_without_its_backbone_refuses_a_new_pretraining_with_other_weights(
    stream, tmp_path
):
    pretrain_into(stream, tmp_path / "cache", tmp_path / "run")
    (tmp_path / "run" / "backbone.pt").unlink()  # a run folder written before it kept one
    record = json.loads((tmp_path / "run" / "pretrain.json").read_text())
    record["checkpoint_sha256"] = "0" * 64  # measured with weights pretrained elsewhere
    (tmp_path / "run" / "pretrain.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="pretraining again gave another"):
        pretrain_into(stream, tmp_path / "empty cache", tmp_path / "run")


def test_load_pretrained_refuses_another_backbone(cyclic_run):
    _, _, result = cyclic_run
    other = BACKBONES.build("tiny_bnn", **(result.backbone_kwargs | {"width": 2.0}))
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained(other, result.checkpoint)


def test_load_pretrained_leaves_out_a_resized_classifier(cyclic_run):
    _, _, result = cyclic_run
    model = BACKBONES.build("tiny_bnn", **(result.backbone_kwargs | {"num_classes": 5}))
    assert load_pretrained(model, result.checkpoint) == ["classifier.weight"]


# -- the command ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, problem",
    [
        (["--min-bits", "0"], "min_bits=0"),
        (["--max-bits", "9"], "max_bits=9"),
        (["--min-bits", "5", "--max-bits", "3"], "min_bits=5 > max_bits=3"),
        (["--cycles", "0"], "cycles=0"),
        (["--backbone", "resnet_bnn"], "unknown backbone 'resnet_bnn'"),
        (["--pretrain-data", "cifar10"], "unknown pretrain data 'cifar10'"),
        (["--lr", "nan"], "--lr nan: input should be a finite number"),
        (["--lr", "inf"], "--lr inf: input should be a finite number"),
        (["--weight-decay=-inf"], "--weight-decay -inf: input should be a finite number"),
    ],
)
def test_bad_pretrain_input_exits_2_with_one_line(options, problem, capsys):
    argv = ["pretrain", "--backbone", "tiny_bnn", "--benchmark", "core50_nc", *options]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ")
    assert captured.err.count("\n") == 1
    assert problem in captured.err


def test_pretrain_command_writes_checkpoint_metrics_and_plot(tmp_path, capsys):
    argv = [
        "pretrain",
        "--backbone",
        "tiny_bnn",
        "--benchmark",
        "core50_nc",
        "--data",
        "synthetic",
        "--fast",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("pretrain_metrics.csv", "pretrain_schedule.png", "pretrain.json"):
        assert (tmp_path / "out" / name).is_file()
    (checkpoint,) = (tmp_path / "cache").glob("tiny_bnn-*/backbone.pt")
    assert str(checkpoint) in printed
    assert "1-bit val accuracy" in printed
    assert main(argv) == 0
    assert "reused from the cache" in capsys.readouterr().out


@pytest.mark.slow
def test_pretraining_on_another_benchmark_sizes_the_classifier_for_it(tmp_path):
    from cycl_bench.registry import BENCHMARKS

    core50 = BENCHMARKS.build("core50_nc", data="synthetic", seed=0)
    result = pretrain(
        PretrainConfig(data="split_cifar10", epochs=1),
        RunSpec.of("tiny_bnn", core50.image_shape, cache_dir=tmp_path / "cache"),
        stream=core50,
        seed=0,
        out_dir=tmp_path / "out",
        fast=True,
    )
    assert result.backbone_kwargs["num_classes"] == 10
    model = BACKBONES.build("tiny_bnn", **(result.backbone_kwargs | {"num_classes": 50}))
    assert load_pretrained(model, result.checkpoint) == ["classifier.weight"]


def test_a_float_reference_pretrains_and_keeps_float_precision(stream, tmp_path):
    result = pretrain(
        PretrainConfig(epochs=2, batch_size=64, data="first_experience"),
        RunSpec.of("tiny_fp", stream.image_shape, cache_dir=tmp_path / "cache"),
        stream=stream,
        seed=0,
        out_dir=tmp_path / "out",
    )
    model = BACKBONES.build("tiny_fp", **result.backbone_kwargs)
    load_pretrained(model, result.checkpoint)
    assert get_precision(model) == (32, 32, 32)
    assert result.val_accuracy > 0.5


# -- pretraining sources separate from the stream --------------------------------------------

SMALL_CORPUS = dict(synthetic_categories=4, synthetic_objects_per_category=2)


def test_synthetic_corpus_is_deterministic_and_balanced():
    from cycl_bench.data.synthetic import pretraining_corpus

    kwargs = dict(categories=3, objects_per_category=2, images_per_class=4, image_size=8)
    images, labels = pretraining_corpus(0, **kwargs)
    again, same_labels = pretraining_corpus(0, **kwargs)
    other, _ = pretraining_corpus(1, **kwargs)
    assert images.shape == (24, 3, 8, 8) and images.dtype == torch.uint8
    assert torch.equal(images, again) and labels == same_labels
    assert not torch.equal(images, other)
    assert sorted(labels) == [c for c in range(6) for _ in range(4)]


@pytest.fixture(scope="module")
def corpus_run(stream, tmp_path_factory):
    config = PretrainConfig(
        epochs=20, batch_size=32, lr=3e-3, synthetic_images_per_class=24, **SMALL_CORPUS
    )
    cache_dir = tmp_path_factory.mktemp("corpus-cache")
    result = pretrain(
        config,
        RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=cache_dir),
        stream=stream,
        seed=0,
        out_dir=tmp_path_factory.mktemp("corpus-out"),
    )
    return config, cache_dir, result


def test_a_binary_backbone_learns_the_synthetic_corpus_at_one_bit(corpus_run):
    _, _, result = corpus_run
    assert result.backbone_kwargs["num_classes"] == 8  # the corpus's classes, not the stream's
    assert result.val_accuracy > 3 / 8  # three times chance, held-out images, 1-bit


def test_a_corpus_backbone_is_reused_by_every_stream_of_its_image_size(corpus_run, tmp_path):
    config, cache_dir, first = corpus_run
    other_stream = prototype_stream(seed=1, train_per_class=30)
    assert other_stream.protocol_hash != prototype_stream().protocol_hash
    again = pretrain(
        config,
        RunSpec.of("tiny_bnn", other_stream.image_shape, cache_dir=cache_dir),
        stream=other_stream,
        seed=0,
        out_dir=tmp_path,
    )
    assert again.from_cache and again.checkpoint == first.checkpoint


def write_image_folder(root, classes: int = 3, per_class: int = 6) -> None:
    """`root/<class>/*.png`: each class a colour of its own plus noise."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        colour = torch.rand(3, 1, 1, generator=generator)
        for index in range(per_class):
            pixels = (colour + 0.1 * torch.randn(3, 12, 12, generator=generator)).clamp(0, 1)
            array = (pixels.permute(1, 2, 0) * 255).to(torch.uint8).numpy()
            Image.fromarray(array).save(folder / f"{index}.png")


@pytest.mark.parametrize("layout", ["imagenet", "flat"])
def test_an_image_folder_is_a_pretraining_source(stream, tmp_path, layout):
    root = tmp_path / "images"
    if layout == "imagenet":  # PATH/train/<class>/*, PATH/val/<class>/*
        write_image_folder(root / "train")
        write_image_folder(root / "val", per_class=2)
    else:  # PATH/<class>/*, a tenth held out
        write_image_folder(root)
    result = pretrain(
        PretrainConfig(data=f"folder:{root}", epochs=1, batch_size=8),
        RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=tmp_path / "cache"),
        stream=stream,
        seed=0,
        out_dir=tmp_path / "out",
    )
    assert result.backbone_kwargs["num_classes"] == 3
    record = json.loads((result.checkpoint.parent / "pretrain.json").read_text())
    assert record["key_inputs"]["data"]["path"] == str(root.resolve())
    assert f"image folder {root}" in record["data"]


def test_a_missing_pretraining_folder_is_a_user_error(stream, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        pretrain(
            PretrainConfig(data=f"folder:{tmp_path / 'nowhere'}"),
            RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=tmp_path / "cache"),
            stream=stream,
            seed=0,
            out_dir=tmp_path / "out",
        )


def test_a_cache_entry_replaces_what_held_its_name_without_deleting_it(tmp_path):
    """A folder under an entry's name that is not a complete entry (a crash, or a user's files
    in a `--cache-dir`) is moved aside, never deleted."""
    from cycl_bench.pretrain.cache import commit_entry, entry_dir, staging_dir

    folder = entry_dir(tmp_path, "tiny_bnn", "0123456789abcdef")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    staging = staging_dir(folder)
    (staging / "backbone.pt").write_bytes(b"weights")
    commit_entry(staging, folder, "0123456789abcdef")
    assert (folder / "backbone.pt").read_bytes() == b"weights"
    (aside,) = tmp_path.glob(".tiny_bnn-0123456789abcdef.aside-*")
    assert (aside / "notes.txt").read_text() == "mine"


class _StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_a_resumed_fit_continues_the_schedule_and_the_cost(tmp_path):
    """A fit stopped after its first epoch and resumed from Lightning's checkpoint applies the
    bits an uninterrupted fit applies, step for step, and counts the same BitOPs."""
    config = PretrainConfig(epochs=2, batch_size=16, cycles=2)
    data = TensorDataset(torch.randn(64, *IMAGE_SHAPE), torch.arange(64) % 4)

    def fit(extra_callbacks=(), ckpt_path=None, checkpoints=None):
        torch.manual_seed(0)
        backbone = BACKBONES.build("tiny_bnn", num_classes=4, image_size=16)
        module = BackboneClassifier(backbone, num_classes=4, lr=1e-3, weight_decay=1e-5)
        cyclic = CyclicPrecision.from_config(config, input_shape=IMAGE_SHAPE)
        callbacks = [cyclic, *extra_callbacks]
        if checkpoints is not None:
            callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=checkpoints, save_last=True))
        trainer = pl.Trainer(
            max_epochs=2,
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=checkpoints is not None,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, DataLoader(data, batch_size=16), ckpt_path=ckpt_path)
        return cyclic.record()

    whole = fit()
    stopped = fit([_StopAfterFirstEpoch()], checkpoints=tmp_path)
    assert stopped["steps"] == 4 < whole["steps"] == 8
    resumed = fit(ckpt_path=tmp_path / "last.ckpt")
    assert resumed["applied_bits"] == whole["applied_bits"]
    for key in ("train_bitops", "fp32_bitops", "cpt_convention_bitops", "samples", "steps"):
        assert resumed[key] == whole[key], key


def pretrain_on_folder(stream, tmp_path, root):
    return pretrain(
        PretrainConfig(data=f"folder:{root}", epochs=1, batch_size=8),
        RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=tmp_path / "cache"),
        stream=stream,
        seed=0,
        out_dir=tmp_path / "out",
    )


def test_a_bad_image_in_a_pretraining_folder_is_named_before_training(stream, tmp_path):
    """A 10000 x 10000 PNG (300 MB decoded, a few hundred kB on disk) is refused from its header
    when the folder is read, before any training, with the file's name."""
    from PIL import Image

    root = tmp_path / "images"
    write_image_folder(root)
    Image.new("L", (10_000, 10_000)).save(root / "class1" / "huge.png")
    with pytest.raises(UserError, match=r"image .*class1/huge.png is 10000 x 10000 pixels"):
        pretrain_on_folder(stream, tmp_path, root)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))


def test_a_truncated_image_in_a_pretraining_folder_is_named(stream, tmp_path):
    root = tmp_path / "images"
    write_image_folder(root)
    broken = root / "class2" / "3.png"
    broken.write_bytes(broken.read_bytes()[:60])  # the header survives, the pixels do not
    with pytest.raises(UserError, match=r"cannot read image .*class2/3.png"):
        pretrain_on_folder(stream, tmp_path, root)


def test_a_pretraining_folder_reads_16_bit_images_scaled(stream, tmp_path):
    """The folder is read with the streams' loader: mid-grey 32768 of 65535 reads as 128, not as
    the 255 Pillow's own RGB conversion gives (32768 * 255 / 65535 = 127.5)."""
    import numpy as np
    from PIL import Image

    from cycl_bench.pretrain.data import image_folder

    for label in ("dark", "grey"):
        (tmp_path / label).mkdir()
        value = 0 if label == "dark" else 32768
        Image.fromarray(np.full((6, 6), value, np.uint16)).save(tmp_path / label / "16.png")
    data = image_folder(tmp_path, stream, seed=0)
    pixels = [x for dataset in (data.train, data.val) for x, y in dataset if y == 1]
    # ImageNet normalisation, undone by hand: mean 0.485/0.456/0.406, std 0.229/0.224/0.225
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert pixels and all(
        torch.allclose(x * std + mean, torch.full_like(x, 128 / 255), atol=1e-5) for x in pixels
    )
