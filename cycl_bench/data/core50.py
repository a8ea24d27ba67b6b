"""CORe50 NI, NC and NICv2: Avalanche's real loader, the synthetic look-alike, or a user's folder.

Real data lives in `<data root>/core50/` in the layout Avalanche's `CORe50` reads (image tree
`core50_128x128/` or `core50_32x32/`, `batches_filelists/`, `paths.pkl`, `LUP.pkl`,
`labels.pkl`, `labels2names.pkl`, and for NICv2 `NIC_v2_79/`, `NIC_v2_196/`, `NIC_v2_391/` from
`batches_filelists_NICv2.zip`); what is missing is downloaded on first use. The stream seed is
the CORe50 run (0..9), which fixes the class order of NC, the session order of NI and the order
of the object sessions of NICv2.

NICv2-79/196/391 (Lomonaco et al. 2020), as CORe50's NICv2 file lists make them: the first
experience is session 1 of the first object of each category (o1, o6, ..., o46: 10 classes, in
every run), then the other 390 object sessions, 5, 2 or 1 per experience, each object's
sessions in their temporal order, the objects interleaved in the run's order. Labels are the
object numbers, and one shared test set (sessions 3, 7, 10) is evaluated, as in NI. Folders of
images have no object sessions to draw this from: NICv2 reads real or synthetic data only.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from cycl_bench.data import synthetic
from cycl_bench.data.assemble import ImageTensorDataset, make_stream
from cycl_bench.data.base import Scenario, Stream
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
from cycl_bench.params import MAX_IMAGE_SIZE, MAX_IMAGES, Options
from cycl_bench.registry import BENCHMARKS

RUNS = range(10)
NICV2_EXPERIENCES = (79, 196, 391)
EXPERIENCES = {"ni": 8, "nc": 9, **{f"nicv2_{n}": n for n in NICV2_EXPERIENCES}}
FILELIST_FOLDERS = {
    "ni": "batches_filelists/NI_inc",
    "nc": "batches_filelists/NC_inc",
    **{f"nicv2_{n}": f"NIC_v2_{n}" for n in NICV2_EXPERIENCES},
}
NICV2_ARCHIVE = "batches_filelists_NICv2.zip"
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
    image_size: int = Field(32, ge=8, le=MAX_IMAGE_SIZE)
    """side of the generated images"""
    images_per_object: int = Field(6, ge=1, le=MAX_IMAGES)
    """images per object per train session"""
    test_images_per_object: int = Field(3, ge=1, le=MAX_IMAGES)
    """images per object per test session"""
    augment: bool = False
    """random flip and padded crop on training images"""


def image_folder_name(mini: bool) -> str:
    return "core50_32x32" if mini else "core50_128x128"


_PLAIN_SCENARIOS: tuple[Scenario, ...] = ("ni", "nc")


def scenario_kind(scenario: str) -> Scenario:
    """The results file's scenario: 'ni', 'nc', or 'nic' for the NICv2 streams."""
    if scenario.startswith("nicv2_"):
        return "nic"
    if scenario in _PLAIN_SCENARIOS:
        return scenario
    raise ValueError(f"unknown CORe50 scenario {scenario!r}")


def _filelist_root(scenario: str) -> str:
    """The top folder of a scenario's file lists (what a damaged list asks to delete)."""
    return FILELIST_FOLDERS[scenario].split("/")[0]


# ---------------------------------------------------------------- planning (no data read)


def plan_core50(scenario: str, *, data: str, seed: int, options: dict[str, Any]) -> Plan:
    name = f"core50_{scenario}"
    source, folder, seed = request(data, seed)
    if source == "folder" and scenario_kind(scenario) == "nic":
        raise UserError(
            f"{name} needs CORe50's object sessions: use --data real or --data synthetic "
            "(folder:PATH images fit core50_ni and core50_nc)"
        )
    if source == "folder":
        assert folder is not None  # `request` gives folder:PATH its path
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
    if entry.startswith("NIC_v2_"):
        wanted = NICV2_ARCHIVE  # holds NIC_v2_79/, NIC_v2_196/ and NIC_v2_391/
    return next(item for item in core50_data.data if item[0] == wanted)


