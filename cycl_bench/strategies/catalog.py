"""The registered strategies: Avalanche's, plus the CWR* family.

Each factory builds a real `avalanche.training` strategy with the run's training protocol
(`ExperienceProtocol`) and a quiet evaluator, and returns it as a `ContinualStrategy`. Every
strategy trains the first experience the same way (the experiment's protocol: optimizer,
learning rate, epochs, minibatch), so that the first row of the accuracy matrix differs between
strategies only by what each strategy does. Each registered name runs its paper's algorithm
(`paper`); what departs from it is declared (`departures`, `published`) and written into every
results file; our own additions are variants: strategy entries with a parameter changed
(`cwr_star_rn`, `hq_cwr_star_sr`), named as such in every table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import EWC, Cumulative, LwF, Naive, Replay
from avalanche.training.plugins import EWCPlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field
from torch import nn

from cycl_bench.params import MAX_MEMORY, GradBits
from cycl_bench.quant.gradquant import Rounding
from cycl_bench.registry import STRATEGIES
from cycl_bench.strategies.base import (
    HEAD_LAYER,
    ContinualStrategy,
    HeadPrecision,
    ProtocolParams,
    head_layer,
)
from cycl_bench.strategies.hq_cwr import CWRStarHeadPlugin
from cycl_bench.strategies.latent_cache import FeatureCodec, LatentCache, LatentCacheForward
from cycl_bench.strategies.protocol import (
    BatchNormRecalibration,
    ExperienceProtocol,
    OrderedPlugins,
    TrainingProtocol,
    make_optimizer,
    quiet_evaluator,
)

if TYPE_CHECKING:  # models and strategies are one layer: the contract, not the import
    from cycl_bench.models.common import Backbone

EVAL_BATCH_SIZE = 256


def _template_arguments(
    model: nn.Module,
    protocol: TrainingProtocol,
    device: str | torch.device,
    plugins: Iterable[SupervisedPlugin] = (),
) -> dict[str, Any]:
    return {
        "model": model,
        # replaced before every experience by `ExperienceProtocol`
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
    """The whole network trains on every experience."""


class EwcParams(WholeNetworkParams):
    paper: ClassVar[str] = (
        "Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks, "
        "PNAS 114(13) (Avalanche's EWC, one penalty per experience)"
    )
    departures: ClassVar[tuple[str, ...]] = (
        "the Fisher diagonal is Avalanche's: squared minibatch-mean gradients over the "
        "experience, not per-sample squared gradients",
    )
    published: ClassVar[dict[str, Any]] = {"fisher_clip": None}
    ewc_lambda: float = Field(1000.0, ge=0)
    """weight of the quadratic penalty"""
    fisher_clip: float | None = Field(None, gt=0)
    """the CORe50 authors' EWC: one importance summed over experiences, clipped at this value
    (their maxF, 0.001), anchored at the latest weights; none: a penalty per experience"""


class ReplayParams(WholeNetworkParams):
    paper: ClassVar[str] = (
        "Chaudhry et al. 2019, On tiny episodic memories in continual learning, "
        "arXiv 1902.10486 (experience replay; Avalanche's Replay)"
    )
    departures: ClassVar[tuple[str, ...]] = (
        "memory split equally between experiences, random samples of each (Avalanche's "
        "ExperienceBalancedBuffer), not reservoir sampling; minibatches of current and "
        "memory samples concatenated",
    )
    mem_size: int = Field(500, ge=1, le=MAX_MEMORY)
    """samples the replay memory holds (an equal share per experience seen)"""


class LwfParams(WholeNetworkParams):
    paper: ClassVar[str] = (
        "Li and Hoiem 2017, Learning without forgetting, TPAMI 40(12) (Avalanche's LwF)"
    )
    departures: ClassVar[tuple[str, ...]] = (
        "one shared head (class-incremental): the distillation covers the logits of the "
        "classes seen before; no warm-up of new output units",
    )
    alpha: float = Field(1.0, ge=0)
    """weight of the distillation loss"""
    temperature: float = Field(2.0, ge=1e-6)
    """softmax temperature of the distillation"""


@STRATEGIES.register("naive", params=WholeNetworkParams)
def naive(
    *,
    model: nn.Module,
    params: WholeNetworkParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Fine-tunes the whole network on each experience in turn (lower bound)."""
    template = Naive(**_template_arguments(model, params.protocol(), device))
    return ContinualStrategy("naive", template, model, {})


