"""The deployed size of a model, against FP32: a report of what
`cycl_bench.quant.precision.deployed_tensors` lists (the one definition of what a deployed model
stores, which `model_size_bytes`, the figure every results file records, sums up).

`packed_bytes` is `model_size_bytes`: each Conv2d/Linear weight at the bits its layer computes
with (1-bit weights bit-packed, 8 per byte, per tensor rounded up to a whole byte; the 8-bit stem,
projections and head at 8 bits), their per-channel weight scales, every other parameter and the
BatchNorm running statistics as float32. `fp32_bytes` prices the same numbers at 32 bits.
`numbers_by_bits` counts the stored numbers by the bits their deployed form takes (1, 8, 32);
`bytes_by_kind` splits `packed_bytes` by what is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cycl_bench.quant.precision import (
    FLOAT_BITS,
    StoredTensor,
    deployed_tensors,
    model_size_bytes,
)

FLOAT_BYTES = FLOAT_BITS // 8
# how the report orders what is stored besides the weights (which come first, by their bits)
OTHER_KINDS = (
    "weight scales",
    "weight ranges",
    "input ranges",
    "parameters",
    "running statistics",
)


@dataclass(frozen=True)
class DeployedSize:
    packed_bytes: int
    fp32_bytes: int
    numbers_by_bits: dict[int, int]
    bytes_by_kind: dict[str, int]

    @property
    def binary_numbers(self) -> int:
        return self.numbers_by_bits.get(1, 0)

    @property
    def higher_precision_numbers(self) -> int:
        return sum(n for bits, n in self.numbers_by_bits.items() if bits > 1)

    @property
    def compression(self) -> float:
        return self.fp32_bytes / self.packed_bytes


def deployed_size(model: nn.Module) -> DeployedSize:
    def order(tensor: StoredTensor) -> tuple[int, int]:
        if tensor.kind in OTHER_KINDS:
            return 1, OTHER_KINDS.index(tensor.kind)
        return 0, tensor.bits

    tensors = sorted(deployed_tensors(model), key=order)
    by_bits: dict[int, int] = {}
    by_kind: dict[str, int] = {}
    for tensor in tensors:
        by_bits[tensor.bits] = by_bits.get(tensor.bits, 0) + tensor.count
        by_kind[tensor.kind] = by_kind.get(tensor.kind, 0) + tensor.bytes
    return DeployedSize(
        packed_bytes=model_size_bytes(model),  # the sum of the same tensors' bytes
        fp32_bytes=sum(tensor.count for tensor in tensors) * FLOAT_BYTES,
        numbers_by_bits=dict(sorted(by_bits.items())),
        bytes_by_kind=by_kind,
    )
