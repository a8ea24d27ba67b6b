"""Pieces every backbone shares: the layer kit (binary or float), residual units, the base class.

A binary backbone and its float reference are the same network built from a different kit:
`LayerKit.binary(...)` gives an 8-bit stem and classifier around switchable `BinaryConv2d`
layers; `LayerKit.floating()` gives torch `Conv2d`/`Linear`. Residual networks are built from
`ResidualUnit`s: in the binary kit a Bi-Real unit (a learned threshold before the sign, the
binary convolution, BatchNorm, added to a real-valued shortcut, nothing clipping the sum), in the
float kit the same unit with ReLU after the sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch import nn

from cycl_bench.errors import UserError
from cycl_bench.params import MAX_IMAGE_SIZE, Params, check
from cycl_bench.quant.layers import BinaryConv2d, fixed_quant_conv2d, fixed_quant_linear
from cycl_bench.quant.quantizers import PrecisionMode, check_precision_mode
from cycl_bench.registry import BACKBONES

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

    def reads_sign_only(self) -> bool:
        """No: the real-valued shortcut adds the input's value."""
        return False


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

    def reads_sign_only(self) -> bool:
        """No: the first convolution reads the image at 8 bits (or in float)."""
        return False


@dataclass(frozen=True)
class LatentSplit:
    """A backbone cut at a latent layer: `features(x) == backbone.pooled(upper(lower(x)))`.

    `lower` holds the stages before the latent layer, `upper` the stages from it on; both are
    views of the backbone's own modules (nothing is copied or renamed: the state dict is the
    backbone's). `binary_input`: the first upper stage reads only the sign of its input, so a
    latent activation can be stored as its sign, one bit per value, without changing anything
    the upper part computes.
    """

    index: int
    lower: nn.Sequential
    upper: nn.Sequential
    binary_input: bool


class Backbone(nn.Module):
    """Contract: `features(x) -> (N, D)`, a bias-free `classifier`, forward = both.

    `feature_stages()` lists what `features` applies in order before pooling (the stem, then
    each residual unit, VGG unit or ReAct block), and `split(k)` cuts the backbone in front of
    stage k (the latent layer of latent replay).
    """

    classifier: nn.Linear
    pool: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def feature_stages(self) -> list[nn.Module]:
        raise NotImplementedError

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding of the last stage's output: global pooling, flattened to (N, D)."""
        return self.pool(x).flatten(1)

    def split(self, latent_layer: int) -> LatentSplit:
        """Cut in front of stage `latent_layer` (1 .. stages-1; negative counts from the end:
        -1 = the last stage alone is upper). A UserError names the valid range."""
        stages = self.feature_stages()
        count = len(stages)
        index = latent_layer + count if latent_layer < 0 else latent_layer
        if isinstance(latent_layer, bool) or not 1 <= index < count:
            raise UserError(
                f"latent_layer={latent_layer!r} is not a stage boundary of this backbone: it has "
                f"{count} stages (the stem, then {count - 1} units); use 1 to {count - 1} or "
                f"-1 to -{count - 1}"
            )
        return LatentSplit(
            index=index,
            lower=nn.Sequential(*stages[:index]),
            upper=nn.Sequential(*stages[index:]),
            binary_input=reads_sign_only(stages[index]),
        )


def reads_sign_only(stage: nn.Module) -> bool:
    """Whether a stage's output depends on its input only through the input's sign (the
    stage says so with a `reads_sign_only()` method; a stage that does not say, does not)."""
    reader = getattr(stage, "reads_sign_only", None)
    return bool(reader()) if callable(reader) else False


def reads_only_signs_at_one_bit(layer: nn.Module) -> bool:
    """A binary convolution at 1-bit activations reads only the sign of its input (training
    adds a per-sample scaling, which keeps the sign); at k > 1 bits its range tracking and
    gradient see the values, and a float convolution reads them."""
    return isinstance(layer, BinaryConv2d) and layer.bits[1] == 1


def scaled_channels(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class BackboneParams(Params):
    """What every registered backbone is built with (`BACKBONES.build(name, **arguments)`)."""

    num_classes: int = Field(ge=1)
    """classes of the output layer"""
    in_channels: int = Field(3, ge=1)
    """channels of the input images"""
    width: float = Field(1.0, gt=0)
    """multiplies every channel count"""
    image_size: int = Field(32, ge=8, le=MAX_IMAGE_SIZE)
    """side of the square input images"""
    precision_mode: PrecisionMode = "cyclebnn"
    """cyclebnn: k-bit quantization before the sign (1x1-bit convolutions); cpt: k x k bits"""


def register_backbone(
    name: str, network: Callable[..., Backbone], *, binary: bool, doc: str
) -> None:
    """Register `network(kit, num_classes=..., in_channels=..., width=..., image_size=...)` under
    `name`, with a keyword-only constructor that checks its arguments (`BackboneParams`)."""

    def construct(**arguments: Any) -> Backbone:
        params = check(BackboneParams, arguments, owner=name, kind="backbone argument")
        kit = LayerKit.binary(params.precision_mode) if binary else LayerKit.floating()
        return network(kit, **params.model_dump(exclude={"precision_mode"}))

    construct.__doc__ = doc
    BACKBONES.register(name, params=BackboneParams)(construct)
