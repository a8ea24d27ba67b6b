"""The registered strategies: Avalanche's, plus the CWR* family.

Each factory builds a real `avalanche.training` strategy with the run's training protocol
(`ExperienceProtocol`) and a quiet evaluator, and returns it as a `ContinualStrategy`.
Whole-network strategies train with Adam. The CWR* family (`cwr_star`, `hq_cwr_star`) is
Avalanche's supervised template with one head plugin (`CWRStarHeadPlugin`): plain SGD for every
experience, as CWR*'s authors ran it, the whole network on the first experience and the head only
afterwards; `hq_cwr_star` differs from `cwr_star` only in its fixed-point head update.
"""

from __future__ import annotations

from avalanche.training import EWC, Cumulative, LwF, Naive, Replay
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.quant.gradquant import ROUNDING_MODES, check_grad_bits
from cycl_bench.registry import STRATEGIES
from cycl_bench.strategies.base import HEAD_LAYER, ContinualStrategy, HeadPrecision, head_layer
from cycl_bench.strategies.hq_cwr import CWRStarHeadPlugin
from cycl_bench.strategies.latent_cache import LatentCache, LatentCacheForward
from cycl_bench.strategies.protocol import (
    BatchNormRecalibration,
    ExperienceProtocol,
    TrainingProtocol,
    make_optimizer,
    quiet_evaluator,
)

WHOLE_NETWORK = TrainingProtocol(optimizer="adam")
# CWR* as its authors ran it: one plain SGD for every experience, so every head row is learned
# by the same rule (the hybrid head's); Adam on the first experience fits the backbone that is
# then frozen to its few classes (measured: cwr_star 35.6% instead of 49.8%, docs/strategies.md)
HEAD_ONLY = TrainingProtocol(first_optimizer="sgd", optimizer="sgd")
EVAL_BATCH_SIZE = 256


def _template_arguments(model, protocol: TrainingProtocol, device, plugins=()) -> dict:
    return {
        "model": model,
        "optimizer": make_optimizer(
            protocol.first_optimizer, model.parameters(), protocol.first_lr
        ),
        "criterion": nn.CrossEntropyLoss(),
        "train_mb_size": protocol.batch_size,
        "train_epochs": protocol.first_epochs,
        "eval_mb_size": EVAL_BATCH_SIZE,
        "device": device,
        "plugins": [ExperienceProtocol(protocol), BatchNormRecalibration(), *plugins],
        "evaluator": quiet_evaluator(),
        "eval_every": -1,
    }


