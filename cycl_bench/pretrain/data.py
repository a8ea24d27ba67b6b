"""Which images pretraining sees: a generic source separate from the stream, or the stream's own
first experience.

The on-device CL papers start from a backbone pretrained on a large generic dataset (ImageNet),
then train the whole network on the first experience and only the head afterwards. `pretrain.data`
names that source:

- `synthetic` (default): a procedural corpus of object classes of its own (none is a stream
  class), at the stream's image size; always available offline.
- `folder:PATH`: an image-classification folder such as ImageNet, `PATH/train/<class>/*` and
  `PATH/val/<class>/*`, or `PATH/<class>/*` (a seeded tenth of each class validates); read lazily
  and resized to the stream's image size.
- a registered benchmark name: all of that benchmark's training data, from the same kind of
  source as the stream.
- `first_experience`: the stream's own first experience (no separate source).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from cycl_bench.data.base import Stream, dataset_size
from cycl_bench.data.folder import check_images, load_rgb
from cycl_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cycl_bench.errors import UserError, suggest
from cycl_bench.pretrain.config import PretrainConfig

FIRST_EXPERIENCE = "first_experience"
SYNTHETIC = "synthetic"
FOLDER_PREFIX = "folder:"
FOLDER_VAL_FRACTION = 0.1


@dataclass
class PretrainingData:
    train: Dataset
    val: Dataset
    num_classes: int
    description: str
    identity: dict[str, Any]
    """What defines these images (for the checkpoint cache key)."""


class NormalizedImages(Dataset):
    """uint8 (N, C, H, W) images as float tensors normalized like the streams' images."""

    def __init__(self, images: torch.Tensor, targets: list[int]):
        self.images = images
        self.targets = [int(t) for t in targets]
        self.mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].float().div_(255.0)
        return (image - self.mean) / self.std, self.targets[index]


def labels_of(dataset: Dataset) -> list[int]:
    """Class labels of a dataset: its `targets` when it has them, else read item by item."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(dataset_size(dataset))]


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
        identity={"source": FIRST_EXPERIENCE, "protocol_hash": stream.protocol_hash},
    )


def synthetic_corpus(config: PretrainConfig, stream: Stream, *, seed: int) -> PretrainingData:
    """The procedural corpus (`data.synthetic.pretraining_corpus`) at the stream's image size;
    validation images are further images of the same classes."""
    from cycl_bench.data.synthetic import pretraining_corpus

    image_size = stream.image_shape[1]
    per_class = config.synthetic_images_per_class
    val_per_class = max(1, per_class // 4)
    images, labels = pretraining_corpus(
        seed,
        categories=config.synthetic_categories,
        objects_per_category=config.synthetic_objects_per_category,
        images_per_class=per_class + val_per_class,
        image_size=image_size,
    )
    classes = config.synthetic_categories * config.synthetic_objects_per_category
    cut = classes * per_class  # labels cycle through the classes: the first rows train
    return PretrainingData(
        train=NormalizedImages(images[:cut], labels[:cut]),
        val=NormalizedImages(images[cut:], labels[cut:]),
        num_classes=classes,
        description=(
            f"synthetic corpus ({classes} object classes, {per_class} images each, "
            f"{image_size}x{image_size})"
        ),
        identity={
            "source": SYNTHETIC,
            "generator": "pretraining_corpus",
            "version": 1,
            "seed": seed,
            "image_size": image_size,
        },
    )


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_folder(path: Path, stream: Stream, *, seed: int) -> PretrainingData:
    """An image-classification folder (ImageNet layout or one folder per class), read lazily."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"pretrain data folder {root} does not exist; check the path after folder:")
    size = stream.image_shape[1]
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.ToPureTensor(),
        ]
    )
    split = (root / "train").is_dir() and (root / "val").is_dir()
    train_root = root / "train" if split else root
    classes = _class_folders(train_root)
    try:
        train = ImageFolder(str(train_root), transform=transform, loader=load_rgb)
        if split:
            val = ImageFolder(str(root / "val"), transform=transform, loader=load_rgb)
        else:
            val = None
    except (FileNotFoundError, RuntimeError) as error:
        raise UserError(
            f"no images found for pretraining in {root} ({error}); expected "
            f"{root}/train/<class>/* and {root}/val/<class>/*, or {root}/<class>/*"
        ) from None
    # every file's header read now: a bad image is named before training, not in a worker
    check_images([Path(file) for file, _ in train.samples + (val.samples if val else [])])
    if split and val.classes != train.classes:
        raise UserError(
            f"{root}/val has other classes than {root}/train; give both the same class folders"
        )
    if not split:
        order = np.random.default_rng([seed, 11]).permutation(len(train))
        held = max(1, int(len(train) * FOLDER_VAL_FRACTION))
        val = Subset(train, sorted(order[:held].tolist()))
        train = Subset(train, sorted(order[held:].tolist()))
    names = hashlib.sha256("\n".join(classes).encode()).hexdigest()[:16]
    return PretrainingData(
        train=train,
        val=val,
        num_classes=len(classes),
        description=f"image folder {root} ({len(classes)} classes, {len(train)} images)",
        identity={
            "source": "folder",
            "path": str(root.resolve()),
            "classes": names,
            "images": len(train) + len(val),
            "image_size": size,
            "seed": seed,
        },
    )


def whole_benchmark(
    name: str, stream: Stream, *, seed: int, data_root: Path | None
) -> PretrainingData:
    """Every training experience of benchmark `name`, from the same kind of source as `stream`."""
    from cycl_bench.registry import BENCHMARKS

    if stream.source == "folder":
        raise UserError(
            f"pretrain data '{name}' cannot be built next to a folder stream; "
            "use pretrain data synthetic, folder:PATH or first_experience"
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
        identity={"source": "benchmark", "protocol_hash": other.protocol_hash},
    )


def check_data_name(name: str) -> str:
    """UserError unless `name` is a pretraining source this module knows."""
    from cycl_bench.registry import BENCHMARKS

    if name.startswith(FOLDER_PREFIX) and len(name) > len(FOLDER_PREFIX):
        return name
    choices = [SYNTHETIC, FIRST_EXPERIENCE, *BENCHMARKS.names()]
    if name not in choices:
        raise UserError(
            f"unknown pretrain data '{name}'{suggest(name, choices)}; use {SYNTHETIC}, "
            f"folder:PATH, {FIRST_EXPERIENCE} or a benchmark: {', '.join(choices[2:])}"
        )
    return name


def check_source(config: PretrainConfig) -> None:
    """Before any work: the pretraining source is known and, for folder:PATH, the folder exists
    (nothing is read)."""
    name = check_data_name(config.data)
    if config.schedule == "none" or not name.startswith(FOLDER_PREFIX):
        return
    folder = Path(name[len(FOLDER_PREFIX) :]).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"pretrain data folder {folder} does not exist; check the path after folder: "
            "in pretrain.data"
        )


def pretraining_data(
    config: PretrainConfig, stream: Stream, *, seed: int, data_root: Path | None = None
) -> PretrainingData:
    name = check_data_name(config.data)
    if name == SYNTHETIC:
        return synthetic_corpus(config, stream, seed=seed)
    if name == FIRST_EXPERIENCE:
        return first_experience(stream)
    if name.startswith(FOLDER_PREFIX):
        return image_folder(Path(name[len(FOLDER_PREFIX) :]), stream, seed=seed)
    return whole_benchmark(name, stream, seed=seed, data_root=data_root)
