"""The deployed size of a model: its weights at the bits they compute with, against FP32.

`packed_bytes` is `model_size_bytes` (the figure every results file records): each Conv2d/Linear
weight at its layer's weight bits, so 1-bit weights bit-packed (8 per byte, per tensor rounded
up to a whole byte) and the 8-bit stem, projections and head at 8 bits; every other parameter
and the BatchNorm running statistics as float32. `fp32_bytes` prices the same numbers at 32
bits. Parameters are counted by the bits their deployed form takes: 1 (binary weights), 8, 32.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cycl_bench.quant.precision import FLOAT_BITS, layer_precision, model_size_bytes

FLOAT_BYTES = 4


@dataclass(frozen=True)
class DeployedSize:
    packed_bytes: int
    fp32_bytes: int
    parameters_by_bits: dict[int, int]

    @property
    def binary_parameters(self) -> int:
        return self.parameters_by_bits.get(1, 0)

    @property
    def higher_precision_parameters(self) -> int:
        return sum(n for bits, n in self.parameters_by_bits.items() if bits > 1)

    @property
    def compression(self) -> float:
        return self.fp32_bytes / self.packed_bytes


def deployed_size(model: nn.Module) -> DeployedSize:
    by_bits: dict[int, int] = {}
    counted: set[int] = set()
    running_statistics = 0
    for module in model.modules():
        precision = layer_precision(module)
        if precision is not None and module.weight is not None:
            bits = precision.weight_bits
            by_bits[bits] = by_bits.get(bits, 0) + module.weight.numel()
            counted.add(id(module.weight))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            running_statistics += module.running_mean.numel() + module.running_var.numel()
    for parameter in model.parameters():
        if id(parameter) not in counted:
            by_bits[FLOAT_BITS] = by_bits.get(FLOAT_BITS, 0) + parameter.numel()
    total_parameters = sum(by_bits.values())
    return DeployedSize(
        packed_bytes=model_size_bytes(model),
        fp32_bytes=(total_parameters + running_statistics) * FLOAT_BYTES,
        parameters_by_bits=dict(sorted(by_bits.items())),
    )
