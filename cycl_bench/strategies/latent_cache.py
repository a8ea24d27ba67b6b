"""Latent cache: a frozen backbone's features, computed once per experience instead of per epoch.

After the first experience the CWR* family trains only the head, so the backbone maps each
training sample to the same feature vector in every epoch (given a deterministic train
transform). The cache encodes the experience once, at the precision the head reads its input
(float32, or k-bit fixed-point integers plus one scale: int8 for the hybrid-quantized head, a
quarter of the float size), and swaps the experience's dataset for the cached one before
Avalanche builds the data loader. The loader draws the same shuffled order as it would over the
images, and `LatentCacheForward` sends the cached features straight to the head, so training on
the cache gives the same result as training through the backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute
from avalanche.core import SupervisedPlugin
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cycl_bench.strategies.protocol import TemplateMixinBase

if TYPE_CHECKING:  # models and strategies are one layer: the contract, not the import
    from avalanche.training.templates import SupervisedTemplate

    from cycl_bench.models.common import Backbone


@dataclass(frozen=True)
class FeatureCodec:
    """How the head reads its input: float32 (bits None) or integers n with x = n * scale."""

    bits: int | None = None
    scale: float | None = None

    @property
    def dtype(self) -> torch.dtype:
        if self.bits is None:
            return torch.float32
        return torch.int8 if self.bits <= 8 else torch.int16 if self.bits <= 16 else torch.int32

    def _scale(self) -> float:
        if self.scale is None:
            raise ValueError(f"a {self.bits}-bit feature codec needs a scale")
        return self.scale

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return features.float()
        largest_level = 2 ** (self.bits - 1) - 1
        levels = torch.round(features / self._scale()).clamp_(-largest_level, largest_level)
        return levels.to(self.dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return codes
        return codes.float() * self._scale()


def cpu_rng_untouched() -> AbstractContextManager[None]:
    """Run a block without moving the global torch RNG (the training shuffle order stays put)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    return torch.random.fork_rng(devices=devices)


@torch.no_grad()
def encode_dataset(
    model: Backbone,
    dataset: Dataset[Any],
    codec: FeatureCodec,
    device: str | torch.device,
    batch_size: int = 256,
) -> torch.Tensor:
    """`model.features` of every sample of `dataset`, in dataset order, encoded by `codec`."""
    modes = {name: module.training for name, module in model.named_modules()}
    model.eval()
    chunks = []
    try:
        with cpu_rng_untouched():
            collate = getattr(dataset, "collate_fn", None)
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
            for batch in loader:
                features = model.features(batch[0].to(device))
                chunks.append(codec.encode(features).cpu())
    finally:
        for name, module in model.named_modules():
            module.training = modes[name]  # not train(): it recurses, n^2 calls on a ResNet
    return torch.cat(chunks)


def cached_dataset(codes: torch.Tensor, original: AvalancheDataset) -> AvalancheDataset:
    """An Avalanche dataset of (code, target, task label) with the original's targets and tasks,
    so Avalanche's loaders split and shuffle it exactly like the original."""
    targets = torch.as_tensor(list(original.targets), dtype=torch.long)
    task_labels = list(original.targets_task_labels)
    return AvalancheDataset(
        [TensorDataset(codes, targets)],
        data_attributes=[
            DataAttribute(targets.tolist(), "targets"),
            DataAttribute(task_labels, "targets_task_labels", use_in_getitem=True),
        ],
    )


class LatentCache(SupervisedPlugin):
    """Caches the frozen backbone's features of each experience after the first.

    `codec_for_experience` gives the encoding when an experience starts (the hybrid-quantized
    head only knows its feature scale after the first experience calibrated it).
    """

    def __init__(
        self,
        model: Backbone,
        head: nn.Module,
        codec_for_experience: Callable[[], FeatureCodec],
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.codec_for_experience = codec_for_experience
        self.device = device
        self.batch_size = batch_size
        self.active = False
        self.codec = FeatureCodec()
        self.encoded_samples = 0
        self.cache_bytes = 0

    def after_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.active = False
        self.encoded_samples = 0
        self.cache_bytes = 0
        if strategy.clock.train_exp_counter == 0:
            return  # the first experience trains the backbone: nothing is frozen yet
        self.codec = self.codec_for_experience()
        original = strategy.adapted_dataset
        codes = encode_dataset(self.model, original, self.codec, self.device, self.batch_size)
        strategy.adapted_dataset = cached_dataset(codes, original)
        self.encoded_samples = len(codes)
        self.cache_bytes = codes.numel() * codes.element_size()
        self.active = True

    # `active` stays set after the experience, until the next one is adapted: plugins that ask
    # after it (BatchNorm recalibration skips a cached experience) get the same answer in any
    # order; the forward pass reads it only while training.

    def head_forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.head(self.codec.decode(codes))


class LatentCacheForward(TemplateMixinBase):
    """Strategy mixin: while training on cached features, the forward pass is the head alone."""

    latent_cache: LatentCache | None = None

    def forward(self) -> torch.Tensor:
        cache = self.latent_cache
        if cache is not None and cache.active and self.is_training:
            return cache.head_forward(self.mb_x)
        return super().forward()
