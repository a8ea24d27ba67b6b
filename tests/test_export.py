"""Saved models and their export: a tiny_bnn trained briefly on a small synthetic CORe50 NC
stream, saved into a run folder laid out as the runner lays it out, reloaded, exported to QONNX
and ONNX through the command line, and the exported graphs run by qonnx's executor and
onnxruntime directly against the PyTorch model."""

import hashlib

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.change_batchsize import ChangeBatchSize
from qonnx.util.cleanup import cleanup_model
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from cycl_bench import config as configs
from cycl_bench import run_folder, runner
from cycl_bench.cli import main
from cycl_bench.errors import UserError
from cycl_bench.export import load_model, model_path, save_model
from cycl_bench.export.check import AGREEMENT_THRESHOLD, compare_predictions
from cycl_bench.export.deployed import (
    OnnxBinaryConv2d,
    QonnxBinaryConv2d,
    with_deployed_binary_layers,
)
from cycl_bench.export.formats import export_model, onnxruntime_predictor
from cycl_bench.export.size import deployed_size
from cycl_bench.quant.precision import deployed_tensors, model_size_bytes, set_precision
from cycl_bench.registry import BACKBONES
from cycl_bench.spec import RunSpec

SMALL = [
    "benchmark.options.synthetic.images_per_object=2",
    "benchmark.options.synthetic.test_images_per_object=1",
    "benchmark.options.synthetic.image_size=16",
]
ENTRY, SEED = "naive", 0