def _missing_entries(root: Path, mini: bool, scenario: str) -> list[str]:
    # Avalanche reads its metadata only when batches_filelists/ is there, whatever the scenario
    folders = [image_folder_name(mini), "batches_filelists"]
    if scenario_kind(scenario) == "nic":
        folders.append(_filelist_root(scenario))
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
    fresh = root / _filelist_root(scenario)
    for name in [*names, "test_filelist.txt"]:
        path = folder / name
        if not path.is_file():
            raise UserError(
                f"CORe50 file list {path} is missing; delete {fresh} "
                "and run again to download it afresh"
            )
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UserError(
                    f"CORe50 file list {path} is corrupt (line {number}); delete "
                    f"{fresh} and run again to download it afresh"
                )


def _category_filelists(root: Path, scenario: str, run: int, mini: bool) -> None:
    """Avalanche writes the category-level file lists (`<lists>_cat/`) once, on its first load,
    from the object-level lists there then: NICv2 lists downloaded after an NI or NC load have
    none. Then Avalanche's own writer runs again (it rewrites them all)."""
    if not (root / "NIC_v2_79_cat").exists():
        return  # Avalanche writes them on this load
    folder = root / f"{FILELIST_FOLDERS[scenario]}_cat" / f"run{run}"
    if (folder / "train_batch_00_filelist.txt").is_file():
        return
    from avalanche.benchmarks.datasets.core50.core50 import CORe50Dataset

    ensure_writable(root)
    with contextlib.redirect_stdout(sys.stderr):  # Avalanche's progress chatter
        CORe50Dataset(root=root, mini=mini)._create_cat_filelists()


def _class_names(labels2names: Any, scenario: str, run: int, object_level: bool) -> list[str]:
    from avalanche.benchmarks.datasets.core50 import core50_data

    if not object_level:
        return sorted(core50_data.name2cat, key=core50_data.name2cat.get)
    if scenario != "nc":  # NI and NICv2 labels are the object numbers: label i is folder o<i+1>
        return [f"o{label + 1}" for label in range(50)]
    names = labels2names["nc"][run]  # NC labels follow the run's class order
    return [str(names[label]) for label in range(50)]


def load_real_core50(plan: Plan, data_root: Path | str | None) -> Stream:
    from avalanche.benchmarks.classic import CORe50

    scenario, run = plan.protocol["scenario"], plan.seed
    mini, augment = plan.options["mini"], plan.options["augment"]
    root = resolve_data_root(data_root) / "core50"
    missing = _missing_entries(root, mini, scenario)
    if missing:
        _download_core50(root, mini, missing)
    metadata = _check_metadata(root)
    _check_filelists(root, scenario, run)
    if not (root / "NIC_v2_79_cat").exists():
        ensure_writable(root)  # Avalanche writes the category-level file lists on first load
    if not plan.options["object_level"]:
        _category_filelists(root, scenario, run, mini)
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
        scenario=scenario_kind(scenario),
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


def nicv2_first_objects() -> list[int]:
    """The first object of each category (o1, o6, ..., o46): CORe50's NICv2 first batch holds
    their session 1, in every run."""
    per_category = synthetic.CORE50_OBJECTS // synthetic.CORE50_CATEGORIES
    return list(range(0, synthetic.CORE50_OBJECTS, per_category))


def nicv2_batches(seed: int, n_experiences: int) -> list[list[tuple[int, int]]]:
    """(object id, session) of each NICv2 experience: the first objects' session 1, then the
    other 390 object sessions in `n_experiences - 1` equal batches, each object's sessions in
    temporal order and the objects interleaved in a seed-drawn order, as CORe50's runs are."""
    first = nicv2_first_objects()
    sessions = synthetic.CORE50_TRAIN_SESSIONS
    pending = {
        obj: list(sessions[1:] if obj in first else sessions)
        for obj in range(synthetic.CORE50_OBJECTS)
    }
    turns = [obj for obj, left in pending.items() for _ in left]  # one per pending session
    order = np.random.default_rng([seed, n_experiences]).permutation(turns).tolist()
    rest = [(obj, pending[obj].pop(0)) for obj in order]
    size, remainder = divmod(len(rest), n_experiences - 1)
    if remainder:
        raise ValueError(f"{len(rest)} object sessions do not split into {n_experiences - 1}")
    later = [rest[start : start + size] for start in range(0, len(rest), size)]
    return [[(obj, sessions[0]) for obj in first], *later]


