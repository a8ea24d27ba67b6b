"""Which images pretraining sees: the stream's first experience, or a named benchmark's data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset, Subset

from cycl_bench.data.base import Stream
from cycl_bench.errors import UserError, suggest
from cycl_bench.pretrain.config import PretrainConfig

FIRST_EXPERIENCE = "first_experience"


@dataclass
class PretrainingData:
    train: Dataset
    val: Dataset
    num_classes: int
    description: str


def labels_of(dataset: Dataset) -> list[int]:
    """Class labels of a dataset: its `targets` when it has them, else read item by item."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def restrict_to_classes(views: list[Dataset], classes: set[int]) -> Dataset:
    """The samples of every view whose label is one of `classes`."""
    parts = []
    for view in views:
        keep = [i for i, label in enumerate(labels_of(view)) if label in classes]
        if keep:
            parts.append(Subset(view, keep))
    if not parts:
        raise ValueError(f"no test samples of classes {sorted(classes)}")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def first_experience(stream: Stream) -> PretrainingData:
    """Train on experience 0; validate on the test samples of its classes."""
    classes = set(stream.classes_per_experience[0])
    return PretrainingData(
        train=stream.train_stream[0].dataset,
        val=restrict_to_classes(stream.test_views, classes),
        num_classes=stream.num_classes,
        description=f"{stream.name} experience 0 ({len(classes)} classes)",
    )


def whole_benchmark(
    name: str, stream: Stream, *, seed: int, data_root: Path | None
) -> PretrainingData:
    """Every training experience of benchmark `name`, from the same kind of source as `stream`."""
    from cycl_bench.registry import BENCHMARKS

    if stream.source == "folder":
        raise UserError(
            f"pretrain data '{name}' cannot be built next to a folder stream; "
            "use pretrain data first_experience"
        )
    options = {"data_root": data_root} if data_root is not None else {}
    other = BENCHMARKS.build(name, data=stream.source, seed=seed, **options)
    if tuple(other.image_shape) != tuple(stream.image_shape):
        raise UserError(
            f"pretrain data '{name}' has images {other.image_shape}, the stream "
            f"{stream.image_shape}; pick a benchmark with the same image shape"
        )
    return PretrainingData(
        train=ConcatDataset([experience.dataset for experience in other.train_stream]),
        val=ConcatDataset(other.test_views) if len(other.test_views) > 1 else other.test_views[0],
        num_classes=other.num_classes,
        description=f"{other.name} ({other.source}, all {other.n_experiences} experiences)",
    )


def check_data_name(name: str) -> str:
    """UserError unless `name` is first_experience or a registered benchmark."""
    from cycl_bench.registry import BENCHMARKS

    choices = [FIRST_EXPERIENCE, *BENCHMARKS.names()]
    if name not in choices:
        raise UserError(
            f"unknown pretrain data '{name}'{suggest(name, choices)}; "
            f"use {FIRST_EXPERIENCE} or a benchmark: {', '.join(choices[1:])}"
        )
    return name


def pretraining_data(
    config: PretrainConfig, stream: Stream, *, seed: int, data_root: Path | None = None
) -> PretrainingData:
    if check_data_name(config.data) == FIRST_EXPERIENCE:
        return first_experience(stream)
    return whole_benchmark(config.data, stream, seed=seed, data_root=data_root)
