"""The suite ranks the methods: the paper protocol on a small class-incremental stream of image
files (10 objects, 5 experiences x 2, chance 10%) read through the folder source, with a tiny
binary backbone pretrained on the synthetic corpus. Fixed seeds.

Every threshold leaves room below the values measured over five pretraining draws (seeds 0-4)
of the Brevitas-only layers. A change of float rounding, such as the fused binary path, is
itself a new draw (in the quickstart's pretraining the two paths' losses agree for 12 steps,
then part: training through signs amplifies the difference), so a threshold that one draw
barely passes tests the draw, not the methods. Each experience's test set is 18 images here
(one image: 5.6 points).

| pretraining seed | 0 | 1 | 2 | 3 | 4 |
|---|---|---|---|---|---|
| cwr_star mean A[k][k], k >= 1 | 0.58 | 0.42 | 0.63 | 0.49 | 0.56 |
| cwr_star min A[k][k], k >= 1 | 0.39 | 0.06 | 0.39 | 0.11 | 0.17 |
| cwr_star mean of the old experiences at the end | 0.32 | 0.29 | 0.28 | 0.25 | 0.40 |
| hq_cwr_star 16/8 mean A[k][k] | 0.58/0.57 | 0.42/0.43 | 0.63/0.63 | 0.49/0.49 | 0.54/0.54 |
| final cumulative | 0.50 | 0.37 | 0.42 | 0.40 | 0.48 |
| final cwr_star | 0.40 | 0.37 | 0.38 | 0.34 | 0.43 |
| final naive | 0.28 | 0.26 | 0.24 | 0.22 | 0.29 |
"""

import numpy as np
import pytest
import torch
from PIL import Image

from cycl_bench.continual.loop import build_model, run_strategy, seed_everything
from cycl_bench.data import synthetic
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.pretrain.run import pretrain
from cycl_bench.quant.gradquant import quantize_min_max
from cycl_bench.registry import BENCHMARKS
from cycl_bench.spec import RunSpec
from cycl_bench.strategies import build_strategy

# two objects from each of five categories: some classes differ in shape, some only in colour
OBJECTS = (0, 1, 5, 6, 10, 11, 15, 16, 20, 21)
BUDGET = {"first_epochs": 1, "epochs": 1, "min_steps": 20}
CHANCE = 1 / len(OBJECTS)


def write_objects(root, seed: int = 3) -> None:
    """`root/object<k>/*.png`: every session's images of the chosen objects."""
    generated = synthetic.core50_like(
        seed, images_per_object=4, test_images_per_object=4, image_size=32
    )
    sessions = [*generated.train.items(), ("test", generated.test)]
    for session, (images, objects) in sessions:
        for index, (image, obj) in enumerate(zip(images, objects, strict=True)):
            if obj in OBJECTS:
                folder = root / f"object{obj}"
                folder.mkdir(parents=True, exist_ok=True)
                pixels = image.permute(1, 2, 0).numpy()
                Image.fromarray(pixels).save(folder / f"{session}_{index}.png")


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("science") / "objects"
    write_objects(root)
    stream = BENCHMARKS.build("core50_nc", data=f"folder:{root}", seed=0, split="2")
    config = PretrainConfig(
        epochs=15,
        batch_size=64,
        lr=3e-3,
        synthetic_categories=10,
        synthetic_objects_per_category=3,
        synthetic_images_per_class=20,
    )
    spec = RunSpec.of("tiny_bnn", stream.image_shape, cache_dir=root.parent / "cache")
    pretrained = pretrain(config, spec, stream=stream, seed=0, out_dir=root.parent / "pretrain")
    return stream, spec, pretrained.checkpoint


@pytest.fixture(scope="module")
def results(setting):
    stream, spec, checkpoint = setting
    runs = {
        "cwr_star": ("cwr_star", {}),
        "hq_cwr_star_16": ("hq_cwr_star", {"grad_bits": 16}),
        "hq_cwr_star_8": ("hq_cwr_star", {"grad_bits": 8}),
        "naive": ("naive", {}),
        "cumulative": ("cumulative", {}),
    }
    return {
        entry: run_strategy(
            stream,
            spec,
            strategy=name,
            params={**BUDGET, **params},
            checkpoint=checkpoint,
            seed=0,
        )
        for entry, (name, params) in runs.items()
    }


