"""Split CIFAR-10 and CIFAR-100: torchvision datasets split by Avalanche's `nc_benchmark`.

The class order is drawn from the stream seed here (not inside Avalanche), so the protocol
records it without loading data. Real files live in `<data root>/cifar-10-batches-py/` and
`<data root>/cifar-100-python/` (torchvision's layout), downloaded on first use. The synthetic
source fills the same torchvision dataset object with generated images, so everything above
it (split, transforms, test views) is the code real data goes through.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field

from cycl_bench.data import synthetic
from cycl_bench.data.assemble import make_stream
from cycl_bench.data.base import Stream
from cycl_bench.data.download import downloading, ensure_writable, resolve_data_root
from cycl_bench.data.options import resolve_options
from cycl_bench.data.protocol import Plan, request
from cycl_bench.data.transforms import CIFAR_MEAN, CIFAR_STD, eval_transform
from cycl_bench.data.transforms import train_transform as make_train_transform
from cycl_bench.errors import UserError
from cycl_bench.params import MAX_IMAGES, Options
from cycl_bench.registry import BENCHMARKS

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10  # CIFAR100 is one

IMAGE_SIZE = 32
# benchmark name -> (number of classes, classes per experience)
SPLITS = {
    "split_cifar10": (10, [2] * 5),
    "split_cifar100": (100, [10] * 10),
    "split_cifar100_50_5x10": (100, [50] + [10] * 5),
}


class RealOptions(Options):
    augment: bool = False
    """random flip and padded crop on training images"""


class Cifar10SyntheticOptions(RealOptions):
    train_images_per_class: int = Field(100, ge=1, le=MAX_IMAGES)
    """generated training images per class"""
    test_images_per_class: int = Field(20, ge=1, le=MAX_IMAGES)
    """generated test images per class"""


class Cifar100SyntheticOptions(Cifar10SyntheticOptions):
    train_images_per_class: int = Field(20, ge=1, le=MAX_IMAGES)
    """generated training images per class"""
    test_images_per_class: int = Field(5, ge=1, le=MAX_IMAGES)
    """generated test images per class"""


SYNTHETIC_OPTIONS = {10: Cifar10SyntheticOptions, 100: Cifar100SyntheticOptions}


def _declared_options(name: str) -> dict[str, type[Options]]:
    return {"real": RealOptions, "synthetic": SYNTHETIC_OPTIONS[SPLITS[name][0]]}


def class_order(seed: int, num_classes: int) -> list[int]:
    return np.random.default_rng(seed).permutation(num_classes).tolist()


def plan_split_cifar(name: str, *, data: str, seed: int, options: dict[str, Any]) -> Plan:
    source, folder, seed = request(data, seed)
    num_classes, sizes = SPLITS[name]
    if source == "folder":
        raise UserError(
            f"{name} does not read image folders; use core50_nc --data folder:PATH "
            "(class folders) or core50_ni --data folder:PATH (session folders)"
        )
    generator = None
    options = resolve_options(name, source, options, _declared_options(name)[source])
    if source == "synthetic":
        generator = {
            "name": "cifar_like",
            "version": 1,
            "seed": seed,
            "train_images_per_class": options["train_images_per_class"],
            "test_images_per_class": options["test_images_per_class"],
        }
    protocol = {
        "dataset": f"cifar{num_classes}",
        "scenario": "nc",
        "class_order": class_order(seed, num_classes),
        "classes_per_experience": sizes,
        "image_size": IMAGE_SIZE,
        "source": source,
        "generator": generator,
    }
    return Plan(name, source, folder, seed, options, protocol)


# ---------------------------------------------------------------- the torchvision datasets


def torchvision_class(num_classes: int) -> type[CIFAR10]:
    from torchvision.datasets import CIFAR10, CIFAR100

    return {10: CIFAR10, 100: CIFAR100}[num_classes]


def in_memory_cifar(
    num_classes: int,
    images_nhwc: np.ndarray,
    targets: Iterable[int],
    classes: Iterable[str],
    *,
    train: bool,
) -> CIFAR10:
    """A torchvision CIFAR dataset object holding the given arrays instead of files
    (uint8 NHWC `data`, list `targets`, `classes`): what the synthetic source feeds in."""
    # the class of an untyped library: mypy cannot resolve `__new__` on `type[Any]`
    dataset_class: Any = torchvision_class(num_classes)
    dataset = dataset_class.__new__(dataset_class)
    dataset.root = "<memory>"
    dataset.train = train
    dataset.transform = dataset.target_transform = dataset.transforms = None
    dataset.data = np.ascontiguousarray(images_nhwc, dtype=np.uint8)
    dataset.targets = [int(t) for t in targets]
    dataset.classes = list(classes)
    dataset.class_to_idx = {name: i for i, name in enumerate(dataset.classes)}
    return dataset


def _cifar_files(dataset_class: type[CIFAR10]) -> list[tuple[str, str]]:
    meta = dataset_class.meta
    return [*dataset_class.train_list, *dataset_class.test_list, [meta["filename"], meta["md5"]]]


def load_torchvision_cifar(num_classes: int, root: Path) -> tuple[CIFAR10, CIFAR10]:
    """(train, test) torchvision datasets from `root`; downloads what is missing, refuses a
    damaged file by name (torchvision would silently try to download over it)."""
    from torchvision.datasets.utils import check_integrity

    dataset_class = torchvision_class(num_classes)
    folder = root / dataset_class.base_folder
    missing = []
    for name, md5 in _cifar_files(dataset_class):
        path = folder / name
        if not path.is_file():
            missing.append(name)
        elif not check_integrity(str(path), md5):
            raise UserError(
                f"CIFAR-{num_classes} file {path} is corrupt (checksum mismatch); "
                "delete it and run again to download it afresh"
            )
    if missing:
        ensure_writable(root)
        archive = f"{dataset_class.filename} (extracted to {dataset_class.base_folder}/)"
        with downloading(f"CIFAR-{num_classes}", root, [archive], [dataset_class.url]):
            dataset_class(str(root), train=True, download=True)
    return (
        dataset_class(str(root), train=True, download=False),
        dataset_class(str(root), train=False, download=False),
    )


def _synthetic_cifar(plan: Plan, num_classes: int) -> tuple[CIFAR10, CIFAR10]:
    train_x, train_y, test_x, test_y = synthetic.cifar_like(
        plan.seed,
        num_classes=num_classes,
        train_per_class=plan.options["train_images_per_class"],
        test_per_class=plan.options["test_images_per_class"],
        image_size=IMAGE_SIZE,
    )
    names = [f"class{c}" for c in range(num_classes)]

    def as_cifar(images: torch.Tensor, targets: list[int], train: bool) -> CIFAR10:
        nhwc = images.permute(0, 2, 3, 1).numpy()
        return in_memory_cifar(num_classes, nhwc, targets, names, train=train)

    return as_cifar(train_x, train_y, True), as_cifar(test_x, test_y, False)


# ---------------------------------------------------------------- the stream


def split_stream(plan: Plan, train_set: CIFAR10, test_set: CIFAR10) -> Stream:
    from avalanche.benchmarks import nc_benchmark

    num_classes, sizes = SPLITS[plan.name]
    augment = plan.options["augment"]
    benchmark = nc_benchmark(
        train_set,
        test_set,
        n_experiences=len(sizes),
        task_labels=False,
        fixed_class_order=plan.protocol["class_order"],
        per_exp_classes={0: sizes[0]} if sizes[0] != sizes[-1] else None,
        train_transform=make_train_transform(
            CIFAR_MEAN, CIFAR_STD, image_size=IMAGE_SIZE, augment=augment
        ),
        eval_transform=eval_transform(CIFAR_MEAN, CIFAR_STD),
    )
    return make_stream(
        name=plan.name,
        scenario="nc",
        source=plan.source,
        benchmark=benchmark,
        protocol=plan.protocol,
        num_classes=num_classes,
        image_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        train_deterministic=not augment,
        class_names=list(train_set.classes),
    )


def build_split_cifar(
    name: str, data: str, data_root: Path | None, seed: int, options: dict[str, Any]
) -> Stream:
    plan = plan_split_cifar(name, data=data, seed=seed, options=options)
    num_classes = SPLITS[name][0]
    if plan.source == "synthetic":
        train_set, test_set = _synthetic_cifar(plan, num_classes)
    else:
        train_set, test_set = load_torchvision_cifar(num_classes, resolve_data_root(data_root))
    return split_stream(plan, train_set, test_set)


@BENCHMARKS.register(
    "split_cifar10",
    planner=partial(plan_split_cifar, "split_cifar10"),
    params=_declared_options("split_cifar10"),
)
def split_cifar10(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """Split CIFAR-10: 5 experiences of 2 classes, class order from the stream seed."""
    return build_split_cifar("split_cifar10", data, data_root, seed, options)


@BENCHMARKS.register(
    "split_cifar100",
    planner=partial(plan_split_cifar, "split_cifar100"),
    params=_declared_options("split_cifar100"),
)
def split_cifar100(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """Split CIFAR-100: 10 experiences of 10 classes, class order from the stream seed."""
    return build_split_cifar("split_cifar100", data, data_root, seed, options)


@BENCHMARKS.register(
    "split_cifar100_50_5x10",
    planner=partial(plan_split_cifar, "split_cifar100_50_5x10"),
    params=_declared_options("split_cifar100_50_5x10"),
)
def split_cifar100_50_5x10(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """Split CIFAR-100, half first: 50 classes, then 5 experiences of 10."""
    return build_split_cifar("split_cifar100_50_5x10", data, data_root, seed, options)
