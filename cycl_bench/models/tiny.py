"""tiny_bnn / tiny_fp: a few convolutions, for CPU smoke runs and quick starts."""

from __future__ import annotations

import torch
from torch import nn

from cycl_bench.models.common import (
    Backbone,
    LayerKit,
    Stem,
    registered_constructor,
    scaled_channels,
)
from cycl_bench.registry import BACKBONES

# Building blocks


class ConvBnAct(nn.Module):
    """Convolution, BatchNorm, activation."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = kit.conv(in_channels, out_channels, 3, stride=stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = kit.activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


# The network


class TinyNet(Backbone):
    """Stem (16), then three switchable 3x3 convolutions (32 s2, 64 s2, 64), global pooling."""

    def __init__(
        self, kit: LayerKit, *, num_classes: int, in_channels: int, width: float, image_size: int
    ):
        super().__init__()
        stem_width, mid_width, out_width = (scaled_channels(c, width) for c in (16, 32, 64))
        self.stem = Stem(kit, in_channels, stem_width, image_size)
        self.body = nn.Sequential(
            ConvBnAct(kit, stem_width, mid_width, stride=2),
            ConvBnAct(kit, mid_width, out_width, stride=2),
            ConvBnAct(kit, out_width, out_width, stride=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = kit.classifier(out_width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(self.stem(x))).flatten(1)


# Registered constructors


BACKBONES.register("tiny_bnn")(
    registered_constructor(
        TinyNet,
        binary=True,
        doc="Tiny binary CNN (3 binary convs, 8-bit stem/classifier) for CPU smoke runs.",
    )
)

BACKBONES.register("tiny_fp")(
    registered_constructor(
        TinyNet,
        binary=False,
        doc="Float reference of tiny_bnn (same topology, float convs, ReLU).",
    )
)
