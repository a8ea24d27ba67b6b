"""The CWR* head: the fixed-point head update, calibration, consolidation with rows on one
scale, and the float path against Avalanche's own CWRStar."""

import math
import random
from functools import partial

import pytest
import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.training import CWRStar
from avalanche.training.determinism.rng_manager import RNGManager
from torch import nn
from torch.utils.data import TensorDataset

from cycl_bench.continual.loop import accuracy_row, build_model
from cycl_bench.data.assemble import make_stream
from cycl_bench.quant.gradquant import quantize_fixed_point, quantize_min_max
from cycl_bench.spec import RunSpec
from cycl_bench.strategies import build_strategy
from cycl_bench.strategies.hq_cwr import HeadScales, hybrid_head_update, unit_step
from cycl_bench.strategies.protocol import (
    BatchNormRecalibration,
    ExperienceProtocol,
    TrainingProtocol,
    quiet_evaluator,
)

SCALES = HeadScales(features=2.0**-6, weights=2.0**-7, stored=2.0**-15)
# the fixed power-of-two storage grid (a variant); the paper's per-tensor min/max grid below
power_of_two_update = partial(hybrid_head_update, storage_grid="power_of_two")


def stored(weight: torch.Tensor, step: float) -> torch.Tensor:
    return quantize_fixed_point(weight, round(1 - math.log2(step)), "nearest", step)


def on_grid(values: torch.Tensor, step: float) -> bool:
    levels = values / step
    return bool(torch.equal(levels, torch.round(levels)))


def head_problem(seed: int = 0, classes: int = 5, dim: int = 16, batch: int = 32):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, dim, generator=generator) * 0.3
    features = torch.rand(batch, dim, generator=generator) * 2 - 1
    targets = torch.randint(0, classes, (batch,), generator=generator)
    return weight, features, targets


def float_sgd_step(weight, features, targets, lr):
    weight = weight.clone().requires_grad_(True)
    nn.functional.cross_entropy(features @ weight.T, targets).backward()
    return (weight - lr * weight.grad).detach()


def test_update_lands_on_the_stored_grid():
    weight, features, targets = head_problem()
    for bits, rounding in ((16, "stochastic"), (8, "nearest"), (12, "stochastic")):
        scales = HeadScales(SCALES.features, SCALES.weights, stored=2.0 ** -(bits - 1))
        weight = stored(weight, scales.stored)
        new = power_of_two_update(
            weight,
            features,
            targets,
            lr=0.1,
            scales=scales,
            head_bits=8,
            grad_bits=bits,
            rounding=rounding,
        )
        assert on_grid(new, scales.stored)
        assert not torch.equal(new, weight)


def test_sixteen_bit_update_follows_the_float_sgd_step():
    weight, features, targets = head_problem()
    expected = float_sgd_step(weight, features, targets, lr=0.5)
    new = power_of_two_update(
        weight, features, targets, lr=0.5, scales=SCALES, head_bits=8, grad_bits=16
    )
    change, error = (expected - weight).abs().mean(), (new - expected).abs().mean()
    assert error < 0.1 * change  # 8-bit forward arithmetic, same direction and size


def test_eight_bit_storage_loses_small_updates_with_nearest_rounding():
    weight, features, targets = head_problem()
    eight_bit = HeadScales(SCALES.features, SCALES.weights, stored=SCALES.weights)
    weight = stored(weight, eight_bit.stored)
    kwargs = dict(lr=1e-3, head_bits=8, rounding="nearest")
    stuck = power_of_two_update(weight, features, targets, scales=eight_bit, grad_bits=8, **kwargs)
    moved = power_of_two_update(weight, features, targets, scales=SCALES, grad_bits=16, **kwargs)
    assert torch.equal(stuck, weight)
    assert not torch.equal(moved, weight)


def test_stochastic_rounding_is_unbiased_where_nearest_is_stuck():
    weight, features, targets = head_problem()
    eight_bit = HeadScales(SCALES.features, SCALES.weights, stored=SCALES.weights)
    weight = stored(weight, eight_bit.stored)
    kwargs = dict(lr=0.03, head_bits=8)
    torch.manual_seed(0)
    stochastic = partial(power_of_two_update, rounding="stochastic")
    draws = torch.stack(
        [
            stochastic(weight, features, targets, scales=eight_bit, grad_bits=8, **kwargs)
            for _ in range(2000)
        ]
    )
    nearest = power_of_two_update(
        weight, features, targets, scales=eight_bit, grad_bits=8, rounding="nearest", **kwargs
    )
    exact = power_of_two_update(
        weight, features, targets, scales=SCALES, grad_bits=16, rounding="nearest", **kwargs
    )
    expected_change = (exact - weight).abs().mean()
    assert (nearest - exact).abs().mean() > 0.5 * expected_change
    assert (draws.mean(0) - exact).abs().mean() < 0.2 * expected_change


