"""Pieces every backbone shares: the layer kit (binary or float), residual units, the base class.

A binary backbone and its float reference are the same network built from a different kit:
`LayerKit.binary(...)` gives an 8-bit stem and classifier around switchable `BinaryConv2d`
layers; `LayerKit.floating()` gives torch `Conv2d`/`Linear`. Residual networks are built from
`ResidualUnit`s: in the binary kit a Bi-Real unit (a learned threshold before the sign, the
binary convolution, BatchNorm, added to a real-valued shortcut, nothing clipping the sum), in the
float kit the same unit with ReLU after the sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.quant.layers import BinaryConv2d, fixed_quant_conv2d, fixed_quant_linear
from cycl_bench.quant.quantizers import check_precision_mode

CIFAR_RESOLUTION = 32


@dataclass(frozen=True)
class LayerKit:
    """Builds the layers of one network flavour: binary (switchable) or float."""

    is_binary: bool
    precision_mode: str = "cyclebnn"

    @classmethod
    def binary(cls, precision_mode: str) -> LayerKit:
        return cls(is_binary=True, precision_mode=check_precision_mode(precision_mode))

    @classmethod
    def floating(cls) -> LayerKit:
        return cls(is_binary=False)

    def stem(self, in_channels: int, out_channels: int, stride: int) -> nn.Conv2d:
        if self.is_binary:
            return fixed_quant_conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)

    def conv(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
    ) -> nn.Conv2d:
        padding = kernel_size // 2
        if self.is_binary:
            return BinaryConv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                precision_mode=self.precision_mode,
            )
        return nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )

    def projection(self, in_channels: int, out_channels: int) -> nn.Conv2d:
        """1x1 convolution of a shortcut that changes the channel count: 8-bit in binary
        networks (like the stem: real-valued information must cross it), float otherwise."""
        if self.is_binary:
            return fixed_quant_conv2d(in_channels, out_channels, 1)
        return nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def classifier(self, in_features: int, num_classes: int) -> nn.Linear:
        if self.is_binary:
            return fixed_quant_linear(in_features, num_classes)
        return nn.Linear(in_features, num_classes, bias=False)

    def activation(self) -> nn.Module:
        """After a plain conv/BN (no shortcut): Hardtanh in binary networks, ReLU in float."""
        return nn.Hardtanh() if self.is_binary else nn.ReLU()

    def residual_activation(self) -> nn.Module:
        """After a residual sum: none in binary networks (Bi-Real: a clipped sum stops the
        gradient of every saturated value, and the next convolution takes the sign anyway),
        ReLU in float ones."""
        return nn.Identity() if self.is_binary else nn.ReLU()

    def threshold(self, channels: int) -> nn.Module:
        """A learned per-channel threshold subtracted before a binary convolution's sign
        (ReActNet's RSign); float convolutions need none."""
        return LearnableShift(channels) if self.is_binary else nn.Identity()


class LearnableShift(nn.Module):
    """Adds a learned per-channel offset (RSign thresholds, RPReLU shifts)."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class Shortcut(nn.Module):
    """Real-valued shortcut (Bi-Real Net): average pooling when the unit downsamples, and a
    1x1 projection with BatchNorm when it changes the channel count (8-bit in binary networks).

    A parameter-free shortcut that zero-pads the new channels leaves them to the binary branch
    alone; the projection carries real-valued information into them (measured on tiny_bnn:
    75% instead of 55% held-out accuracy on the pretraining corpus after 500 steps,
    docs/precision_and_backbones.md)."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.projection = (
            nn.Sequential(kit.projection(in_channels, out_channels), nn.BatchNorm2d(out_channels))
            if out_channels != in_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.pool(x))


class ResidualUnit(nn.Module):
    """threshold -> 3x3 conv -> BatchNorm, plus a parameter-free shortcut, then the kit's
    residual activation."""

    def __init__(self, kit: LayerKit, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.threshold = kit.threshold(in_channels)
        self.conv = kit.conv(in_channels, out_channels, 3, stride=stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.shortcut = Shortcut(kit, in_channels, out_channels, stride)
        self.act = kit.residual_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.threshold(x))) + self.shortcut(x))


def stem_stride(image_size: int, resolution: int = CIFAR_RESOLUTION) -> int:
    """Stride of the stem: 2 for inputs of twice `resolution` or more, else 1."""
    return 2 if image_size >= 2 * resolution else 1


class StemPool(nn.Module):
    """Max-pools what the strided stem left above `resolution` (e.g. 128 -> 64 -> 32)."""

    def __init__(self, image_size: int, resolution: int = CIFAR_RESOLUTION):
        super().__init__()
        factor = max(1, image_size // (resolution * stem_stride(image_size, resolution)))
        self.pool = nn.MaxPool2d(factor) if factor > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class Stem(nn.Module):
    """First convolution (8-bit in binary networks), BatchNorm, activation, size reduction to
    about `resolution` pixels. `activation` defaults to the kit's."""

    def __init__(
        self,
        kit: LayerKit,
        in_channels: int,
        out_channels: int,
        image_size: int,
        *,
        resolution: int = CIFAR_RESOLUTION,
        activation: nn.Module | None = None,
    ):
        super().__init__()
        stride = stem_stride(image_size, resolution)
        self.conv = kit.stem(in_channels, out_channels, stride=stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = activation if activation is not None else kit.activation()
        self.pool = StemPool(image_size, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class Backbone(nn.Module):
    """Contract: `features(x) -> (N, D)`, a bias-free `classifier`, forward = both."""

    classifier: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        return self.classifier.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def scaled_channels(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def check_backbone_args(
    *, num_classes: int, in_channels: int, width: float, image_size: int
) -> None:
    """UserError for arguments no backbone can be built with."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes={num_classes!r} is invalid: use a positive integer")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise UserError(f"in_channels={in_channels!r} is invalid: use a positive integer")
    if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
        raise UserError(f"width={width!r} is invalid: use a positive multiplier such as 1.0")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise UserError(f"image_size={image_size!r} is invalid: use an integer of at least 8")


def make_kit(binary: bool, precision_mode: str) -> LayerKit:
    """The kit for a registered constructor; float references still validate precision_mode."""
    check_precision_mode(precision_mode)
    return LayerKit.binary(precision_mode) if binary else LayerKit.floating()


def registered_constructor(network, *, binary: bool, doc: str):
    """The keyword-only constructor every backbone registers: arguments checked, then
    `network(kit, num_classes=..., in_channels=..., width=..., image_size=...)`."""

    def construct(
        *,
        num_classes: int,
        in_channels: int = 3,
        width: float = 1.0,
        image_size: int = 32,
        precision_mode: str = "cyclebnn",
    ) -> nn.Module:
        arguments = dict(
            num_classes=num_classes, in_channels=in_channels, width=width, image_size=image_size
        )
        check_backbone_args(**arguments)
        return network(make_kit(binary, precision_mode), **arguments)

    construct.__doc__ = doc
    return construct