@pytest.mark.parametrize("entry", ["cwr_star", "hq_cwr_star_16", "hq_cwr_star_8"])
def test_the_cwr_family_learns_the_new_experiences(results, entry):
    """On average over the new experiences; the smallest one is a matter of the draw (0.06 to
    0.39 over five pretraining seeds: one or seven images of 18)."""
    matrix = results[entry].accuracy_matrix
    just_trained = [matrix[k][k] for k in range(1, len(matrix))]
    assert np.mean(just_trained) >= 3.5 * CHANCE  # measured 0.42 to 0.63


@pytest.mark.parametrize("entry", ["cwr_star", "hq_cwr_star_16", "hq_cwr_star_8"])
def test_the_cwr_family_keeps_the_old_experiences(results, entry):
    last = results[entry].accuracy_matrix[-1]
    assert np.mean(last[:-1]) >= 2 * CHANCE  # measured 0.25 to 0.40
    naive_last = results["naive"].accuracy_matrix[-1]
    assert np.mean(naive_last[:-1]) < np.mean(last[:-1])  # naive keeps less of them


def test_cumulative_matches_or_beats_cwr_star_which_beats_naive(results):
    final = {entry: result.final_accuracy for entry, result in results.items()}
    # five pretraining draws under the papers' SGD protocol: cumulative 0.00 to 0.10 above
    # cwr_star (one epoch an experience is little for cumulative), cwr_star 0.11 to 0.14 above
    # naive (naive at lr 0.001 keeps a little of the last experiences)
    assert final["cumulative"] >= final["cwr_star"]
    assert final["cwr_star"] >= final["naive"] + 0.05


def trained_head(setting, grad_bits: int):
    stream, spec, checkpoint = setting
    seed_everything(0)
    model = build_model(spec, stream.num_classes, checkpoint)
    params = {**BUDGET, "grad_bits": grad_bits}
    built = build_strategy("hq_cwr_star", model=model, params=params)
    for experience in stream.train_stream:
        built.train(experience)
    plugin = next(p for p in built.template.plugins if hasattr(p, "scales"))
    return model.classifier.weight.detach().clone(), plugin.scales


def test_eight_sixteen_and_float_heads_differ_as_documented(setting):
    """The stored weights sit on their own min/max grids (the authors' quantizer); the 16-bit
    head stays close to the float head (the 8-bit forward arithmetic makes most of the gap),
    the 8-bit storage moves it further."""
    floating, _ = trained_head(setting, 32)
    sixteen, _ = trained_head(setting, 16)
    eight, _ = trained_head(setting, 8)

    def distance(head):
        return float((head - floating).norm() / floating.norm())

    assert torch.equal(sixteen, quantize_min_max(sixteen, 16))
    assert torch.equal(eight, quantize_min_max(eight, 8))
    assert len(torch.unique(eight)) <= 2**8 < len(torch.unique(sixteen))
    assert 0 < distance(sixteen) < 0.1
    assert distance(eight) > distance(sixteen)


@pytest.mark.slow
def test_the_quickstart_meets_its_targets(tmp_path):
    """`run core50_nc --data synthetic --fast`, one seed: the targets of the quickstart."""
    from cycl_bench import config as configs
    from cycl_bench import run_folder, runner

    config = configs.resolve(
        "core50_nc", fast=True, overrides=["seeds=[0]"], data="synthetic", wandb="disabled"
    )
    plan = runner.prepare(config, cache_dir=tmp_path / "cache")
    run_dir = run_folder.start(plan.config, tmp_path / "runs")
    outcome = runner.run(plan, run_dir, echo=lambda line: None)
    final = {
        result.config["strategy_entry"]: result.summary["final_accuracy"].mean
        for result in outcome.results
    }
    (cwr,) = [r for r in outcome.results if r.config["strategy_entry"] == "cwr_star"]
    matrix = cwr.per_seed[0].accuracy_matrix
    assert final["cumulative"] >= 0.5
    assert final["cwr_star"] >= max(0.25, final["naive"] + 0.15)
    assert final["replay"] >= final["naive"] + 0.05
    assert abs(final["hq_cwr_star"] - final["cwr_star"]) <= 0.01
    assert np.mean([matrix[k][k] for k in range(1, len(matrix))]) >= 0.5
