"""reactnet_bnn / reactnet_fp: a compact ReActNet (MobileNet-like, Bi-Real shortcuts).

Each block is a 3x3 binary convolution and a 1x1 binary convolution, each with its own
real-valued shortcut. RSign: a learned per-channel threshold subtracted before the sign (the sign
itself is taken by the convolution's input quantizer). RPReLU: per-channel shifts around a PReLU.
A block that doubles the channels runs two 1x1 convolutions and concatenates them, each with the
block input as shortcut, as ReActNet does.
"""

from __future__ import annotations

import torch
from torch import nn

from cycl_bench.models.common import (
    Backbone,
    LayerKit,
    LearnableShift,
    Stem,
    register_backbone,
    scaled_channels,
)

# Building blocks


class RPReLU(nn.Module):
    """ReActNet's shifted PReLU: shift, PReLU (per channel), shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift_in = LearnableShift(channels)
        self.prelu = nn.PReLU(channels, init=0.25)
        self.shift_out = LearnableShift(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift_out(self.prelu(self.shift_in(x)))


class ReActBlock(nn.Module):
    """RSign -> 3x3 conv -> BN (+ shortcut) -> RPReLU -> RSign -> 1x1 conv(s) -> BN (+ shortcut)."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels not in (in_channels, 2 * in_channels):
            raise ValueError("a ReActNet block keeps or doubles its channels")
        self.rsign_3x3 = LearnableShift(in_channels)
        self.conv_3x3 = kit.conv(in_channels, in_channels, 3, stride=stride)
        self.bn_3x3 = nn.BatchNorm2d(in_channels)
        self.shortcut_3x3 = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.act_3x3 = RPReLU(in_channels)
        self.rsign_1x1 = LearnableShift(in_channels)
        copies = out_channels // in_channels
        self.convs_1x1 = nn.ModuleList(kit.conv(in_channels, in_channels, 1) for _ in range(copies))
        self.bns_1x1 = nn.ModuleList(nn.BatchNorm2d(in_channels) for _ in range(copies))
        self.act_1x1 = RPReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_3x3(self.conv_3x3(self.rsign_3x3(x))) + self.shortcut_3x3(x)
        out = self.act_3x3(out)
        signed = self.rsign_1x1(out)
        halves = [
            bn(conv(signed)) + out for conv, bn in zip(self.convs_1x1, self.bns_1x1, strict=True)
        ]
        return self.act_1x1(torch.cat(halves, dim=1))

    def reads_sign_only(self) -> bool:
        """No: the 3x3 convolution's shortcut adds the input's value."""
        return False


# The network

# (output channels as a multiple of the stem width, stride)
COMPACT_PLAN = ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1))


class ReActNet(Backbone):
    def __init__(
        self, kit: LayerKit, *, num_classes: int, in_channels: int, width: float, image_size: int
    ):
        super().__init__()
        base = scaled_channels(32, width)
        self.stem = Stem(kit, in_channels, base, image_size)
        blocks = []
        channels = base
        for multiple, stride in COMPACT_PLAN:
            blocks.append(ReActBlock(kit, channels, base * multiple, stride))
            channels = base * multiple
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = kit.classifier(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x))).flatten(1)

    def feature_stages(self) -> list[nn.Module]:
        return [self.stem, *self.blocks]


# Registered constructors


register_backbone(
    "reactnet_bnn",
    ReActNet,
    binary=True,
    doc="Compact ReActNet: binary convs, RSign thresholds, RPReLU, 8-bit stem/classifier.",
)

register_backbone(
    "reactnet_fp",
    ReActNet,
    binary=False,
    doc="Float reference of reactnet_bnn (same topology, float convs).",
)
