"""resnet18_bnn / resnet18_fp: CIFAR-style ResNet-18 with binary convs and real-valued shortcuts.

Bi-Real style: every 3x3 convolution has its own shortcut, so the real-valued signal flows past
each binary convolution. Shortcuts are parameter-free (average pooling and zero-padded channels),
so every convolution between the 8-bit stem and classifier is switchable.
"""

from __future__ import annotations

import torch
from torch import nn

from cycl_bench.models.common import (
    Backbone,
    LayerKit,
    Shortcut,
    Stem,
    check_backbone_args,
    make_kit,
    scaled_channels,
)
from cycl_bench.registry import BACKBONES

# Building blocks


class ConvUnit(nn.Module):
    """conv -> BatchNorm, added to its own shortcut, then the activation."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = kit.conv(in_channels, out_channels, 3, stride=stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.shortcut = Shortcut(in_channels, out_channels, stride)
        self.act = kit.activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)) + self.shortcut(x))


class BasicBlock(nn.Sequential):
    """Two 3x3 units; the first may downsample and widen."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, stride: int):
        super().__init__(
            ConvUnit(kit, in_channels, out_channels, stride),
            ConvUnit(kit, out_channels, out_channels, 1),
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
        self.stem = Stem(kit, in_channels, base, image_size)
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


# Registered constructors


def _resnet18(binary: bool, **kwargs) -> ResNet:
    precision_mode = kwargs.pop("precision_mode")
    check_backbone_args(**kwargs)
    return ResNet(make_kit(binary, precision_mode), blocks_per_stage=(2, 2, 2, 2), **kwargs)


@BACKBONES.register("resnet18_bnn")
def resnet18_bnn(
    *,
    num_classes: int,
    in_channels: int = 3,
    width: float = 1.0,
    image_size: int = 32,
    precision_mode: str = "cyclebnn",
) -> ResNet:
    """CIFAR-style ResNet-18, binary convs, real-valued shortcuts, 8-bit stem/classifier."""
    return _resnet18(
        True,
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        image_size=image_size,
        precision_mode=precision_mode,
    )


@BACKBONES.register("resnet18_fp")
def resnet18_fp(
    *,
    num_classes: int,
    in_channels: int = 3,
    width: float = 1.0,
    image_size: int = 32,
    precision_mode: str = "cyclebnn",
) -> ResNet:
    """Float reference of resnet18_bnn (same topology, float convs, ReLU)."""
    return _resnet18(
        False,
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        image_size=image_size,
        precision_mode=precision_mode,
    )