def _number(name: str, value, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise UserError(f"{name}={value!r} must be a number >= {minimum:g}")
    return float(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name}={value!r} must be true or false")
    return value


# -- whole-network strategies ------------------------------------------------------------------


@STRATEGIES.register("naive")
def naive(*, model, device="cpu", deterministic_inputs=True, protocol=WHOLE_NETWORK):
    """Fine-tunes the whole network on each experience in turn (lower bound)."""
    template = Naive(**_template_arguments(model, protocol, device))
    return ContinualStrategy("naive", template, model, {})


@STRATEGIES.register("cumulative")
def cumulative(*, model, device="cpu", deterministic_inputs=True, protocol=WHOLE_NETWORK):
    """Trains on all data seen so far at every experience (upper bound)."""
    template = Cumulative(**_template_arguments(model, protocol, device))
    return ContinualStrategy("cumulative", template, model, {})


@STRATEGIES.register("ewc")
def ewc(
    *, model, device="cpu", deterministic_inputs=True, protocol=WHOLE_NETWORK, ewc_lambda=1000.0
):
    """Elastic Weight Consolidation: a quadratic penalty on weights that mattered before."""
    ewc_lambda = _number("ewc_lambda", ewc_lambda)
    template = EWC(
        ewc_lambda=ewc_lambda, mode="separate", **_template_arguments(model, protocol, device)
    )
    return ContinualStrategy("ewc", template, model, {}, extra_cost="importance_pass")


@STRATEGIES.register("replay")
def replay(*, model, device="cpu", deterministic_inputs=True, protocol=WHOLE_NETWORK, mem_size=500):
    """Experience replay from a class-balanced memory of past samples."""
    if isinstance(mem_size, bool) or not isinstance(mem_size, int) or mem_size < 1:
        raise UserError(f"mem_size={mem_size!r} must be a positive integer")
    template = Replay(mem_size=mem_size, **_template_arguments(model, protocol, device))
    return ContinualStrategy("replay", template, model, {})


@STRATEGIES.register("lwf")
def lwf(
    *,
    model,
    device="cpu",
    deterministic_inputs=True,
    protocol=WHOLE_NETWORK,
    alpha=1.0,
    temperature=2.0,
):
    """Learning without Forgetting: distillation from the previous model's outputs."""
    alpha = _number("alpha", alpha)
    temperature = _number("temperature", temperature, minimum=1e-6)
    template = LwF(
        alpha=alpha, temperature=temperature, **_template_arguments(model, protocol, device)
    )
    return ContinualStrategy("lwf", template, model, {}, extra_cost="teacher_forward")


# -- the CWR* family ---------------------------------------------------------------------------


class CWRStarFamily(LatentCacheForward, SupervisedTemplate):
    """Avalanche's supervised template with the CWR* head plugin; with a latent cache, head-only
    epochs run on cached features."""


def _latent_cache(enabled, deterministic_inputs, model, head, codec, device, batch_size):
    """Encoding at the training batch size keeps the peak memory of training unchanged."""
    if not (_flag("latent_cache", enabled) and deterministic_inputs):
        return None
    return LatentCache(model, head, codec, device=device, batch_size=batch_size)


def _cwr_family(
    name, model, device, deterministic_inputs, protocol, latent_cache, equal_row_norms, **head
) -> ContinualStrategy:
    layer = head_layer(model)
    plugin = CWRStarHeadPlugin(
        model,
        cwr_layer_name=HEAD_LAYER,
        lr=protocol.lr,
        equal_row_norms=_flag("equal_row_norms", equal_row_norms),
        device=device,
        **head,
    )
    cache = _latent_cache(
        latent_cache,
        deterministic_inputs,
        model,
        layer,
        plugin.feature_codec,
        device,
        protocol.batch_size,
    )
    plugins = [cache, plugin] if cache else [plugin]
    template = CWRStarFamily(**_template_arguments(model, protocol, device, plugins))
    template.latent_cache = cache
    head_precision = None
    if plugin.quantized:
        bits = head["head_bits"]
        head_precision = HeadPrecision(weight_bits=bits, act_bits=bits, grad_bits=plugin.grad_bits)
    return ContinualStrategy(
        name,
        template,
        model,
        {},
        head_name=HEAD_LAYER,
        head_precision=head_precision,
        latent_cache=cache,
        frozen_backbone=True,
        extra_cost="calibration_pass" if plugin.quantized else None,
    )


@STRATEGIES.register("cwr_star")
def cwr_star(
    *,
    model,
    device="cpu",
    deterministic_inputs=True,
    protocol=HEAD_ONLY,
    latent_cache=True,
    equal_row_norms=True,
):
    """CWR*: frozen backbone after the first experience, consolidated head rows on one scale."""
    return _cwr_family(
        "cwr_star", model, device, deterministic_inputs, protocol, latent_cache, equal_row_norms
    )


@STRATEGIES.register("hq_cwr_star")
def hq_cwr_star(
    *,
    model,
    device="cpu",
    deterministic_inputs=True,
    protocol=HEAD_ONLY,
    grad_bits=16,
    head_bits=8,
    rounding="stochastic",
    latent_cache=True,
    equal_row_norms=True,
):
    """Hybrid-quantized CWR*: 1-bit backbone, fixed-point head updates at grad_bits."""
    grad_bits = check_grad_bits(grad_bits)
    if isinstance(head_bits, bool) or not isinstance(head_bits, int) or not 2 <= head_bits <= 16:
        raise UserError(f"head_bits={head_bits!r} must be an integer from 2 to 16")
    if rounding not in ROUNDING_MODES:
        raise UserError(
            f"rounding={rounding!r} is not known: use one of {', '.join(ROUNDING_MODES)}"
        )
    return _cwr_family(
        "hq_cwr_star",
        model,
        device,
        deterministic_inputs,
        protocol,
        latent_cache,
        equal_row_norms,
        grad_bits=grad_bits,
        head_bits=head_bits,
        rounding=rounding,
    )
