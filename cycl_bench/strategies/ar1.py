"""AR1* with latent replay, and the hybrid-quantized CWR* with 1-bit latent replay.

`ar1_star` (Pellegrini, Graffieti, Lomonaco and Maltoni 2020; reference code: ar1-pytorch
`ar1star_lat_replay.py` at its final version of 2020-05-06, and Avalanche's `AR1`): the
backbone is cut at a latent layer (`Backbone.split`). From the first experience on, the stages
below it are frozen (eval mode, no gradient: the backbone is pretrained; the reference freezes
them "since the first batch"); the stages above it and the CWR* head train with SGD at the
strategy's learning rate (the reference's inc_lr). After the first experience every minibatch
is `cur` current patterns, through the whole network, and `mb - cur` replayed latent
activations, joined at the latent layer (`latent_replay.LatentReplay`). CWR* consolidates the
head with the replayed patterns counted. Optionally Synaptic Intelligence on the trained
weights (`si_lambda`, head excluded), as the reference's earlier version ran it.

`hq_cwr_star_lr` (Vorabbi, Maltoni, Borghi and Santi, VISAPP 2024, arXiv 2401.09916; IVC 158,
2025): the hybrid-quantized CWR* head (fixed-point head update, `hq_cwr.CWRStarHeadPlugin`),
latent replay at 1 bit where the latent layer reads only signs, and the stages above the latent
layer trained with quantized backpropagation: from the second experience on, every binary
convolution rounds its output gradient to `grad_bits` fixed point (`GradientQuantizer`). The
whole network learns the first experience, as in hq_cwr_star and the author's code; the memory
is then filled by one pass of that experience through the frozen lower part.

BatchNorm above the latent layer (`batchnorm`): the authors' MobileNet uses Batch
Renormalization. Here, measured on the synthetic CORe50 NC stream (docs/strategies.md):
`frozen` keeps the statistics of the first experience from then on (BatchNorm in eval mode in
the upper part, its affine parameters still trained), `recalibrate` recomputes them over each
experience's current images (the suite's `BatchNormRecalibration`), `renorm` is Batch
Renormalization with the reference's incremental settings (momentum 5e-5, r_max 1.25, d_max
0.5) in BatchNorm's own parameters and buffers (the state dict is unchanged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard, get_args

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import SynapticIntelligencePlugin
from pydantic import Field
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.params import MAX_BATCH, MAX_EPOCHS, MAX_MEMORY, GradBits
from cycl_bench.quant.gradquant import Rounding
from cycl_bench.quant.precision import set_precision
from cycl_bench.registry import STRATEGIES
from cycl_bench.strategies.base import (
    HEAD_LAYER,
    ContinualStrategy,
    HeadPrecision,
    ProtocolParams,
    head_layer,
)
from cycl_bench.strategies.hq_cwr import CWRStarHeadPlugin
from cycl_bench.strategies.latent_replay import (
    LatentBits,
    LatentReplay,
    LatentReplayBuffer,
    LatentReplayTemplate,
    resolve_latent_bits,
)
from cycl_bench.strategies.protocol import (
    BatchNormRecalibration,
    ExperienceProtocol,
    Optimizer,
    TrainingProtocol,
    make_optimizer,
    quiet_evaluator,
)

if TYPE_CHECKING:  # models and strategies are one layer: the contract, not the import
    from avalanche.training.templates import SupervisedTemplate

    from cycl_bench.models.common import Backbone

EVAL_BATCH_SIZE = 256
BatchNormMode = Literal["frozen", "recalibrate", "renorm"]
BATCHNORM_MODES: tuple[BatchNormMode, ...] = get_args(BatchNormMode)
# ar1-pytorch params.cfg (2020-05-06): Batch Renormalization after the first batch
RENORM_MOMENTUM = 5e-5
RENORM_R_MAX = 1.25
RENORM_D_MAX = 0.5


class LatentReplayParams(ProtocolParams):
    """The training protocol plus the latent replay's own parameters."""

    rm_sz: int = Field(1500, ge=1, le=MAX_MEMORY)
    """latent activations the replay memory holds (ar1-pytorch params.cfg and Avalanche's AR1:
    1500)"""
    latent_layer: int = -1
    """stage the upper (trained) part starts with: 1 .. stages-1, or counted from the end
    (-1: the last unit of the backbone and the head train)"""
    latent_bits: LatentBits = 32
    """bits per stored activation value: 1 (sign; only where the latent layer reads only
    signs), 8 (int8 with one power-of-two step), 32 (float), auto (1 where possible, else 8)"""
    batchnorm: BatchNormMode = "frozen"
    """BatchNorm above the latent layer after the first experience: frozen statistics, statistics
    recomputed per experience, or Batch Renormalization (measured: docs/strategies.md)"""