def train_briefly(model, stream, steps: int = 40):
    """Adam on the stream's training data: enough for non-trivial BatchNorm statistics,
    thresholds and head rows (what decides the signs an export must reproduce)."""
    torch.manual_seed(0)
    data = ConcatDataset([experience.dataset for experience in stream.train_stream])
    loader = DataLoader(data, batch_size=32, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    done = 0
    while done < steps:
        for x, y, *_ in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return model.eval()


def stream_test_images(stream) -> tuple[torch.Tensor, torch.Tensor]:
    items = [(x, y) for view in stream.test_views for x, y, *_ in view]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run folder made by the suite's own config code, with one saved model."""
    config = configs.resolve(
        "core50_nc",
        overrides=SMALL,
        fast=True,
        data="synthetic",
        seeds=[SEED],
        wandb="disabled",
    )
    run_dir = run_folder.start(config, tmp_path_factory.mktemp("runs"))
    stream = runner.build_stream(config)
    kwargs = RunSpec.from_config(config, stream.image_shape).kwargs_for(stream.num_classes)
    torch.manual_seed(SEED)
    model = train_briefly(BACKBONES.build(config.backbone.name, **kwargs), stream)
    path = model_path(run_dir, ENTRY, SEED)
    digest = save_model(
        model,
        path,
        backbone=config.backbone.name,
        backbone_kwargs=kwargs,
        deployed_bits=config.pretrain.eval_bits,
        info={"strategy_entry": ENTRY, "seed": SEED, "protocol_hash": stream.protocol_hash},
    )
    return {"run_dir": run_dir, "path": path, "digest": digest, "model": model, "stream": stream}


def export_cli(saved_run, out, format: str, *extra: str) -> int:
    run_dir = saved_run["run_dir"]
    args = ["export", str(run_dir), "--entry", ENTRY, "--seed", str(SEED), "--format", format]
    return main([*args, "--out", str(out), *extra])


def agreement(reference: torch.Tensor, exported: np.ndarray) -> float:
    return float((reference.argmax(1).numpy() == exported.argmax(1)).mean())


# -- saved models --------------------------------------------------------------------------


def test_a_saved_model_loads_with_plain_torch_load_and_rebuilds_with_the_same_logits(saved_run):
    payload = torch.load(saved_run["path"], weights_only=True)
    assert payload["backbone"] == "tiny_bnn" and payload["deployed_bits"] == 1
    model, saved = load_model(saved_run["path"])
    assert saved.input_shape == (3, 16, 16) and saved.num_classes == 50
    assert saved.info["strategy_entry"] == ENTRY
    images, _ = stream_test_images(saved_run["stream"])
    with torch.no_grad():
        assert torch.equal(model(images), saved_run["model"](images))


def test_save_model_returns_the_sha256_of_the_file_and_leaves_no_temporary_file(saved_run):
    path = saved_run["path"]
    assert saved_run["digest"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{ENTRY}-seed{SEED}.pt"]


def test_load_model_refuses_a_file_that_is_not_a_saved_model(tmp_path):
    other = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(UserError, match="not a cycl_bench saved model"):
        load_model(other)
    with pytest.raises(UserError, match="no saved model at"):
        load_model(tmp_path / "missing.pt")


def test_a_float_backbone_saves_and_loads_at_32_bits(tmp_path):
    torch.manual_seed(0)
    model = BACKBONES.build("tiny_fp", num_classes=4, image_size=16).eval()
    kwargs = {"num_classes": 4, "in_channels": 3, "image_size": 16}
    save_model(
        model, tmp_path / "fp.pt", backbone="tiny_fp", backbone_kwargs=kwargs, deployed_bits=32
    )
    loaded, saved = load_model(tmp_path / "fp.pt")
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert saved.deployed_bits == 32


# -- the deployed network ------------------------------------------------------------------


def test_the_deployed_copies_compute_what_the_model_computes(saved_run):
    model = saved_run["model"]
    images, _ = stream_test_images(saved_run["stream"])
    with torch.no_grad():
        reference = model(images)
        for_qonnx = with_deployed_binary_layers(model, QonnxBinaryConv2d)(images)
        for_onnx = with_deployed_binary_layers(model, OnnxBinaryConv2d)(images)
        again = model(images)
    assert torch.equal(for_qonnx, reference)
    assert torch.equal(for_onnx, reference)
    assert torch.equal(again, reference)  # the model itself is untouched


def test_a_deployment_that_does_not_compute_at_one_bit_is_refused(tmp_path):
    model = BACKBONES.build("tiny_bnn", num_classes=5, image_size=16, precision_mode="cpt")
    set_precision(model, weight_bits=4, act_bits=4)
    with pytest.raises(UserError, match="binary deployments only"):
        export_model(model.eval(), tmp_path / "model.onnx", (3, 16, 16), "onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_deployed_size_is_the_hand_counted_one():
    """tiny_bnn at width 0.25 (stem 8, units 8 s2, 16, 16 s2, 32 channels), 3 classes.

    binary 3x3 weights: 8*8*9 + 16*8*9 + 16*16*9 + 32*16*9 = 8640 -> 1080 bytes packed
    8-bit weights: stem 8*3*9 + projections 16*8 + 32*16 + head 3*32 = 952 -> 952 bytes
    their per-channel scales (Int8WeightPerChannelFloat): 8 + 16 + 32 + 3 = 59 float32
    parameters: 4 input-quantizer scales (stem, two projections, head), BatchNorm affine
    2*(8+8+16+16+16+32+32) = 256, thresholds 8+8+16+16 = 48, binary output scales
    8+16+16+32 = 72 -> 380 float32
    BatchNorm running statistics 2*128 = 256 float32
    float32 in all: 59 + 380 + 256 = 695 -> 2780 bytes
    """
    model = BACKBONES.build("tiny_bnn", num_classes=3, width=0.25, image_size=16)
    size = deployed_size(model)
    assert size.packed_bytes == 1080 + 952 + 2780 == model_size_bytes(model)
    assert size.fp32_bytes == (8640 + 952 + 695) * 4
    assert size.numbers_by_bits == {1: 8640, 8: 952, 32: 695}
    assert (size.binary_numbers, size.higher_precision_numbers) == (8640, 952 + 695)
    assert size.bytes_by_kind == {
        "binary weights": 1080,
        "8-bit weights": 952,
        "weight scales": 59 * 4,
        "parameters": 380 * 4,
        "running statistics": 256 * 4,
    }


def test_every_stored_tensor_is_counted_once():
    """Each parameter and BatchNorm buffer appears in exactly one stored tensor; nothing else
    but the derived 8-bit weight scales is added."""
    model = BACKBONES.build("tiny_bnn", num_classes=3, width=0.25, image_size=16)
    stored = deployed_tensors(model)
    names = [tensor.name for tensor in stored]
    assert len(names) == len(set(names))
    parameters = {name for name, _ in model.named_parameters()}
    statistics = {
        f"{name}.running statistics"
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
    }
    scales = {
        "stem.conv.weight scales",
        "body.1.shortcut.projection.0.weight scales",
        "body.3.shortcut.projection.0.weight scales",
        "classifier.weight scales",
    }
    assert set(names) == parameters | statistics | scales


# -- export through the command line -------------------------------------------------------


def test_qonnx_export_holds_binary_layers_as_bipolar_quant_and_agrees_with_pytorch(
    saved_run, tmp_path, capsys
):
    out = tmp_path / "tiny.qonnx.onnx"
    assert export_cli(saved_run, out, "qonnx") == 0
    printed = capsys.readouterr().out
    assert "agreement" in printed and "deployed size" in printed

    exported = onnx.load(out)
    onnx.checker.check_model(exported)
    operations = [node.op_type for node in exported.graph.node]
    assert operations.count("BipolarQuant") == 8  # weights and inputs of 4 binary convolutions
    assert operations.count("Quant") == 8  # stem, 2 projections, head: weights and inputs

    images, _ = stream_test_images(saved_run["stream"])
    graph = cleanup_model(ModelWrapper(exported).transform(ChangeBatchSize(len(images))))
    outputs = execute_onnx(graph, {graph.graph.input[0].name: images.numpy()})
    logits = outputs[graph.graph.output[0].name]
    with torch.no_grad():
        reference = saved_run["model"](images)
    assert agreement(reference, logits) >= AGREEMENT_THRESHOLD
    np.testing.assert_allclose(logits, reference.numpy(), rtol=0, atol=1e-4)


def test_onnx_export_runs_in_onnxruntime_and_agrees_with_pytorch(saved_run, tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    assert export_cli(saved_run, out, "onnx", "--limit", "60") == 0
    assert "checked on 60 test images" in capsys.readouterr().out

    onnx.checker.check_model(onnx.load(out))
    images, _ = stream_test_images(saved_run["stream"])
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    with torch.no_grad():
        reference = saved_run["model"](images)
    assert agreement(reference, logits) >= AGREEMENT_THRESHOLD
    np.testing.assert_allclose(logits, reference.numpy(), rtol=0, atol=1e-4)


def test_the_model_a_fast_run_saved_exports_and_agrees_with_pytorch(tmp_path, capsys):
    """End to end: `run --fast` (cyclic pretraining, then naive) saves the model; `export`
    finds it by entry and seed, and its ONNX graph predicts what PyTorch predicts (exit 0 means
    at least 99.5% agreement on the whole test set)."""
    short = [
        "strategy.*.first_epochs=1",
        "strategy.*.epochs=1",
        "strategy.*.min_steps=0",
        "pretrain.epochs=1",
        "pretrain.synthetic_categories=4",
        "pretrain.synthetic_images_per_class=4",
    ]
    runs = tmp_path / "runs"
    run = ["run", "core50_nc", "--data", "synthetic", "--fast", "--strategy", "naive"]
    assert (
        main([*run, "--seeds", "0", "--wandb", "disabled", "--out", str(runs), *SMALL, *short]) == 0
    )
    (run_dir,) = (runs / "core50_nc").iterdir()
    out = tmp_path / "naive.onnx"
    capsys.readouterr()
    export = ["export", str(run_dir), "--entry", "naive", "--seed", "0", "--format", "onnx"]
    assert main([*export, "--out", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out)))
    printed = capsys.readouterr().out
    # every test image of the stream: 50 objects x 3 test sessions x 1 image
    assert "checked on 150 test images" in printed and "agreement" in printed


def test_onnx_export_stores_binary_weights_as_int8_plus_minus_one(saved_run, tmp_path):
    out = export_model(saved_run["model"], tmp_path / "tiny.onnx", (3, 16, 16), "onnx")
    exported = onnx.load(out)
    binary = []
    for initializer in exported.graph.initializer:
        values = onnx.numpy_helper.to_array(initializer)
        if values.dtype == np.int8 and values.ndim == 4 and set(np.unique(values)) == {-1, 1}:
            binary.append(values.shape)
    assert binary == [(32, 32, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3)]
    operations = {node.op_type for node in exported.graph.node}
    assert {"Where", "Less", "DequantizeLinear", "QuantizeLinear"} <= operations


def test_a_graph_that_computes_something_else_fails_the_agreement_check(saved_run, tmp_path):
    torch.manual_seed(1)
    other = BACKBONES.build("tiny_bnn", num_classes=50, image_size=16).eval()  # untrained
    path = export_model(other, tmp_path / "other.onnx", (3, 16, 16), "onnx")
    images, labels = stream_test_images(saved_run["stream"])
    result = compare_predictions(
        saved_run["model"], onnxruntime_predictor(path), [(images, labels)]
    )
    assert not result.passed
    assert result.agreement < AGREEMENT_THRESHOLD


# -- what the user gets wrong --------------------------------------------------------------


@pytest.fixture(scope="module")
def run_without_models(tmp_path_factory):
    config = configs.resolve("core50_nc", overrides=SMALL, fast=True, data="synthetic")
    return run_folder.start(config, tmp_path_factory.mktemp("old_runs"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--entry": "cwr_stra"}, "strategy entry 'cwr_stra' is not in this run"),
        ({"--seed": "7"}, "seed 7 is not a seed of this run"),
        ({"--format": "onx"}, "unknown format 'onx' (did you mean 'onnx'?)"),
        ({"--out": "{tmp}/a_file/model.onnx"}, "a_file is a file; give a folder"),
        ({"--limit": "0"}, "--limit: 0 is out of range; give an integer from 1"),
        ({"RUN_DIR": "{old_run}"}, "has no saved models"),
        ({"RUN_DIR": "{tmp}"}, "is not a run folder"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(
    saved_run, run_without_models, tmp_path, capsys, change, message
):
    (tmp_path / "a_file").write_text("not a folder")
    options = {
        "RUN_DIR": str(saved_run["run_dir"]),
        "--entry": ENTRY,
        "--seed": str(SEED),
        "--format": "onnx",
        "--out": str(tmp_path / "model.onnx"),
    }
    for key, value in change.items():
        options[key] = value.format(tmp=tmp_path, old_run=run_without_models)
    args = ["export", options.pop("RUN_DIR")]
    for key, value in options.items():
        args += [key, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize(
    "target", ["saved model", "results/cwr_star.json", "config.yaml", "plots/curves.png"]
)
def test_an_out_that_is_a_file_of_the_run_is_refused_and_left_as_it_was(saved_run, target, capsys):
    run_dir = saved_run["run_dir"]
    if target == "saved model":
        out = saved_run["path"]
    else:
        out = run_dir / target
        if not out.exists():  # a results file, a plot: what a finished run holds
            out.parent.mkdir(exist_ok=True)
            out.write_bytes(b"the user's file")
    before = out.read_bytes()
    assert export_cli(saved_run, out, "onnx") == 2
    err = capsys.readouterr().err
    assert f"would overwrite the run folder {run_dir.absolute()}" in err
    assert len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before


def test_an_out_among_the_run_models_is_refused(saved_run, capsys):
    run_dir = saved_run["run_dir"]
    assert export_cli(saved_run, run_dir / "models" / "new.onnx", "onnx") == 2
    assert "would overwrite the run folder" in capsys.readouterr().err
    assert not (run_dir / "models" / "new.onnx").exists()


def test_a_model_that_is_not_the_one_its_results_recorded_is_refused(saved_run, tmp_path, capsys):
    from test_results import make_results

    from cycl_bench.evaluation.results import write_results

    run_dir, path = saved_run["run_dir"], saved_run["path"]
    results = make_results()  # seeds 0 and 1
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()  # the file's, computed here
    results_file = run_folder.results_path(run_dir, ENTRY)
    try:
        for sha, code in ((recorded, 0), ("0" * 64, 2)):
            seeds = [s.model_copy(update={"model_sha256": sha}) for s in results.per_seed]
            write_results(results.model_copy(update={"per_seed": seeds}), results_file)
            out = tmp_path / f"{code}.onnx"
            assert export_cli(saved_run, out, "onnx", "--limit", "4") == code
        err = capsys.readouterr().err
        assert f"{path} is not the model {results_file} was measured with" in err
        assert not (tmp_path / "2.onnx").exists()
    finally:
        results_file.unlink()


def test_a_cell_that_has_not_finished_names_the_resume_command(saved_run, tmp_path, capsys):
    config = run_folder.load_run(saved_run["run_dir"])
    assert "cwr_star" in config.strategy
    args = ["export", str(saved_run["run_dir"]), "--entry", "cwr_star", "--seed", str(SEED)]
    assert main([*args, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "no saved model for cwr_star seed 0" in err and "--resume" in err


# -- a full-size backbone ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("format", ["qonnx", "onnx"])
def test_resnet18_bnn_exports_and_agrees_with_pytorch(format, tmp_path):
    torch.manual_seed(0)
    model = BACKBONES.build("resnet18_bnn", num_classes=10, image_size=32).eval()
    images = torch.randn(16, 3, 32, 32)
    path = export_model(model, tmp_path / f"resnet18.{format}", (3, 32, 32), format)
    onnx.checker.check_model(onnx.load(path))
    from cycl_bench.export.formats import FORMATS

    result = compare_predictions(
        model, FORMATS[format].predictor(path), [(images, torch.zeros(16, dtype=torch.long))]
    )
    assert result.passed, result
