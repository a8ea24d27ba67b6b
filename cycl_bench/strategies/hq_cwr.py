"""The CWR* head: Avalanche's CWR* consolidation with rows on one scale, and its update in fixed
point for the hybrid-quantized CWR*, as on a device without floats.

CWR* learns each experience's rows of the bias-free head from zero while the rows of other classes
sit at zero, then consolidates them. Rows learned with the backbone (the first experience) and rows
learned on a frozen backbone (every later one) do not end on the same scale: measured on the
synthetic CORe50 NC stream, the first experience's rows end 3x smaller than later rows, and the
classes of the first experience are never predicted again once a later experience is learned.
So after Avalanche's consolidation (`new = W[c] - mean`, weighted average with a class's earlier
row) every consolidated row is rescaled to the mean norm the first experience's rows reached
(`equal_row_norms`, on by default; off, the plugin is Avalanche's CWRStarPlugin unchanged).

The fixed-point head update (grad_bits < 32) of each minibatch after the first experience
(N samples, C classes):

    x_q     = Q_h(x)                      input features, scale calibrated on experience 0
    W_q     = Q_h(W)                      head weights, forward copy
    p_q     = Q_h(softmax(x_q . W_q^T))   softmax output, step 2^-(h-1)
    delta_q = Q_h(p_q - onehot(y))        error signal, step 2^-(h-1)
    grad    = delta_q^T . x_q / N         integer products, exact
    W      <- Q_b(W - lr * grad)          stored weights at b = grad_bits

Q_k is the signed k-bit fixed-point grid of `quantize_fixed_point` with a power-of-two step.
h = head_bits (8 by default). The stored weights W are already on the b-bit grid, so small
updates accumulate at b bits while the forward arithmetic stays at h bits: b = 16 matches float
training in the paper, b = 8 degrades it. `rounding` (stochastic by default) applies to the error
signal and the stored weights; the forward quantizations round to nearest. grad_bits = 32 leaves
the head to the optimizer's plain float SGD step: nothing is quantized.

Ranges are calibrated once, after the first experience: the feature step from the largest
feature magnitude on that experience's training data, the weight steps from the largest
consolidated head weight times `WEIGHT_HEADROOM` (room for later experiences to grow).
The consolidated rows are stored rounded to the b-bit grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from avalanche.training.plugins import CWRStarPlugin
from torch import nn

from cycl_bench.quant.bits import FLOAT_GRAD_BITS
from cycl_bench.quant.gradquant import power_of_two_scale, quantize_fixed_point
from cycl_bench.strategies.latent_cache import FeatureCodec, encode_dataset

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
    rounding: str = "stochastic",
) -> torch.Tensor:
    """One fixed-point SGD step of a bias-free softmax head; returns the new stored weights."""
    x_q = quantize_fixed_point(features, head_bits, "nearest", scales.features)
    w_q = quantize_fixed_point(weight, head_bits, "nearest", scales.weights)
    step = unit_step(head_bits)
    p_q = quantize_fixed_point(torch.softmax(x_q @ w_q.T, dim=1), head_bits, "nearest", step)
    onehot = nn.functional.one_hot(targets, num_classes=weight.shape[0]).to(p_q.dtype)
    delta_q = quantize_fixed_point(p_q - onehot, head_bits, rounding, step)
    grad = delta_q.T @ x_q / len(targets)
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
        grad_bits: int = FLOAT_GRAD_BITS,
        head_bits: int = 8,
        rounding: str = "stochastic",
        equal_row_norms: bool = True,
        device="cpu",
    ):
        super().__init__(model, cwr_layer_name, freeze_remaining_model=True)
        self.head = super().get_cwr_layer()
        self.lr = lr
        self.grad_bits = grad_bits
        self.head_bits = head_bits
        self.rounding = rounding
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

    def _capture_head_input(self, module, inputs):
        if torch.is_grad_enabled():
            self._head_input = inputs[0].detach()

    # -- the head update ---------------------------------------------------------------------

    def before_update(self, strategy, **kwargs):
        if not self.quantized or strategy.clock.train_exp_counter == 0:
            return
        head = self.head
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

    def after_training_exp(self, strategy, **kwargs):
        if not self.quantized:
            super().after_training_exp(strategy, **kwargs)
            return
        if self.scales is None:
            self._feature_scale = self._calibrate_features(strategy)
        self.consolidate_weights()
        if self.scales is None:
            self.scales = self._calibrate_weights(self._feature_scale)
        self._round_saved_rows()
        self.set_consolidate_weights()

    def _calibrate_features(self, strategy) -> float:
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
        for label, row in self.model.saved_weights.items():
            stored = quantize_fixed_point(
                torch.from_numpy(row), self.grad_bits, "nearest", self.scales.stored
            )
            self.model.saved_weights[label] = stored.numpy()