def test_softmax_and_error_grids_cover_minus_one_to_one():
    """An 8-bit signed grid over [-1, 1]: levels -127..127 of 1/128 each, counted on a ramp."""
    ramp = torch.linspace(-1.0, 1.0, 100_001, dtype=torch.float64)
    levels = torch.unique(quantize_fixed_point(ramp, 8, "nearest", unit_step(8)))
    assert len(levels) == 255  # 127 negative, zero, 127 positive
    assert levels[levels > 0].min() == 1 / 128  # the finest probability the head resolves
    assert levels.max() == 127 / 128 and levels.min() == -127 / 128  # 1 - 1/128 < 1
    assert quantize_fixed_point(torch.tensor([0.3]), 8, "nearest", unit_step(8)) == 38 / 128


def test_min_max_grid_spans_the_tensors_own_range_in_two_to_the_bits_minus_one_steps():
    # hand count: [-1, 2] at 2 bits has the 4 levels -1, 0, 1, 2 (step 3 / 3 = 1)
    values = torch.tensor([-1.0, -0.6, 0.4, 0.6, 1.49, 2.0])
    assert quantize_min_max(values, 2).tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0, 2.0]
    zeros = torch.zeros(3, 4)  # a CWR* head whose rows all start at zero stays as it is
    assert torch.equal(quantize_min_max(zeros, 8), zeros)
    ramp = torch.linspace(-0.5, 0.25, 10_001, dtype=torch.float64)
    assert len(torch.unique(quantize_min_max(ramp, 8))) == 256


def test_eight_bit_min_max_storage_drowns_small_updates_where_sixteen_bits_follow_them():
    weight, features, targets = head_problem()
    # updates of about 3e-4 against steps of (max - min) / (2^b - 1) over a range of about 1.6:
    # 6e-3 at 8 bits (the update is rounding, and the grid moving with the extremes), 2.4e-5 at
    # 16 bits
    kwargs = dict(lr=1e-2, head_bits=8, scales=SCALES)
    for bits, lost in ((8, True), (16, False)):
        start = quantize_min_max(weight, bits)
        new = hybrid_head_update(start, features, targets, grad_bits=bits, **kwargs)
        expected = float_sgd_step(start, features, targets, lr=1e-2)
        change, error = (expected - start).abs().mean(), (new - expected).abs().mean()
        if lost:  # most of the update rounded away
            assert error > 0.5 * change
        else:
            assert error < 0.1 * change


def test_sixteen_bit_update_with_momentum_follows_torch_sgd():
    """The experiment's SGD (momentum 0.9, weight decay 5e-4) applied in fixed point: three
    16-bit steps stay with torch.optim.SGD's three float steps."""
    weight, features, targets = head_problem()
    reference = weight.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([reference], lr=0.2, momentum=0.9, weight_decay=5e-4)
    ours, velocity = weight.clone(), torch.zeros_like(weight)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(features @ reference.T, targets).backward()
        optimizer.step()
        ours = hybrid_head_update(
            ours,
            features,
            targets,
            lr=0.2,
            scales=SCALES,
            head_bits=8,
            grad_bits=16,
            momentum=0.9,
            weight_decay=5e-4,
            velocity=velocity,
        )
    change = (reference.detach() - weight).abs().mean()
    assert (ours - reference.detach()).abs().mean() < 0.1 * change
    assert velocity.abs().sum() > 0  # the buffer carried the momentum


# -- on a tiny class-incremental stream ------------------------------------------------------