@STRATEGIES.register("cumulative", params=WholeNetworkParams)
def cumulative(
    *,
    model: nn.Module,
    params: WholeNetworkParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Trains on all data seen so far at every experience (upper bound)."""
    template = Cumulative(**_template_arguments(model, params.protocol(), device))
    return ContinualStrategy("cumulative", template, model, {})


@STRATEGIES.register("ewc", params=EwcParams)
def ewc(
    *,
    model: nn.Module,
    params: EwcParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Elastic Weight Consolidation: a quadratic penalty on weights that mattered before."""
    arguments = _template_arguments(model, params.protocol(), device)
    if params.fisher_clip is None:
        template = EWC(ewc_lambda=params.ewc_lambda, mode="separate", **arguments)
    else:
        penalty = ClippedFisherEWC(params.ewc_lambda, params.fisher_clip)
        arguments["plugins"].append(penalty)
        template = SupervisedTemplate(**arguments)
    return ContinualStrategy("ewc", template, model, {}, extra_cost="importance_pass")


class ClippedFisherEWC(EWCPlugin):
    """EWC as the CORe50 authors ran it (FGCL `ewc.py`, Caffe solver `L2ewc`): one importance
    per weight, the Fisher diagonals of all experiences so far summed and clipped at `clip`
    (their maxF 0.001), the penalty anchored at the weights after the latest experience. The
    clip bounds the penalty's stiffness (2 x lambda x clip), which keeps SGD stable: a binary
    network's straight-through gradients give latent weights Fisher values of 30 and more.
    """

    def __init__(self, ewc_lambda: float, clip: float) -> None:
        super().__init__(ewc_lambda, mode="online", decay_factor=1.0)
        self.clip = clip

    @torch.no_grad()
    def update_importances(self, importances: dict[str, Any], t: int) -> None:
        super().update_importances(importances, t)
        for importance in self.importances[t].values():
            importance.data.clamp_(max=self.clip)


@STRATEGIES.register("replay", params=ReplayParams)
def replay(
    *,
    model: nn.Module,
    params: ReplayParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Experience replay from a memory of past samples, an equal share per experience."""
    template = Replay(
        mem_size=params.mem_size, **_template_arguments(model, params.protocol(), device)
    )
    return ContinualStrategy("replay", template, model, {})


@STRATEGIES.register("lwf", params=LwfParams)
def lwf(
    *,
    model: nn.Module,
    params: LwfParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Learning without Forgetting: distillation from the previous model's outputs."""
    template = LwF(
        alpha=params.alpha,
        temperature=params.temperature,
        **_template_arguments(model, params.protocol(), device),
    )
    return ContinualStrategy("lwf", template, model, {}, extra_cost="teacher_forward")


# -- the CWR* family ---------------------------------------------------------------------------


class CWRStarFamily(OrderedPlugins, LatentCacheForward, SupervisedTemplate):
    """Avalanche's supervised template with the CWR* head plugin; with a latent cache, head-only
    epochs run on cached features. After the first experience, the BatchNorm statistics are
    recalibrated before the hybrid head calibrates its feature scale on that network (the scale
    is then the cache's codec for every later experience)."""

    plugin_order = (ExperienceProtocol, BatchNormRecalibration, LatentCache, CWRStarHeadPlugin)


class CwrStarParams(ProtocolParams):
    paper: ClassVar[str] = (
        "Lomonaco, Maltoni and Pellegrini 2020, Rehearsal-free continual learning over small "
        "non-i.i.d. batches, CVPR Workshops (CWR*; Avalanche's CWRStarPlugin)"
    )
    published: ClassVar[dict[str, Any]] = {"equal_row_norms": False}
    latent_cache: bool = True
    """head-only epochs run on features computed once per experience (same results)"""
    equal_row_norms: bool = False
    """variant (not in the paper): consolidated rows rescaled to the first experience's norm"""


class HqCwrStarParams(CwrStarParams):
    paper: ClassVar[str] = (
        "Vorabbi, Maltoni, Santi et al. 2023, On-device learning with binary neural networks, "
        "arXiv 2308.15308 (CWR* with a hybrid-quantized head update)"
    )
    published: ClassVar[dict[str, Any]] = {
        "equal_row_norms": False,
        "rounding": "nearest",
        "storage_grid": "min_max",
    }
    departures: ClassVar[tuple[str, ...]] = (
        "trained with the experiment's protocol, shared by every strategy (CWR*'s authors' "
        "SGD); the paper trains the first experience with Adam (lr 0.0025, 10 epochs, "
        "minibatch 50) and later ones with plain SGD (lr 0.0025, 5 epochs)",
        "forward quantization (features, head weights, softmax output, error signal) on "
        "symmetric power-of-two grids calibrated after the first experience; the authors' "
        "code uses affine ranges collected over the first experience",
    )
    grad_bits: GradBits = 16
    """bits of the stored head weights after the fixed-point update"""
    head_bits: int = Field(8, ge=2, le=16)
    """bits of the features, head weights, softmax output and error signal"""
    rounding: Rounding = "nearest"
    """rounding of the error signal and the stored head weights (stochastic: a variant)"""
    storage_grid: Literal["min_max", "power_of_two"] = "min_max"
    """grid of the weight gradient and stored weights: min_max (each tensor's own range, the
    authors' code) or power_of_two (a fixed grid calibrated after the first experience)"""


def _latent_cache(
    enabled: bool,
    deterministic_inputs: bool,
    model: Backbone,
    head: nn.Module,
    codec: Callable[[], FeatureCodec],
    device: str | torch.device,
    batch_size: int,
) -> LatentCache | None:
    """Encoding at the training batch size keeps the peak memory of training unchanged."""
    if not (enabled and deterministic_inputs):
        return None
    return LatentCache(model, head, codec, device=device, batch_size=batch_size)


def _cwr_family(
    name: str,
    model: Backbone,
    device: str | torch.device,
    deterministic_inputs: bool,
    params: CwrStarParams,
    **head: Any,
) -> ContinualStrategy:
    protocol = params.protocol()
    layer = head_layer(model)
    plugin = CWRStarHeadPlugin(
        model,
        cwr_layer_name=HEAD_LAYER,
        lr=protocol.lr,
        momentum=protocol.momentum,
        weight_decay=protocol.weight_decay,
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
        head_precision = HeadPrecision.hybrid(head["head_bits"], plugin.grad_bits)
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
def cwr_star(
    *,
    model: Backbone,
    params: CwrStarParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """CWR*: frozen backbone after the first experience, head rows consolidated per class."""
    return _cwr_family("cwr_star", model, device, deterministic_inputs, params)


@STRATEGIES.register("hq_cwr_star", params=HqCwrStarParams)
def hq_cwr_star(
    *,
    model: Backbone,
    params: HqCwrStarParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
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
        storage_grid=params.storage_grid,
    )