class Ar1StarParams(LatentReplayParams):
    paper: ClassVar[str] = (
        "Pellegrini, Graffieti, Lomonaco and Maltoni 2020, Latent replay for real-time "
        "continual learning, IROS (AR1* with latent replay; AR1*: Lomonaco, Maltoni and "
        "Pellegrini 2020, CVPR Workshops); reference code ar1-pytorch ar1star_lat_replay.py "
        "(2020-05-06) and Avalanche's AR1"
    )
    published: ClassVar[dict[str, Any]] = {"rm_sz": 1500, "latent_bits": 32, "si_lambda": 0.0}
    departures: ClassVar[tuple[str, ...]] = (
        "a cycl_bench binary backbone cut in front of stage latent_layer (default: the last "
        "unit trains), not MobileNetV1 cut after its 20th layer (conv5_4/dw)",
        "BatchNorm above the latent layer keeps the first experience's statistics (batchnorm="
        "frozen; measured best on the synthetic stream), not Batch Renormalization",
        "first experience: the experiment's protocol (optimizer, learning rate, epochs, "
        "minibatch), not SGD 0.001 with momentum for 4 epochs",
        "current patterns reshuffled every epoch and the last minibatch of an epoch kept "
        "(Avalanche's loader), where the reference shuffles once per experience and drops it",
    )
    # ar1-pytorch params.cfg and Avalanche's AR1: mb_size 128, inc_train_ep 4, SGD with
    # momentum 0.9 and weight decay (l2) 0.0005; inc_lr 0.001 (the 2020-04-09 params.cfg)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    """training minibatch (ar1-pytorch and Avalanche: 128)"""
    optimizer: Optimizer = "sgd"
    """optimizer of every later experience (the reference's SGD)"""
    lr: float = Field(0.001, gt=0)
    """learning rate of the later experiences: the reference's inc_lr of ar1-pytorch's
    params.cfg of 2020-04-09 (0.001); its final version and Avalanche have 5e-5, with which no
    later class is learned within the suite's budgets (measured: 13.1% against 38.7%,
    docs/strategies.md)"""
    epochs: int = Field(4, ge=1, le=MAX_EPOCHS)
    """epochs of each later experience (inc_train_ep: 4)"""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum (the reference's 0.9)"""
    weight_decay: float = Field(5e-4, ge=0)
    """L2 penalty of the optimizer (the reference's l2: 0.0005)"""
    si_lambda: float = Field(0.0, ge=0)
    """Synaptic Intelligence on the trained weights, head excluded (0 = off, the final
    reference's reg_lambda; its earlier version used 1e6)"""


class HqCwrStarLrParams(LatentReplayParams):
    paper: ClassVar[str] = (
        "Vorabbi, Maltoni, Borghi and Santi 2024, Enabling on-device continual learning with "
        "binary neural networks and latent replay, VISAPP (arXiv 2401.09916; IVC 158, 2025)"
    )
    published: ClassVar[dict[str, Any]] = {"rounding": "nearest"}
    departures: ClassVar[tuple[str, ...]] = (
        "trained with the experiment's protocol, shared by every strategy (as hq_cwr_star); "
        "the authors' code trains later experiences with plain SGD (lr 0.0025, 10 epochs)",
        "latent activations at 1 bit only where the latent layer reads only signs (latent_bits"
        "=auto: vgg_small_bnn); where it reads values (the Bi-Real and ReAct units of tiny_bnn, "
        "resnet18_bnn, reactnet_bnn) at 8 bits",
        "replay memory: AR1*'s (random replacement, the reference's share of replayed patterns "
        "per minibatch), not the author's class-balanced memory adding 128 patterns to every "
        "minibatch",
        "quantized backpropagation: the output gradient of every binary convolution above the "
        "latent layer at grad_bits fixed point (power-of-two step, stochastic rounding); the "
        "author's code also quantizes the forward activations (8 bits) and the gradients "
        "through BatchNorm, PReLU and pooling, and backpropagates the head's error in fixed "
        "point",
        "BatchNorm above the latent layer keeps the first experience's statistics "
        "(batchnorm=frozen, measured best for ar1_star on the synthetic stream), where the "
        "author's code normalizes with batch statistics",
        "a cycl_bench binary backbone cut in front of stage latent_layer (default: the last "
        "unit trains), where the author's code trains the last three blocks",
    )
    latent_bits: LatentBits = "auto"
    """bits per stored activation value: auto (1 where the latent layer reads only signs, else
    8), 1, 8 or 32"""
    grad_bits: GradBits = 16
    """bits of the stored head weights and of the output gradient of every binary convolution
    above the latent layer (the paper's q_b)"""
    head_bits: int = Field(8, ge=2, le=16)
    """bits of the head's features, weights, softmax output and error signal"""
    rounding: Rounding = "nearest"
    """rounding of the head's error signal and stored weights (stochastic: a variant)"""


class BatchRenorm2d(nn.BatchNorm2d):
    """Batch Renormalization (Ioffe 2017) in a BatchNorm2d's own parameters and buffers: in
    training, batch statistics corrected towards the running ones by r = clamp(sigma_B / sigma,
    1/r_max, r_max) and d = clamp((mu_B - mu) / sigma, -d_max, d_max), no gradient through r and
    d; in evaluation, BatchNorm's."""

    r_max: float = RENORM_R_MAX
    d_max: float = RENORM_D_MAX

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        # made from a BatchNorm2d with running statistics by `UpperBatchNorm`, which sets the
        # momentum (the suite's recalibration pass never runs on a renormalized layer)
        assert self.running_mean is not None and self.running_var is not None
        assert self.momentum is not None
        dims = (0, 2, 3)
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        std = torch.sqrt(var + self.eps)
        running_std = torch.sqrt(self.running_var + self.eps)
        r = (std / running_std).clamp(1 / self.r_max, self.r_max).detach()
        d = ((mean - self.running_mean) / running_std).clamp(-self.d_max, self.d_max).detach()
        scale = (r / std).view(1, -1, 1, 1)
        normalized = (x - mean.view(1, -1, 1, 1)) * scale + d.view(1, -1, 1, 1)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach(), self.momentum)
        return normalized * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class UpperBatchNorm(BatchNormRecalibration):
    """What the BatchNorm layers above the latent layer do once the first experience is learned
    (`batchnorm`): `frozen`, eval mode (its statistics, recomputed after it by the suite's pass);
    `renorm`, Batch Renormalization (the module's class switched in place: its parameters,
    buffers and hooks stay, so the optimizer and the state dict see the same tensors);
    `recalibrate`, training mode and the suite's pass after every experience."""

    def __init__(self, upper: nn.Module, mode: str) -> None:
        super().__init__()
        self.upper = upper
        self.mode = mode

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if strategy.clock.train_exp_counter == 0:
            return
        for module in self.upper.modules():
            if not isinstance(module, nn.modules.batchnorm._BatchNorm):
                continue
            if self.mode == "frozen":
                module.eval()
            elif self.mode == "renorm" and type(module) is nn.BatchNorm2d:
                module.__class__ = BatchRenorm2d
                module.momentum = RENORM_MOMENTUM

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if strategy.clock.train_exp_counter == 0 or self.mode == "recalibrate":
            super().after_training_exp(strategy, **kwargs)
        else:
            self.samples = 0


