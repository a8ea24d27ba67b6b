"""tiny_bnn / tiny_fp: a small Bi-Real network, for CPU smoke runs and quick starts.

An 8-bit stem brings the image to 16x16 pixels; four residual units follow (32 s2, 64, 64 s2,
128 channels), each a learned threshold, a binary 3x3 convolution and BatchNorm added to a
real-valued shortcut (an 8-bit 1x1 projection where the width grows). What it takes for such a
network to learn in a CPU budget was measured (docs/precision_and_backbones.md): real-valued
shortcuts with nothing clipping the sum, projected where the width grows, a ReLU stem,
thresholds so that the binary convolutions see more than the sign of a non-negative input.
"""

from __future__ import annotations

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

STEM_RESOLUTION = 16
# (output channels, stride) of each residual unit
PLAN = ((32, 2), (64, 1), (64, 2), (128, 1))


class TinyNet(Backbone):
    """8-bit stem (32 channels, to 16x16), four residual units, global average pooling."""

    def __init__(
        self, kit: LayerKit, *, num_classes: int, in_channels: int, width: float, image_size: int
    ):
        super().__init__()
        stem_width = scaled_channels(32, width)
        self.stem = Stem(
            kit,
            in_channels,
            stem_width,
            image_size,
            resolution=STEM_RESOLUTION,
            activation=nn.ReLU(),
        )
        units, channels = [], stem_width
        for out_channels, stride in PLAN:
            out_channels = scaled_channels(out_channels, width)
            units.append(ResidualUnit(kit, channels, out_channels, stride))
            channels = out_channels
        self.body = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = kit.classifier(channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(self.stem(x))).flatten(1)

    def feature_stages(self) -> list[nn.Module]:
        return [self.stem, *self.body]


register_backbone(
    "tiny_bnn",
    TinyNet,
    binary=True,
    doc="Tiny Bi-Real network (4 binary convs, real shortcuts, 8-bit stem/head), for CPU.",
)

register_backbone(
    "tiny_fp",
    TinyNet,
    binary=False,
    doc="Float reference of tiny_bnn (same topology, float convs, ReLU after each sum).",
)
