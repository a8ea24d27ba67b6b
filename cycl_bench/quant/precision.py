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


def _injected_bits(proxy: nn.Module) -> int:
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


def model_size_bytes(model: nn.Module) -> int:
    """Deployed size at the current bit widths.

    Each Conv2d/Linear weight at its layer's weight bits (rounded up to whole bytes per tensor);
    every other parameter (BatchNorm affine, output scales, thresholds, quantizer scales) and
    BatchNorm running statistics as float32. Bookkeeping buffers (bit widths, range trackers,
    counters) are not deployed and not counted.
    """
    float_bytes = 4
    counted: set[int] = set()
    total = 0
    for module in model.modules():
        precision_of_layer = layer_precision(module)
        if precision_of_layer is not None and module.weight is not None:
            total += -(-module.weight.numel() * precision_of_layer.weight_bits // 8)
            counted.add(id(module.weight))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            total += (module.running_mean.numel() + module.running_var.numel()) * float_bytes
    for parameter in model.parameters():
        if id(parameter) not in counted:
            total += parameter.numel() * float_bytes
    return total


__all__ = [
    "LayerPrecision",
    "get_precision",
    "layer_precision",
    "model_size_bytes",
    "precision",
    "set_precision",
    "switchable_layers",
]
