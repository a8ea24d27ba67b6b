"""CORe50 NI and NC: Avalanche's real loader, the synthetic look-alike, or a user's folder.

Real data lives in `<data root>/core50/` in the layout Avalanche's `CORe50` reads (image tree
`core50_128x128/` or `core50_32x32/`, `batches_filelists/`, `paths.pkl`, `LUP.pkl`,
`labels.pkl`, `labels2names.pkl`); what is missing is downloaded on first use. The stream seed
is the CORe50 run (0..9), which fixes the class order of NC and the session order of NI.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from cycl_bench.data import synthetic
from cycl_bench.data.assemble import ImageTensorDataset, make_stream
from cycl_bench.data.base import Stream
from cycl_bench.data.download import downloading, ensure_writable, resolve_data_root
from cycl_bench.data.folder import (
    FolderNcOptions,
    FolderNiOptions,
    build_folder_stream,
    plan_folder_nc,
    plan_folder_ni,
)
from cycl_bench.data.options import resolve_options
from cycl_bench.data.protocol import Plan, request
from cycl_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from cycl_bench.data.transforms import train_transform as make_train_transform
from cycl_bench.errors import UserError
from cycl_bench.params import Options
from cycl_bench.registry import BENCHMARKS

RUNS = range(10)
EXPERIENCES = {"ni": 8, "nc": 9}
FILELIST_FOLDERS = {"ni": "batches_filelists/NI_inc", "nc": "batches_filelists/NC_inc"}
METADATA_FILES = ("paths.pkl", "LUP.pkl", "labels.pkl", "labels2names.pkl")


class RealOptions(Options):
    object_level: bool = True
    """50 objects; false: 10 categories"""
    mini: bool = False
    """the 32x32 images instead of 128x128"""
    augment: bool = False
    """random flip and padded crop on training images"""


class SyntheticOptions(Options):
    object_level: bool = True
    """50 objects; false: 10 categories"""
    image_size: int = Field(32, ge=8)
    """side of the generated images"""
    images_per_object: int = Field(6, ge=1)
    """images per object per train session"""
    test_images_per_object: int = Field(3, ge=1)
    """images per object per test session"""
    augment: bool = False
    """random flip and padded crop on training images"""


def image_folder_name(mini: bool) -> str:
    return "core50_32x32" if mini else "core50_128x128"


# ---------------------------------------------------------------- planning (no data read)


def plan_core50(scenario: str, *, data: str, seed: int, options: dict[str, Any]) -> Plan:
    name = f"core50_{scenario}"
    source, folder, seed = request(data, seed)
    if source == "folder":
        plan_folder = plan_folder_ni if scenario == "ni" else plan_folder_nc
        return plan_folder(name, folder, seed, options)
    if source == "real":
        options = resolve_options(name, source, options, RealOptions)
        if seed not in RUNS:
            raise UserError(
                f"stream seed {seed} selects the CORe50 run, which must be 0..9 for real data"
            )
        image_size, generator = (32 if options["mini"] else 128), None
    else:
        options = resolve_options(name, source, options, SyntheticOptions)
        image_size = options["image_size"]
        generator = {
            "name": "core50_like",
            "version": 1,
            "seed": seed,
            "images_per_object": options["images_per_object"],
            "test_images_per_object": options["test_images_per_object"],
        }
    protocol = {
        "dataset": "core50",
        "scenario": scenario,
        "run": seed,
        "level": "object" if options["object_level"] else "category",
        "image_size": image_size,
        "source": source,
        "generator": generator,
    }
    return Plan(name, source, folder, seed, options, protocol)


# ---------------------------------------------------------------- real data


def _archive_for(entry: str, mini: bool) -> tuple[str, str, str]:
    """(file name, url, md5) that provides `entry`; Avalanche's own list, with the 32x32
    image archive for `mini` (Avalanche's manual-download message names the 128x128 one)."""
    from avalanche.benchmarks.datasets.core50 import core50_data

    if entry == image_folder_name(mini):
        return core50_data.extra_data[1] if mini else core50_data.data[0]
    wanted = "batches_filelists.zip" if entry == "batches_filelists" else entry
    return next(item for item in core50_data.data if item[0] == wanted)


def _missing_entries(root: Path, mini: bool) -> list[str]:
    folders = [image_folder_name(mini), "batches_filelists"]
    missing = [name for name in folders if not (root / name).is_dir()]
    return missing + [name for name in METADATA_FILES if not (root / name).is_file()]


def _download_core50(root: Path, mini: bool, missing: list[str]) -> None:
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    ensure_writable(root)
    archives = [_archive_for(entry, mini) for entry in missing]
    files = [
        f"{entry}/ (from {name})" if entry != name else name
        for entry, (name, _, _) in zip(missing, archives, strict=True)
    ]
    with downloading("CORe50", root, files, [url for _, url, _ in archives]):
        for name, url, md5 in archives:
            print(f"downloading {url} into {root}", file=sys.stderr)
            if name.endswith(".zip"):
                download_and_extract_archive(url, str(root), filename=name, md5=md5)
            else:
                download_url(url, str(root), filename=name, md5=md5)


def _check_metadata(root: Path) -> dict[str, Any]:
    loaded = {}
    for name in METADATA_FILES:
        try:
            with open(root / name, "rb") as handle:
                loaded[name] = pickle.load(handle)
        except Exception as error:  # any unpickling failure means the file is damaged
            raise UserError(
                f"CORe50 file {root / name} is corrupt ({type(error).__name__}); "
                "delete it and run again to download it afresh"
            ) from None
    return loaded


def _check_filelists(root: Path, scenario: str, run: int) -> None:
    folder = root / FILELIST_FOLDERS[scenario] / f"run{run}"
    names = [f"train_batch_{i:02d}_filelist.txt" for i in range(EXPERIENCES[scenario])]
    for name in [*names, "test_filelist.txt"]:
        path = folder / name
        if not path.is_file():
            raise UserError(
                f"CORe50 file list {path} is missing; delete {root / 'batches_filelists'} "
                "and run again to download it afresh"
            )
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UserError(
                    f"CORe50 file list {path} is corrupt (line {number}); delete "
                    f"{root / 'batches_filelists'} and run again to download it afresh"
                )


def _class_names(labels2names: Any, scenario: str, run: int, object_level: bool) -> list[str]:
    from avalanche.benchmarks.datasets.core50 import core50_data

    if not object_level:
        return sorted(core50_data.name2cat, key=core50_data.name2cat.get)
    if scenario == "ni":  # NI labels are the object numbers: label i is folder o<i+1>
        return [f"o{label + 1}" for label in range(50)]
    names = labels2names["nc"][run]  # NC labels follow the run's class order
    return [str(names[label]) for label in range(50)]


def load_real_core50(plan: Plan, data_root: Path | str | None) -> Stream:
    from avalanche.benchmarks.classic import CORe50

    scenario, run = plan.protocol["scenario"], plan.seed
    mini, augment = plan.options["mini"], plan.options["augment"]
    root = resolve_data_root(data_root) / "core50"
    missing = _missing_entries(root, mini)
    if missing:
        _download_core50(root, mini, missing)
    metadata = _check_metadata(root)
    _check_filelists(root, scenario, run)
    if not (root / "NIC_v2_79_cat").exists():
        ensure_writable(root)  # Avalanche writes the category-level file lists on first load
    size = plan.protocol["image_size"]
    with contextlib.redirect_stdout(sys.stderr):  # Avalanche's progress chatter
        benchmark = CORe50(
            scenario=scenario,
            run=run,
            object_lvl=plan.options["object_level"],
            mini=mini,
            train_transform=make_train_transform(
                IMAGENET_MEAN, IMAGENET_STD, image_size=size, augment=augment
            ),
            eval_transform=eval_transform(IMAGENET_MEAN, IMAGENET_STD),
            dataset_root=root,
        )
    return make_stream(
        name=plan.name,
        scenario=scenario,
        source="real",
        benchmark=benchmark,
        protocol=plan.protocol,
        num_classes=50 if plan.options["object_level"] else 10,
        image_shape=(3, size, size),
        train_deterministic=not augment,
        class_names=_class_names(
            metadata["labels2names.pkl"], scenario, run, plan.options["object_level"]
        ),
    )


# ---------------------------------------------------------------- synthetic data


def nc_class_groups(seed: int) -> list[list[int]]:
    """Object ids of each NC experience: 10, then 5 per experience, in a seed-drawn order."""
    order = np.random.default_rng([seed, 9]).permutation(synthetic.CORE50_OBJECTS).tolist()
    return [order[:10]] + [order[i : i + 5] for i in range(10, synthetic.CORE50_OBJECTS, 5)]


def build_synthetic_core50(plan: Plan) -> Stream:
    from avalanche.benchmarks import dataset_benchmark

    options, scenario = plan.options, plan.protocol["scenario"]
    generated = synthetic.core50_like(
        plan.seed,
        images_per_object=options["images_per_object"],
        test_images_per_object=options["test_images_per_object"],
        image_size=options["image_size"],
    )
    groups = nc_class_groups(plan.seed)
    if options["object_level"]:
        # like CORe50's NC file lists: label = position of the object in the class order
        position = {obj: i for i, obj in enumerate(o for group in groups for o in group)}
        label_of = position if scenario == "nc" else {o: o for o in range(50)}
        class_names = [f"o{o + 1}" for o in sorted(label_of, key=label_of.get)]
    else:
        label_of = dict(enumerate(generated.category_of_object))
        class_names = [f"category{c}" for c in range(synthetic.CORE50_CATEGORIES)]

    def labelled(images: torch.Tensor, objects: list[int]) -> ImageTensorDataset:
        return ImageTensorDataset(images, [label_of[o] for o in objects])

    if scenario == "ni":
        train_sets = [labelled(*generated.train[s]) for s in synthetic.CORE50_TRAIN_SESSIONS]
    else:
        images = torch.cat([generated.train[s][0] for s in synthetic.CORE50_TRAIN_SESSIONS])
        objects = [o for s in synthetic.CORE50_TRAIN_SESSIONS for o in generated.train[s][1]]
        objects_tensor = torch.tensor(objects)
        train_sets = []
        for group in groups:
            keep = torch.isin(objects_tensor, torch.tensor(group)).nonzero().flatten()
            train_sets.append(labelled(images[keep], [objects[i] for i in keep.tolist()]))
    size, augment = options["image_size"], options["augment"]
    benchmark = dataset_benchmark(
        train_sets,
        [labelled(*generated.test)],
        complete_test_set_only=True,
        train_transform=make_train_transform(
            IMAGENET_MEAN, IMAGENET_STD, image_size=size, augment=augment
        ),
        eval_transform=eval_transform(IMAGENET_MEAN, IMAGENET_STD),
    )
    return make_stream(
        name=plan.name,
        scenario=scenario,
        source="synthetic",
        benchmark=benchmark,
        protocol=plan.protocol,
        num_classes=len(class_names),
        image_shape=(3, size, size),
        train_deterministic=not augment,
        class_names=class_names,
    )


# ---------------------------------------------------------------- registered benchmarks


def build_core50(scenario: str, data: str, data_root, seed: int, options: dict) -> Stream:
    plan = plan_core50(scenario, data=data, seed=seed, options=options)
    if plan.source == "folder":
        return build_folder_stream(plan)
    if plan.source == "synthetic":
        return build_synthetic_core50(plan)
    return load_real_core50(plan, data_root)


@BENCHMARKS.register(
    "core50_ni",
    planner=partial(plan_core50, "ni"),
    params={"real": RealOptions, "synthetic": SyntheticOptions, "folder": FolderNiOptions},
)
def core50_ni(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options
) -> Stream:
    """CORe50 new instances: 8 experiences, one session each, all 50 objects."""
    return build_core50("ni", data, data_root, seed, options)


@BENCHMARKS.register(
    "core50_nc",
    planner=partial(plan_core50, "nc"),
    params={"real": RealOptions, "synthetic": SyntheticOptions, "folder": FolderNcOptions},
)
def core50_nc(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options
) -> Stream:
    """CORe50 new classes: 9 experiences with 10, 5, ..., 5 objects."""
    return build_core50("nc", data, data_root, seed, options)