def _object_sessions(
    generated: synthetic.Core50Like, batches: list[list[tuple[int, int]]]
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """(images, object ids) of each batch of (object, session) pairs."""
    objects_of = {s: torch.tensor(objects) for s, (_, objects) in generated.train.items()}
    for batch in batches:
        images, objects = [], []
        for obj, session in batch:
            keep = (objects_of[session] == obj).nonzero().flatten()
            images.append(generated.train[session][0][keep])
            objects += [obj] * len(keep)
        yield torch.cat(images), objects


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
        label_of = position if scenario == "nc" else {o: o for o in range(50)}  # NI, NICv2
        class_names = [f"o{o + 1}" for o in sorted(label_of, key=label_of.__getitem__)]
    else:
        label_of = dict(enumerate(generated.category_of_object))
        class_names = [f"category{c}" for c in range(synthetic.CORE50_CATEGORIES)]

    def labelled(images: torch.Tensor, objects: list[int]) -> ImageTensorDataset:
        return ImageTensorDataset(images, [label_of[o] for o in objects])

    if scenario == "ni":
        train_sets = [labelled(*generated.train[s]) for s in synthetic.CORE50_TRAIN_SESSIONS]
    elif scenario_kind(scenario) == "nic":
        batches = nicv2_batches(plan.seed, EXPERIENCES[scenario])
        train_sets = [labelled(*batch) for batch in _object_sessions(generated, batches)]
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
        scenario=scenario_kind(scenario),
        source="synthetic",
        benchmark=benchmark,
        protocol=plan.protocol,
        num_classes=len(class_names),
        image_shape=(3, size, size),
        train_deterministic=not augment,
        class_names=class_names,
    )


# ---------------------------------------------------------------- registered benchmarks


def build_core50(
    scenario: str, data: str, data_root: Path | None, seed: int, options: dict[str, Any]
) -> Stream:
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
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """CORe50 new instances: 8 experiences, one session each, all 50 objects."""
    return build_core50("ni", data, data_root, seed, options)


@BENCHMARKS.register(
    "core50_nc",
    planner=partial(plan_core50, "nc"),
    params={"real": RealOptions, "synthetic": SyntheticOptions, "folder": FolderNcOptions},
)
def core50_nc(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """CORe50 new classes: 9 experiences with 10, 5, ..., 5 objects."""
    return build_core50("nc", data, data_root, seed, options)


def _nicv2_options() -> dict[str, type[Options]]:
    return {"real": RealOptions, "synthetic": SyntheticOptions}  # no folder source: no sessions


@BENCHMARKS.register(
    "core50_nicv2_79", planner=partial(plan_core50, "nicv2_79"), params=_nicv2_options()
)
def core50_nicv2_79(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """CORe50 NICv2-79: 10 objects' first session, then 78 experiences of 5 object sessions."""
    return build_core50("nicv2_79", data, data_root, seed, options)


@BENCHMARKS.register(
    "core50_nicv2_196", planner=partial(plan_core50, "nicv2_196"), params=_nicv2_options()
)
def core50_nicv2_196(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """CORe50 NICv2-196: 10 objects' first session, then 195 experiences of 2 object sessions."""
    return build_core50("nicv2_196", data, data_root, seed, options)


@BENCHMARKS.register(
    "core50_nicv2_391", planner=partial(plan_core50, "nicv2_391"), params=_nicv2_options()
)
def core50_nicv2_391(
    *, data: str = "real", data_root: Path | None = None, seed: int = 0, **options: Any
) -> Stream:
    """CORe50 NICv2-391: 10 objects' first session, then 390 experiences of one object session."""
    return build_core50("nicv2_391", data, data_root, seed, options)
