"""vgg_small_bnn / vgg_small_fp: the CIFAR VGG-Small (LQ-Nets, XNOR-Net style BNN ordering).

Six 3x3 convolutions (c, c, 2c, 2c, 4c, 4c with c = 128): the first is the 8-bit stem, the other
five are switchable binary convolutions, max pooling after every second one; global average
pooling gives the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from cycl_bench.models.common import (
    Backbone,
    LayerKit,
    Stem,
    reads_only_signs_at_one_bit,
    register_backbone,
    scaled_channels,
)

# Building blocks


class VggUnit(nn.Module):
    """conv -> (max pool) -> BatchNorm -> activation."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.conv = kit.conv(in_channels, out_channels, 3)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = kit.activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pool(self.conv(x))))

    def reads_sign_only(self) -> bool:
        """Yes in the binary network at 1-bit activations: the convolution alone reads the
        input, and it takes its sign."""
        return reads_only_signs_at_one_bit(self.conv)


# The network


class VggSmall(Backbone):
    def __init__(
        self, kit: LayerKit, *, num_classes: int, in_channels: int, width: float, image_size: int
    ):
        super().__init__()
        c = scaled_channels(128, width)
        self.stem = Stem(kit, in_channels, c, image_size)
        self.body = nn.Sequential(
            VggUnit(kit, c, c, pool=True),
            VggUnit(kit, c, 2 * c, pool=False),
            VggUnit(kit, 2 * c, 2 * c, pool=True),
            VggUnit(kit, 2 * c, 4 * c, pool=False),
            VggUnit(kit, 4 * c, 4 * c, pool=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = kit.classifier(4 * c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(self.stem(x))).flatten(1)

    def feature_stages(self) -> list[nn.Module]:
        return [self.stem, *self.body]


# Registered constructors


register_backbone(
    "vgg_small_bnn",
    VggSmall,
    binary=True,
    doc="CIFAR VGG-Small, five binary convs, 8-bit stem/classifier.",
)

register_backbone(
    "vgg_small_fp",
    VggSmall,
    binary=False,
    doc="Float reference of vgg_small_bnn (same topology, float convs, ReLU).",
)
