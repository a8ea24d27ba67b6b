"""From an Avalanche benchmark to a `Stream`: classes per experience and the test views."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from cycl_bench.data.base import Scenario, Source, Stream


class ImageTensorDataset(Dataset):
    """uint8 (N, 3, H, W) images with integer targets, for in-memory sources.

    Avalanche reads `targets`; the stream's transform turns each image into a normalized
    float tensor, exactly as it does for an image read from disk.
    """

    def __init__(self, images: torch.Tensor, targets: list[int]) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(targets):
            raise ValueError("images must be uint8 (N, C, H, W) with one target per image")
        self.images = images
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


def _classes_of(experience: Any) -> list[int]:  # an Avalanche experience
    return sorted(int(c) for c in experience.classes_in_this_experience)


def _split_by_classes(
    test_dataset: Any, classes_per_experience: list[list[int]]
) -> list[Any]:  # Avalanche datasets
    """One view per experience: the test images whose class that experience introduced."""
    targets = [int(t) for t in test_dataset.targets]
    views = []
    for classes in classes_per_experience:
        wanted = set(classes)
        views.append(test_dataset.subset([i for i, t in enumerate(targets) if t in wanted]))
    return views


def make_stream(
    *,
    name: str,
    scenario: Scenario,
    source: Source,
    benchmark: Any,
    protocol: dict[str, Any],
    num_classes: int,
    image_shape: tuple[int, int, int],
    train_deterministic: bool,
    class_names: list[str] | None = None,
) -> Stream:
    """NC: one test view per experience (Avalanche's own per-experience test sets when it
    has them, else the single test set split by classes). NI and NIC (CORe50 NICv2, where an
    experience holds sessions of objects both new and seen): the one shared test set."""
    classes_per_experience = [_classes_of(exp) for exp in benchmark.train_stream]
    test_stream = benchmark.test_stream
    if scenario in ("ni", "nic"):
        test_views = [test_stream[0].dataset]
    elif len(test_stream) == len(classes_per_experience):
        test_views = [exp.dataset for exp in test_stream]
    else:
        test_views = _split_by_classes(test_stream[0].dataset, classes_per_experience)
    return Stream(
        name=name,
        scenario=scenario,
        source=source,
        benchmark=benchmark,
        test_views=test_views,
        classes_per_experience=classes_per_experience,
        num_classes=num_classes,
        image_shape=image_shape,
        protocol=protocol,
        class_names=list(class_names or []),
        train_deterministic=train_deterministic,
    )
