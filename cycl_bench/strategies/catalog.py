"""The registered strategies: Avalanche's, plus the CWR* family.

Each factory builds a real `avalanche.training` strategy with the run's training protocol
(`ExperienceProtocol`) and a quiet evaluator, and returns it as a `ContinualStrategy`.
Whole-network strategies train with Adam. The CWR* family (`cwr_star`, `hq_cwr_star`) is
Avalanche's supervised template with one head plugin (`CWRStarHeadPlugin`): plain SGD for every
experience, as CWR*'s authors ran it, the whole network on the first experience and the head only
afterwards; `hq_cwr_star` differs from `cwr_star` only in its fixed-point head update.
"""

from __future__ import annotations

from typing import Literal

from avalanche.training import EWC, Cumulative, LwF, Naive, Replay
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field
from torch import nn

from cycl_bench.params import GradBits
from cycl_bench.quant.gradquant import ROUNDING_MODES
from cycl_bench.registry import STRATEGIES
from cycl_bench.strategies.base import (
    HEAD_LAYER,
    ContinualStrategy,
    HeadPrecision,
    ProtocolParams,
    head_layer,
)
from cycl_bench.strategies.hq_cwr import CWRStarHeadPlugin
from cycl_bench.strategies.latent_cache import LatentCache, LatentCacheForward
from cycl_bench.strategies.protocol import (
    OPTIMIZERS,
    BatchNormRecalibration,
    ExperienceProtocol,
    TrainingProtocol,
    make_optimizer,
    quiet_evaluator,
)

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


# -- whole-network strategies ------------------------------------------------------------------


class WholeNetworkParams(ProtocolParams):
    """Adam on every experience, the whole network training."""


class EwcParams(WholeNetworkParams):
    ewc_lambda: float = Field(1000.0, ge=0)
    """weight of the quadratic penalty"""


class ReplayParams(WholeNetworkParams):
    mem_size: int = Field(500, ge=1)
    """samples the class-balanced replay memory holds"""


class LwfParams(WholeNetworkParams):
    alpha: float = Field(1.0, ge=0)
    """weight of the distillation loss"""
    temperature: float = Field(2.0, ge=1e-6)
    """softmax temperature of the distillation"""


@STRATEGIES.register("naive", params=WholeNetworkParams)
def naive(*, model, params: WholeNetworkParams, device="cpu", deterministic_inputs=True):
    """Fine-tunes the whole network on each experience in turn (lower bound)."""
    template = Naive(**_template_arguments(model, params.protocol(), device))
    return ContinualStrategy("naive", template, model, {})


@STRATEGIES.register("cumulative", params=WholeNetworkParams)
def cumulative(*, model, params: WholeNetworkParams, device="cpu", deterministic_inputs=True):
    """Trains on all data seen so far at every experience (upper bound)."""
    template = Cumulative(**_template_arguments(model, params.protocol(), device))
    return ContinualStrategy("cumulative", template, model, {})


@STRATEGIES.register("ewc", params=EwcParams)
def ewc(*, model, params: EwcParams, device="cpu", deterministic_inputs=True):
    """Elastic Weight Consolidation: a quadratic penalty on weights that mattered before."""
    template = EWC(
        ewc_lambda=params.ewc_lambda,
        mode="separate",
        **_template_arguments(model, params.protocol(), device),
    )
    return ContinualStrategy("ewc", template, model, {}, extra_cost="importance_pass")


@STRATEGIES.register("replay", params=ReplayParams)
def replay(*, model, params: ReplayParams, device="cpu", deterministic_inputs=True):
    """Experience replay from a class-balanced memory of past samples."""
    template = Replay(
        mem_size=params.mem_size, **_template_arguments(model, params.protocol(), device)
    )
    return ContinualStrategy("replay", template, model, {})


@STRATEGIES.register("lwf", params=LwfParams)
def lwf(*, model, params: LwfParams, device="cpu", deterministic_inputs=True):
    """Learning without Forgetting: distillation from the previous model's outputs."""
    template = LwF(
        alpha=params.alpha,
        temperature=params.temperature,
        **_template_arguments(model, params.protocol(), device),
    )
    return ContinualStrategy("lwf", template, model, {}, extra_cost="teacher_forward")


# -- the CWR* family ---------------------------------------------------------------------------


class CWRStarFamily(LatentCacheForward, SupervisedTemplate):
    """Avalanche's supervised template with the CWR* head plugin; with a latent cache, head-only
    epochs run on cached features."""


class CwrStarParams(ProtocolParams):
    # CWR* as its authors ran it: one plain SGD for every experience, so every head row is
    # learned by the same rule (the hybrid head's); Adam on the first experience fits the
    # backbone that is then frozen to its few classes (measured: cwr_star 35.6% instead of
    # 49.8%, docs/strategies.md)
    first_optimizer: Literal[OPTIMIZERS] = "sgd"
    """optimizer of the first experience (plain SGD, as CWR*'s authors ran it)"""
    optimizer: Literal[OPTIMIZERS] = "sgd"
    """optimizer of every later experience (a fresh one each time: learning rate reset)"""
    latent_cache: bool = True
    """head-only epochs run on features computed once per experience (same results)"""
    equal_row_norms: bool = True
    """consolidated head rows rescaled to the first experience's mean norm"""


class HqCwrStarParams(CwrStarParams):
    grad_bits: GradBits = 16
    """bits of the stored head weights after the fixed-point update"""
    head_bits: int = Field(8, ge=2, le=16)
    """bits of the features, head weights, softmax output and error signal"""
    rounding: Literal[ROUNDING_MODES] = "stochastic"
    """rounding of the stored head weights"""


def _latent_cache(enabled, deterministic_inputs, model, head, codec, device, batch_size):
    """Encoding at the training batch size keeps the peak memory of training unchanged."""
    if not (enabled and deterministic_inputs):
        return None
    return LatentCache(model, head, codec, device=device, batch_size=batch_size)


def _cwr_family(
    name, model, device, deterministic_inputs, params: CwrStarParams, **head
) -> ContinualStrategy:
    protocol = params.protocol()
    layer = head_layer(model)
    plugin = CWRStarHeadPlugin(
        model,
        cwr_layer_name=HEAD_LAYER,
        lr=protocol.lr,
        equal_row_norms=params.equal_row_norms,
        device=device,
        **head,
    )
    cache = _latent_cache(
        params.latent_cache,
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


@STRATEGIES.register("cwr_star", params=CwrStarParams)
def cwr_star(*, model, params: CwrStarParams, device="cpu", deterministic_inputs=True):
    """CWR*: frozen backbone after the first experience, consolidated head rows on one scale."""
    return _cwr_family("cwr_star", model, device, deterministic_inputs, params)


@STRATEGIES.register("hq_cwr_star", params=HqCwrStarParams)
def hq_cwr_star(*, model, params: HqCwrStarParams, device="cpu", deterministic_inputs=True):
    """Hybrid-quantized CWR*: 1-bit backbone, fixed-point head updates at grad_bits."""
    return _cwr_family(
        "hq_cwr_star",
        model,
        device,
        deterministic_inputs,
        params,
        grad_bits=params.grad_bits,
        head_bits=params.head_bits,
        rounding=params.rounding,
    )
