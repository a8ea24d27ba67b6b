"""The one way to read and change the precision of a model.

Bit widths are module state changed in place (buffers saved in checkpoints): no module is rebuilt,
no parameter is created, optimizer state is untouched. Only the switchable layers
(`BinaryConv2d`) change; the 8-bit stem and classifier and float layers keep their precision.
A model without switchable layers (a float reference) reports (32, 32, 32) and ignores
`set_precision` after validating its arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from torch import nn

from cycl_bench.quant.bits import FLOAT_GRAD_BITS, check_bits, check_grad_bits
from cycl_bench.quant.layers import BinaryConv2d

FLOAT_BITS = 32


@dataclass(frozen=True)
class LayerPrecision:
    """What a Conv2d/Linear layer really computes with (32 = float)."""

    weight_bits: int
    act_bits: int
    grad_bits: int


def switchable_layers(model: nn.Module) -> list[BinaryConv2d]:
    return [module for module in model.modules() if isinstance(module, BinaryConv2d)]


def set_precision(
    model: nn.Module,
    *,
    weight_bits: int | None = None,
    act_bits: int | None = None,
    grad_bits: int | None = None,
) -> None:
    """Set the bit widths of every switchable layer in place; None leaves a width as it is.

    weight_bits and act_bits: 1..8 (1 = binary); grad_bits: 2..32 (32 = no gradient
    quantization). Out-of-range values raise UserError before anything changes.
    """
    if weight_bits is not None:
        check_bits("weight_bits", weight_bits)
    if act_bits is not None:
        check_bits("act_bits", act_bits)
    if grad_bits is not None:
        check_grad_bits(grad_bits)
    for layer in switchable_layers(model):
        layer.set_bits(weight_bits, act_bits, grad_bits)


def get_precision(model: nn.Module) -> tuple[int, int, int]:
    """(weight_bits, act_bits, grad_bits) set on the switchable layers; (32, 32, 32) if none."""
    layers = switchable_layers(model)
    if not layers:
        return FLOAT_BITS, FLOAT_BITS, FLOAT_BITS
    configured = {layer.bits for layer in layers}
    if len(configured) > 1:
        raise RuntimeError(f"switchable layers disagree on their precision: {sorted(configured)}")
    return configured.pop()


@contextmanager
def precision(
    model: nn.Module, *, weight_bits: int, act_bits: int, grad_bits: int | None = None
) -> Iterator[nn.Module]:
    """Run the block at an explicit precision, then restore the previous one (even on error).

    For quantized inference wrap the block in `torch.no_grad()` (not `torch.inference_mode()`).
    """
    previous_weight, previous_act, previous_grad = get_precision(model)
    set_precision(model, weight_bits=weight_bits, act_bits=act_bits, grad_bits=grad_bits)
    try:
        yield model
    finally:
        if switchable_layers(model):
            set_precision(
                model,
                weight_bits=previous_weight,
                act_bits=previous_act,
                grad_bits=previous_grad,
            )


def _injected_bits(proxy: Any) -> int:  # a Brevitas quant proxy (the library is untyped)
    """Bit width a stock Brevitas proxy was injected with; 32 when it does not quantize."""
    if not proxy.is_quant_enabled:
        return FLOAT_BITS
    if "bit_width" in proxy.quant_injector:
        return int(proxy.quant_injector.bit_width)
    return int(proxy.bit_width())


def layer_precision(module: nn.Module) -> LayerPrecision | None:
    """The bits a Conv2d/Linear layer (Brevitas or torch) computes with; None for other modules.

    Switchable layers: 1 x 1 in cyclebnn mode whatever k, k_w x k_a in cpt mode. Fixed Brevitas
    layers: their injected bit widths (8 x 8 for the stem and classifier). Float layers: 32 x 32.
    Gradient bits are 32 unless the layer quantizes its output gradient.
    """
    if isinstance(module, BinaryConv2d):
        return LayerPrecision(*module.computed_bits())
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        return None
    if isinstance(module, QuantWeightBiasInputOutputLayer):
        return LayerPrecision(
            weight_bits=_injected_bits(module.weight_quant),
            act_bits=_injected_bits(module.input_quant),
            grad_bits=FLOAT_GRAD_BITS,
        )
    return LayerPrecision(FLOAT_BITS, FLOAT_BITS, FLOAT_BITS)


def scheduled_precision(module: nn.Module) -> LayerPrecision | None:
    """The bits the CPT/CycleBNN convention prices a layer at: a switchable layer at the k bits
    the schedule set on it (k x k forward, k x b_g input and weight gradients) whatever it
    really multiplies (1 x 1 in `cyclebnn` mode, after the sign); every other layer as
    `layer_precision` says (8-bit stem, projections and classifier, float layers at 32)."""
    if isinstance(module, BinaryConv2d):
        return LayerPrecision(*module.bits)
    return layer_precision(module)


@dataclass(frozen=True)
class StoredTensor:
    """One tensor a deployed model stores: `count` numbers of `bits` bits each."""

    name: str
    kind: str
    """binary weights, 8-bit weights (k-bit weights at other widths), float weights, weight
    scales, weight ranges, input ranges, parameters or running statistics"""
    count: int
    bits: int

    @property
    def bytes(self) -> int:
        """Bit-packed, rounded up to a whole byte per tensor."""
        return -(-self.count * self.bits // 8)


def _weight_kind(bits: int) -> str:
    if bits == 1:
        return "binary weights"
    return "float weights" if bits == FLOAT_BITS else f"{bits}-bit weights"


def _derived_weight_scales(module: nn.Module) -> int:
    """Numbers of the weight scale a Brevitas layer derives from its weights (statistics, not a
    parameter: Int8WeightPerChannelFloat's one scale per output channel); 0 when the weights
    are not quantized or their scale is a learned parameter (counted as one)."""
    proxy = getattr(module, "weight_quant", None)
    if isinstance(module, BinaryConv2d) or proxy is None or not proxy.is_quant_enabled:
        return 0  # a switchable layer's scales: `deployed_tensors`
    if any(True for _ in proxy.parameters()):
        return 0
    return int(proxy.scale().numel())


def deployed_tensors(model: nn.Module) -> list[StoredTensor]:
    """Everything the deployed model stores at the current bit widths, each tensor once.

    - Each Conv2d/Linear weight at the weight bits its layer computes with (`layer_precision`):
      1-bit weights bit-packed, the 8-bit stem, projections and classifier at 8 bits.
    - The scales of quantized weights that are derived from the weights rather than learned:
      Brevitas' Int8WeightPerChannelFloat, one float32 per output channel of each 8-bit layer.
    - A switchable layer computing at k > 1 bits (`cpt` mode above 1 bit): the float32 range
      (min, max) of each output channel's k-bit weights and the running range of its input.
      At 1 bit (and in `cyclebnn` mode at every k) the sign needs neither.
    - Every other parameter as float32, each once: BatchNorm affine, learned thresholds (RSign),
      the binary layers' per-channel output scales, learned input-quantizer scales, biases.
    - BatchNorm running mean and variance as float32.

    Not stored: bookkeeping buffers (bit widths, batch counters, constant zero points), and a
    switchable layer's weight gain (a positive per-channel factor, which the sign and the k-bit
    range absorb).
    """
    stored: list[StoredTensor] = []
    counted: set[int] = set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        precision_of_layer = layer_precision(module)
        if precision_of_layer is not None and module.weight is not None:
            bits = precision_of_layer.weight_bits
            stored.append(
                StoredTensor(f"{prefix}weight", _weight_kind(bits), module.weight.numel(), bits)
            )
            counted.add(id(module.weight))
            scales = _derived_weight_scales(module)
            if scales:
                stored.append(
                    StoredTensor(f"{prefix}weight scales", "weight scales", scales, FLOAT_BITS)
                )
        if isinstance(module, BinaryConv2d) and precision_of_layer is not None:  # never None
            if precision_of_layer.weight_bits > 1:  # (min, max) per output channel
                count = 2 * module.out_channels
                stored.append(
                    StoredTensor(f"{prefix}weight ranges", "weight ranges", count, FLOAT_BITS)
                )
            if precision_of_layer.act_bits > 1:  # running (min, max)
                stored.append(StoredTensor(f"{prefix}input range", "input ranges", 2, FLOAT_BITS))
        if (
            isinstance(module, nn.modules.batchnorm._BatchNorm)
            and module.running_mean is not None
            and module.running_var is not None  # tracked together
        ):
            count = module.running_mean.numel() + module.running_var.numel()
            stored.append(
                StoredTensor(f"{prefix}running statistics", "running statistics", count, FLOAT_BITS)
            )
    for name, parameter in model.named_parameters():
        if id(parameter) not in counted:
            counted.add(id(parameter))
            stored.append(StoredTensor(name, "parameters", parameter.numel(), FLOAT_BITS))
    return stored


def model_size_bytes(model: nn.Module) -> int:
    """Deployed size at the current bit widths: the bytes of every tensor `deployed_tensors`
    lists (weights bit-packed at their bits, per tensor rounded up to a whole byte; scales,
    ranges, other parameters and BatchNorm statistics as float32)."""
    return sum(tensor.bytes for tensor in deployed_tensors(model))


__all__ = [
    "LayerPrecision",
    "StoredTensor",
    "deployed_tensors",
    "get_precision",
    "layer_precision",
    "model_size_bytes",
    "precision",
    "scheduled_precision",
    "set_precision",
    "switchable_layers",
]
