"""Image transforms shared by every stream.

Deterministic by default (to float tensor, normalized), so a frozen backbone sees the same
input for an image in every epoch and its features can be cached. `augment=True` adds a
random horizontal flip and a padded random crop to the training transform only.
torchvision is imported on first use, so planning a protocol stays light.
The same transform takes PIL images (real files) and uint8 CHW tensors (in-memory sources).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def _to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    from torchvision.transforms import v2

    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
        v2.ToPureTensor(),
    ]


class Normalized:
    """Image -> normalized float tensor. uint8 tensors (the in-memory sources) take a direct
    path, several times faster per item than the torchvision pipeline that PIL images take."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        from torchvision.transforms import v2

        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.pipeline = v2.Compose(_to_normalized_tensor(mean, std))

    def __call__(self, image: Any) -> torch.Tensor:  # a PIL image or a uint8 CHW tensor
        if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
            return (image.float().div_(255.0) - self.mean).div_(self.std)
        return self.pipeline(image)


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> Normalized:
    return Normalized(mean, std)


def train_transform(
    mean: Sequence[float], std: Sequence[float], *, image_size: int, augment: bool
) -> Callable[[Any], torch.Tensor]:
    from torchvision.transforms import v2

    if not augment:
        return eval_transform(mean, std)
    random_steps = [
        v2.RandomHorizontalFlip(),
        v2.RandomCrop(image_size, padding=max(1, image_size // 8)),
    ]
    return v2.Compose([v2.ToImage(), *random_steps, *_to_normalized_tensor(mean, std)[1:]])