class QuantizedBackprop(SupervisedPlugin):
    """From the second experience on, every binary convolution rounds its output gradient to
    `grad_bits` (the lower ones are frozen: no gradient reaches them, and one width for all
    keeps the model's precision readable in one piece)."""

    def __init__(self, model: nn.Module, grad_bits: int) -> None:
        super().__init__()
        self.model = model
        self.grad_bits = grad_bits

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if strategy.clock.train_exp_counter > 0:
            set_precision(self.model, grad_bits=self.grad_bits)


def _has_latent_cut(model: nn.Module) -> TypeGuard[Backbone]:
    return callable(getattr(model, "split", None))  # the Backbone contract's latent cut


def _latent_replay_strategy(
    name: str,
    model: nn.Module,
    params: LatentReplayParams,
    device: str | torch.device,
    *,
    freeze_from: int,
    si_lambda: float = 0.0,
    **head: Any,
) -> ContinualStrategy:
    if not _has_latent_cut(model):
        raise UserError(f"{name} needs a cycl_bench backbone (it cuts it at a latent layer)")
    protocol: TrainingProtocol = params.protocol()
    head_layer(model)
    split = model.split(params.latent_layer)
    buffer = LatentReplayBuffer(
        params.rm_sz, resolve_latent_bits(params.latent_bits, split.binary_input)
    )
    head_plugin = CWRStarHeadPlugin(
        model,
        cwr_layer_name=HEAD_LAYER,
        lr=protocol.lr,
        momentum=protocol.momentum,
        weight_decay=protocol.weight_decay,
        equal_row_norms=False,
        device=device,
        freeze_remaining_model=False,
        **head,
    )
    replay = LatentReplay(
        model,
        split,
        buffer,
        head_plugin,
        protocol,
        freeze_from=freeze_from,
        device=device,
    )
    plugins = [ExperienceProtocol(protocol), UpperBatchNorm(split.upper, params.batchnorm)]
    plugins += [head_plugin, replay]
    if si_lambda > 0:
        plugins.append(SynapticIntelligencePlugin(si_lambda, excluded_parameters=[HEAD_LAYER]))
    head_precision = None
    if head_plugin.quantized:
        plugins.append(QuantizedBackprop(model, head_plugin.grad_bits))
        head_precision = HeadPrecision.hybrid(head["head_bits"], head_plugin.grad_bits)
    template = LatentReplayTemplate(
        model=model,
        optimizer=make_optimizer(protocol.first_optimizer, model.parameters(), protocol.first_lr),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=protocol.batch_size,
        train_epochs=protocol.first_epochs,
        eval_mb_size=EVAL_BATCH_SIZE,
        device=device,
        plugins=plugins,
        evaluator=quiet_evaluator(),
        eval_every=-1,
    )
    template.latent_replay = replay
    # the epochs set from the experience, then the BatchNorm above the latent layer
    # recalibrated, the head consolidated, the latent memory updated from that network and
    # SI's importance read from the finished weights
    template.plugin_order = (
        ExperienceProtocol,
        UpperBatchNorm,
        CWRStarHeadPlugin,
        LatentReplay,
        SynapticIntelligencePlugin,
        QuantizedBackprop,
    )
    return ContinualStrategy(
        name,
        template,
        model,
        {},
        head_name=HEAD_LAYER,
        head_precision=head_precision,
        latent_replay=replay,
        extra_cost="calibration_pass" if head_plugin.quantized else None,
    )


@STRATEGIES.register("ar1_star", params=Ar1StarParams)
def ar1_star(
    *,
    model: nn.Module,
    params: Ar1StarParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """AR1* with latent replay: frozen layers below the latent layer, CWR* head, replayed
    latent activations joined to every minibatch after the first experience."""
    return _latent_replay_strategy(
        "ar1_star", model, params, device, freeze_from=0, si_lambda=params.si_lambda
    )


@STRATEGIES.register("hq_cwr_star_lr", params=HqCwrStarLrParams)
def hq_cwr_star_lr(
    *,
    model: nn.Module,
    params: HqCwrStarLrParams,
    device: str | torch.device = "cpu",
    deterministic_inputs: bool = True,
) -> ContinualStrategy:
    """Hybrid-quantized CWR* with 1-bit latent replay and quantized backpropagation above the
    latent layer."""
    return _latent_replay_strategy(
        "hq_cwr_star_lr",
        model,
        params,
        device,
        freeze_from=1,
        grad_bits=params.grad_bits,
        head_bits=params.head_bits,
        rounding=params.rounding,
    )


__all__ = ["Ar1StarParams", "BatchRenorm2d", "HqCwrStarLrParams"]
