"""resnet18_bnn / resnet18_fp: CIFAR-style ResNet-18 built from Bi-Real residual units.

Every 3x3 convolution has its own real-valued shortcut (`ResidualUnit`): in the binary network a
learned threshold, the binary convolution and BatchNorm are added to the shortcut and nothing
clips the sum, so the real-valued signal flows past each binary convolution; a stage that
widens projects its shortcut with an 8-bit 1x1 convolution. The stem and classifier are 8-bit.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cycl_bench.models.common import (
    Backbone,
    LayerKit,
    ResidualUnit,
    Stem,
    register_backbone,
    scaled_channels,
)

# Building blocks


class BasicBlock(nn.Sequential):
    """Two 3x3 units; the first may downsample and widen."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, stride: int):
        super().__init__(
            ResidualUnit(kit, in_channels, out_channels, stride),
            ResidualUnit(kit, out_channels, out_channels, 1),
        )


# The network


class ResNet(Backbone):
    """Stem, four stages of BasicBlocks (widths c, 2c, 4c, 8c), global average pooling."""

    def __init__(
        self,
        kit: LayerKit,
        *,
        blocks_per_stage: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        width: float,
        image_size: int,
    ):
        super().__init__()
        base = scaled_channels(64, width)
        self.stem = Stem(kit, in_channels, base, image_size, activation=nn.ReLU())
        stages = []
        channels = base
        for index, num_blocks in enumerate(blocks_per_stage):
            out_channels = base * 2**index
            for block in range(num_blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock(kit, channels, out_channels, stride))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = kit.classifier(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def feature_stages(self) -> list[nn.Module]:
        """The stem, then each residual unit (two per BasicBlock)."""
        return [self.stem, *(unit for block in self.stages for unit in block.children())]


# Registered constructors


register_backbone(
    "resnet18_bnn",
    partial(ResNet, blocks_per_stage=(2, 2, 2, 2)),
    binary=True,
    doc="CIFAR-style Bi-Real ResNet-18: binary convs, real shortcuts, 8-bit stem/classifier.",
)

register_backbone(
    "resnet18_fp",
    partial(ResNet, blocks_per_stage=(2, 2, 2, 2)),
    binary=False,
    doc="Float reference of resnet18_bnn (same topology, float convs, ReLU).",
)
