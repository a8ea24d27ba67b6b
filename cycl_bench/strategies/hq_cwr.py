"""The CWR* head: Avalanche's CWR* consolidation, an optional rescaling of the consolidated rows
(a variant), and the head update in fixed point for the hybrid-quantized CWR*, as on a device
without floats.

CWR* learns each experience's rows of the bias-free head from zero while the rows of other classes
sit at zero, then consolidates them (`new = W[c] - mean`, weighted average with a class's earlier
row). Rows learned with the backbone (the first experience) and rows learned on a frozen backbone
(every later one) need not end on the same scale; `equal_row_norms` (a variant, off by default:
no CWR* paper does it) rescales every consolidated row to the mean norm the first experience's
rows reached. Off, the plugin is Avalanche's CWRStarPlugin unchanged.

The hybrid head update (grad_bits < 32) of each minibatch after the first experience (N samples,
C classes), after Vorabbi et al. 2023 and their code:

    x_q     = Q_h(x)                      input features, scale calibrated on experience 0
    W_q     = Q_h(W)                      head weights, forward copy
    p_q     = Q_h(softmax(x_q . W_q^T))   softmax output, step 2^-(h-1)
    delta_q = Q_h(p_q - onehot(y))        error signal, step 2^-(h-1)
    grad    = delta_q^T . x_q / N         integer products, exact
    W      <- S_b(W - lr * S_b(grad))     stored weights at b = grad_bits

Q_k is the signed k-bit fixed-point grid of `quantize_fixed_point` with a power-of-two step;
h = head_bits (8). S_b is the storage grid (`storage_grid`): `min_max`, the authors' per-tensor
uniform quantizer (2^b - 1 steps over the tensor's own [min, max], rounding to nearest; their
`my_quantize`), applied to the weight gradient and to the updated weights; or `power_of_two`
(a variant), the exact gradient and a fixed signed grid for the weights calibrated after the
first experience. The paper: b = 16 matches float training, b = 8 degrades it (most in NC).
`rounding` (nearest, the paper's; stochastic a variant) applies to the error signal and the
stored weights; the forward quantizations round to nearest. grad_bits = 32 leaves the head to
the optimizer's plain float SGD step: nothing is quantized.

Ranges are calibrated once, after the first experience: the feature step from the largest
feature magnitude on that experience's training data, the weight steps from the largest
consolidated head weight times `WEIGHT_HEADROOM` (room for later experiences to grow).
The consolidated rows are stored rounded to the b-bit grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from avalanche.training.plugins import CWRStarPlugin
from torch import nn

from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.gradquant import power_of_two_scale, quantize_fixed_point, quantize_min_max
from cycl_bench.strategies.latent_cache import FeatureCodec, encode_dataset

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

WEIGHT_HEADROOM = 2.0


@dataclass(frozen=True)
class HeadScales:
    """Fixed-point steps calibrated on the first experience."""

    features: float  # head input at head_bits
    weights: float  # forward copy of the head weights at head_bits
    stored: float  # stored head weights at grad_bits


def unit_step(bits: int) -> float:
    """Step of a k-bit grid over [-1, 1): softmax outputs and error signals."""
    return 2.0 ** -(bits - 1)


def hybrid_head_update(
    weight: torch.Tensor,
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    lr: float,
    scales: HeadScales,
    head_bits: int,
    grad_bits: int,
    rounding: str = "nearest",
    storage_grid: str = "min_max",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    velocity: torch.Tensor | None = None,
) -> torch.Tensor:
    """One fixed-point SGD step of a bias-free softmax head; returns the new stored weights.

    `storage_grid="min_max"` (the authors' code): the weight gradient and the updated weights
    are each rounded to grad_bits on their own per-tensor [min, max] (`quantize_min_max`);
    `"power_of_two"`: the exact integer gradient, the updated weights on the fixed grid
    calibrated after the first experience (`scales.stored`).
    With `momentum` and `weight_decay` (the experiment's SGD; the paper's update has neither)
    the step follows torch.optim.SGD: `v <- momentum * v + grad + weight_decay * W` in
    `velocity` (updated in place, stored on the same grid as the gradient), `W <- W - lr * v`.

    Its products, as the training cost prices them (`HeadPrecision.computed`): the forward
    `x_q . W_q^T` and the weight gradient `delta_q^T . x_q`, both head_bits x head_bits;
    grad_bits is the grid the result is stored on, not a width any product runs at."""
    x_q = quantize_fixed_point(features, head_bits, "nearest", scales.features)
    w_q = quantize_fixed_point(weight, head_bits, "nearest", scales.weights)
    step = unit_step(head_bits)
    p_q = quantize_fixed_point(torch.softmax(x_q @ w_q.T, dim=1), head_bits, "nearest", step)
    onehot = nn.functional.one_hot(targets, num_classes=weight.shape[0]).to(p_q.dtype)
    delta_q = quantize_fixed_point(p_q - onehot, head_bits, rounding, step)
    grad = delta_q.T @ x_q / len(targets)
    min_max = storage_grid == "min_max"
    if min_max:
        grad = quantize_min_max(grad, grad_bits, "nearest")
    if weight_decay or momentum:  # the experiment's SGD, as torch.optim.SGD applies it
        grad = grad + weight_decay * weight
        if velocity is not None:
            velocity.mul_(momentum).add_(grad)
            if min_max:
                velocity.copy_(quantize_min_max(velocity, grad_bits, "nearest"))
            grad = velocity
    if min_max:
        return quantize_min_max(weight - lr * grad, grad_bits, rounding)
    return quantize_fixed_point(weight - lr * grad, grad_bits, rounding, scales.stored)


class CWRStarHeadPlugin(CWRStarPlugin):
    """Avalanche's CWR* plugin with consolidated rows on one scale and, at grad_bits < 32, the
    head update of later experiences in fixed point.

    At `grad_bits=32` the optimizer's SGD step updates the head; with `equal_row_norms=False`
    as well, it is Avalanche's CWRStarPlugin unchanged (same freezing, reset, consolidation).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        cwr_layer_name: str,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        grad_bits: int = FLOAT_GRAD_BITS,
        head_bits: int = 8,
        rounding: str = "nearest",
        storage_grid: str = "min_max",
        equal_row_norms: bool = False,
        device: str | torch.device = "cpu",
        freeze_remaining_model: bool = True,
    ) -> None:
        # freeze_remaining_model=False: AR1* trains the layers above its latent layer too
        super().__init__(model, cwr_layer_name, freeze_remaining_model=freeze_remaining_model)
        self.head = super().get_cwr_layer()
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self._velocity: torch.Tensor | None = None
        """The head update's momentum buffer, fresh every experience like the optimizer's."""
        self.grad_bits = grad_bits
        self.head_bits = head_bits
        self.rounding = rounding
        self.storage_grid = storage_grid
        self.equal_row_norms = equal_row_norms
        self.row_norm: float | None = None
        """The mean norm of the first experience's consolidated rows (every row's norm)."""
        self.device = device
        self.scales: HeadScales | None = None
        self._feature_scale: float | None = None
        self._head_input: torch.Tensor | None = None
        if self.quantized:
            self.head.register_forward_pre_hook(self._capture_head_input)

    @property
    def quantized(self) -> bool:
        return self.grad_bits < FLOAT_GRAD_BITS

    def feature_codec(self) -> FeatureCodec:
        """The head's input encoding, for the latent cache."""
        if self.quantized and self.scales is not None:
            return FeatureCodec(bits=self.head_bits, scale=self.scales.features)
        return FeatureCodec()

    def get_cwr_layer(self) -> nn.Linear:
        """The head, resolved once: Avalanche searches every parameter of the model on each
        call, which on a Brevitas network costs more than a head-only epoch."""
        return self.head

    def freeze_other_layers(self) -> None:
        """Avalanche's freezing (everything in eval mode without gradients, except the head),
        without its per-parameter layer search."""
        self.model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad = False
        self.head.train()
        for parameter in self.head.parameters():
            parameter.requires_grad = True

    def _capture_head_input(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if torch.is_grad_enabled():
            self._head_input = inputs[0].detach()

    # -- the head update ---------------------------------------------------------------------

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        super().before_training_exp(strategy, **kwargs)
        self._velocity = None

    def before_update(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if not self.quantized or strategy.clock.train_exp_counter == 0:
            return
        # the first experience calibrated the scales; this step's forward captured the input
        assert self.scales is not None and self._head_input is not None
        head = self.head
        if self._velocity is None:
            self._velocity = torch.zeros_like(head.weight)
        with torch.no_grad():
            new_weight = hybrid_head_update(
                head.weight,
                self._head_input,
                strategy.mb_y,
                lr=self.lr,
                scales=self.scales,
                head_bits=self.head_bits,
                grad_bits=self.grad_bits,
                rounding=self.rounding,
                storage_grid=self.storage_grid,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                velocity=self._velocity,
            )
            head.weight.copy_(new_weight)
        for parameter in head.parameters():
            parameter.grad = None  # the optimizer leaves the head (and its quantizer) alone

    # -- calibration and consolidation ---------------------------------------------------------

    def consolidate_weights(self) -> None:
        """Avalanche's consolidation, then every row of the current classes rescaled to the
        first experience's mean row norm."""
        super().consolidate_weights()
        if not self.equal_row_norms:
            return
        saved = self.model.saved_weights
        norms = {c: float(np.linalg.norm(saved[c])) for c in self.cur_class}
        if self.row_norm is None:
            self.row_norm = float(np.mean(list(norms.values())))
        for c, norm in norms.items():
            if norm > 0:
                saved[c] = (saved[c] * (self.row_norm / norm)).astype(saved[c].dtype)

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if not self.quantized:
            super().after_training_exp(strategy, **kwargs)
            return
        if self.scales is None:
            self._feature_scale = self._calibrate_features(strategy)
            self.consolidate_weights()
            self.scales = self._calibrate_weights(self._feature_scale)
        else:
            self.consolidate_weights()
        self._round_saved_rows()
        self.set_consolidate_weights()

    def _calibrate_features(self, strategy: SupervisedTemplate) -> float:
        dataset = strategy.experience.dataset.train()
        features = encode_dataset(self.model, dataset, FeatureCodec(), self.device)
        return float(power_of_two_scale(features, self.head_bits))

    def _calibrate_weights(self, feature_scale: float) -> HeadScales:
        rows = torch.from_numpy(np.stack(list(self.model.saved_weights.values())))
        weight_range = rows.abs().amax() * WEIGHT_HEADROOM
        return HeadScales(
            features=feature_scale,
            weights=float(power_of_two_scale(weight_range, self.head_bits)),
            stored=float(power_of_two_scale(weight_range, self.grad_bits)),
        )

    def _round_saved_rows(self) -> None:
        """The consolidated rows stored at grad_bits, on the grid the head update uses (for
        `min_max`, the range of all consolidated rows together)."""
        saved = self.model.saved_weights
        labels = list(saved)
        rows = torch.from_numpy(np.stack([saved[label] for label in labels]))
        if self.storage_grid == "min_max":
            stored = quantize_min_max(rows, self.grad_bits, "nearest")
        else:
            assert self.scales is not None  # calibrated before the first rows are stored
            stored = quantize_fixed_point(rows, self.grad_bits, "nearest", self.scales.stored)
        for label, row in zip(labels, stored.numpy(), strict=True):
            saved[label] = row