def tiny_stream(seed: int = 0, classes: int = 6, per_class: int = 40, size: int = 16):
    """Avalanche's nc_benchmark over random class prototypes plus noise, as a cycl_bench Stream."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, 3, size, size, generator=generator)

    def split(count):
        targets = torch.arange(classes).repeat_interleave(count)
        images = prototypes[targets] + 0.8 * torch.randn(
            len(targets), 3, size, size, generator=generator
        )
        dataset = TensorDataset(images, targets)
        dataset.targets = targets
        return dataset

    benchmark = nc_benchmark(
        split(per_class),
        split(per_class // 2),
        n_experiences=3,
        task_labels=False,
        seed=seed,
        fixed_class_order=list(range(classes)),
    )
    return make_stream(
        name="tiny_nc",
        scenario="nc",
        source="synthetic",
        benchmark=benchmark,
        protocol={"tiny": seed},
        num_classes=classes,
        image_shape=(3, size, size),
        train_deterministic=True,
    )


PROTOCOL = {"first_epochs": 2, "epochs": 2, "batch_size": 20, "lr": 0.05, "min_steps": 0}


def fresh_model(stream, seed=0):
    RNGManager.set_random_seeds(seed)
    random.seed(seed)
    return build_model(RunSpec.of("tiny_bnn", stream.image_shape), stream.num_classes)


def train_and_score(stream, strategy) -> tuple[list[list[float]], nn.Module]:
    matrix = []
    for experience in stream.train_stream:
        strategy.train(experience, eval_streams=[])
        matrix.append(accuracy_row(strategy.model, stream.test_views))
    return matrix, strategy.model


@pytest.fixture(scope="module")
def avalanche_cwr_star():
    """Avalanche's own CWRStar on the tiny stream, with the suite's protocol plugins."""
    stream = tiny_stream()
    model = fresh_model(stream)
    protocol = TrainingProtocol(first_optimizer="sgd", optimizer="sgd", **PROTOCOL)
    reference = CWRStar(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=protocol.first_lr),
        criterion=nn.CrossEntropyLoss(),
        cwr_layer_name="classifier",
        train_mb_size=protocol.batch_size,
        train_epochs=protocol.first_epochs,
        plugins=[ExperienceProtocol(protocol), BatchNormRecalibration()],
        evaluator=quiet_evaluator(),
    )
    matrix, model = train_and_score(stream, reference)
    return stream, matrix, model


def train_ours(stream, **params):
    model = fresh_model(stream)
    ours = build_strategy(
        "cwr_star", model=model, params={"latent_cache": False, **PROTOCOL, **params}
    )
    return train_and_score(stream, ours.template)


def test_float_head_without_rescaling_reproduces_avalanche_cwr_star(avalanche_cwr_star):
    stream, reference_matrix, reference_model = avalanche_cwr_star
    matrix, model = train_ours(stream, equal_row_norms=False)
    assert torch.allclose(torch.tensor(matrix), torch.tensor(reference_matrix), atol=1e-6)
    assert torch.allclose(model.classifier.weight, reference_model.classifier.weight, atol=1e-6)


def test_rows_are_avalanches_rescaled_to_the_first_experiences_mean_norm(avalanche_cwr_star):
    """On a class-incremental stream every experience learns its rows from zero on the same
    frozen backbone, so equalizing the norms changes the lengths of Avalanche's rows only."""
    stream, _, reference_model = avalanche_cwr_star
    _, model = train_ours(stream, equal_row_norms=True)
    reference = reference_model.classifier.weight.detach()
    first = stream.classes_per_experience[0]
    target_norm = reference[first].norm(dim=1).mean()
    expected = reference * (target_norm / reference.norm(dim=1, keepdim=True))
    assert torch.allclose(model.classifier.weight, expected, atol=1e-5)
    norms = model.classifier.weight.norm(dim=1)
    assert torch.allclose(norms, norms[0].expand_as(norms), rtol=1e-5)


def test_hybrid_head_at_32_bits_is_cwr_star(avalanche_cwr_star):
    """At 32 bits nothing is quantized: the hybrid strategy learns what Avalanche's own CWRStar
    learns on the same stream (our cwr_star is no reference here: it is built by the same
    code), every accuracy and every head row."""
    stream, reference_matrix, reference_model = avalanche_cwr_star
    model = fresh_model(stream)
    built = build_strategy(
        "hq_cwr_star", model=model, params={"grad_bits": 32, "latent_cache": False, **PROTOCOL}
    )
    matrix, hq = train_and_score(stream, built.template)
    assert torch.allclose(torch.tensor(matrix), torch.tensor(reference_matrix), atol=1e-6)
    reference = reference_model.classifier.weight
    assert torch.allclose(hq.classifier.weight, reference, atol=1e-6)
    assert bool((reference.abs().sum(dim=1) > 0).all())  # every class has learned a row


def test_consolidated_rows_are_stored_on_the_grad_bits_grid():
    stream = tiny_stream()
    model = fresh_model(stream)
    built = build_strategy(
        "hq_cwr_star",
        model=model,
        params={"grad_bits": 12, "storage_grid": "power_of_two", **PROTOCOL},
    )
    for experience in stream.train_stream:
        built.train(experience)
    plugin = next(p for p in built.template.plugins if hasattr(p, "scales"))
    seen = sorted(model.saved_weights)
    assert seen == list(range(stream.num_classes))
    assert on_grid(model.classifier.weight[seen].detach().double(), plugin.scales.stored)
    for step in (plugin.scales.features, plugin.scales.weights, plugin.scales.stored):
        assert step > 0 and float(torch.log2(torch.tensor(step))).is_integer()


def test_backbone_stays_frozen_after_the_first_experience():
    stream = tiny_stream()
    model = fresh_model(stream)
    built = build_strategy("hq_cwr_star", model=model, params={"grad_bits": 16, **PROTOCOL})
    built.train(stream.train_stream[0])
    backbone = {k: v.clone() for k, v in model.state_dict().items() if "classifier" not in k}
    head = model.classifier.weight.detach().clone()
    for experience in stream.train_stream[1:]:
        built.train(experience)
    after = model.state_dict()
    assert all(torch.equal(backbone[k], after[k]) for k in backbone)
    assert not torch.equal(head, model.classifier.weight)
