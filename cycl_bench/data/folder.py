"""A user's own images as a stream.

NI (`core50_ni`): `PATH/<session>/<class>/*.png|jpg`, one experience per session folder in
natural order; the session folder named `test` is the shared test set.
NC (`core50_nc`): `PATH/<class>/*.png|jpg`; the classes, in an order drawn from the stream
seed, are split into experiences by the `split` option (`2`: two classes per experience, or
sizes such as `4,2,2`); a `test_fraction` of every class, drawn with the same seed, is held out.
Building the stream reads only each image's header (a file that is not an image is refused by
name); the pixels are decoded on first use, converted to RGB, resized to `image_size` x
`image_size` and kept, so summarizing a stream (`data`) costs no decoding.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from cycl_bench.data.assemble import ImageTensorDataset, make_stream
from cycl_bench.data.base import Stream
from cycl_bench.data.options import resolve_options
from cycl_bench.data.protocol import Plan
from cycl_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from cycl_bench.data.transforms import train_transform as make_train_transform
from cycl_bench.errors import UserError
from cycl_bench.params import MAX_IMAGE_SIZE, Options

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TEST_SESSION = "test"


class FolderNiOptions(Options):
    image_size: int = Field(32, ge=1, le=MAX_IMAGE_SIZE)
    """images are resized to this square"""
    augment: bool = False
    """random flip and padded crop on training images"""


class FolderNcOptions(FolderNiOptions):
    split: str = "2"
    """classes per experience (2), or the sizes of the experiences (4,2,2)"""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """share of every class held out as the test set"""


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; check the path after folder:")


def _fingerprint(root: Path, files: list[Path]) -> str:
    """Names and sizes of every image: a changed tree gives a different protocol hash."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def _class_tree(folder: Path) -> dict[str, list[Path]]:
    """class name -> images, for `folder/<class>/*`; classes without images are left out."""
    tree = {sub.name: _images_in(sub) for sub in _subfolders(folder)}
    return {name: files for name, files in tree.items() if files}


# ---------------------------------------------------------------- NI: session folders


def _ni_layout(root: Path) -> tuple[dict[str, dict[str, list[Path]]], dict[str, list[Path]]]:
    _check_root(root)
    sessions = {s.name: _class_tree(s) for s in _subfolders(root) if s.name != TEST_SESSION}
    sessions = {name: tree for name, tree in sessions.items() if tree}
    if not sessions:
        raise UserError(
            f"no images found in {root}: expected {root}/<session>/<class>/*.png|jpg "
            f"and a {root}/{TEST_SESSION}/<class>/ folder"
        )
    if not (root / TEST_SESSION).is_dir() or not _class_tree(root / TEST_SESSION):
        raise UserError(
            f"no test set in {root}: put test images in {root}/{TEST_SESSION}/<class>/*.png|jpg"
        )
    test = _class_tree(root / TEST_SESSION)
    trained = sorted({c for tree in sessions.values() for c in tree})
    for name in trained:
        if name not in test:
            raise UserError(
                f"class '{name}' has no test images: add some to {root}/{TEST_SESSION}/{name}/"
            )
    return sessions, test


def plan_folder_ni(name: str, root: Path, seed: int, options: dict) -> Plan:
    options = resolve_options(name, "folder", options, FolderNiOptions)
    sessions, test = _ni_layout(root)
    classes = sorted({c for tree in [*sessions.values(), test] for c in tree})
    files = [f for tree in [*sessions.values(), test] for fs in tree.values() for f in fs]
    protocol = {
        "dataset": "folder",
        "scenario": "ni",
        "sessions": list(sessions),
        "classes": classes,
        "image_size": options["image_size"],
        "source": "folder",
        "fingerprint": _fingerprint(root, files),
    }
    return Plan(name, "folder", root, seed, options, protocol)


# ---------------------------------------------------------------- NC: class folders


def _parse_split(text: str, n_classes: int) -> list[int]:
    """'2' -> [2, 2, ...]; '4,2,2' -> [4, 2, 2]; sizes must add up to the class count."""
    try:
        sizes = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise UserError(f"option split={text!r}: use a number (e.g. 2) or sizes (4,2,2)") from None
    if any(size < 1 for size in sizes):
        raise UserError(f"option split={text!r}: every experience needs at least one class")
    if len(sizes) == 1:
        if n_classes % sizes[0]:
            raise UserError(
                f"option split={text}: {n_classes} classes do not divide into groups of "
                f"{sizes[0]}; give the sizes instead, e.g. split="
                + ",".join([str(sizes[0])] * (n_classes // sizes[0]) + [str(n_classes % sizes[0])])
            )
        sizes = sizes * (n_classes // sizes[0])
    if sum(sizes) != n_classes:
        raise UserError(
            f"option split={text!r} covers {sum(sizes)} classes; the folder has {n_classes}"
        )
    return sizes


def _held_out(files: list[Path], fraction: float, rng: np.random.Generator) -> set[int]:
    count = min(len(files) - 1, max(1, round(fraction * len(files))))
    return set(rng.permutation(len(files))[:count].tolist())


def plan_folder_nc(name: str, root: Path, seed: int, options: dict) -> Plan:
    options = resolve_options(name, "folder", options, FolderNcOptions)
    _check_root(root)
    tree = _class_tree(root)
    if not tree:
        raise UserError(f"no images found in {root}: expected {root}/<class>/*.png|jpg")
    for class_name, files in tree.items():
        if len(files) < 2:
            raise UserError(
                f"class '{class_name}' has {len(files)} image in {root}/{class_name}; each class "
                "needs at least 2 (some go to the test set)"
            )
    names = sorted(tree)
    order = np.random.default_rng(seed).permutation(len(names)).tolist()
    sizes = _parse_split(options["split"], len(names))
    protocol = {
        "dataset": "folder",
        "scenario": "nc",
        "classes": names,
        "class_order": order,
        "classes_per_experience": sizes,
        "test_fraction": options["test_fraction"],
        "seed": seed,
        "image_size": options["image_size"],
        "source": "folder",
        "fingerprint": _fingerprint(root, [f for n in names for f in tree[n]]),
    }
    return Plan(name, "folder", root, seed, options, protocol)


# ---------------------------------------------------------------- reading and building


def _unreadable(path: Path, error: Exception) -> UserError:
    return UserError(f"cannot read image {path} ({error}); fix or remove it")


MAX_IMAGE_PIXELS = 50_000_000
"""Pixels an image may have (a 7000 x 7000 photo): a larger one is refused from its header, before
any pixel is decoded (a 20000 x 20000 PNG of a few kB decodes to 1.2 GB: a decompression bomb)."""
READ_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
)


def _check_size(path: Path, image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(
            f"image {path} is {width} x {height} pixels, more than the "
            f"{MAX_IMAGE_PIXELS:,} an image may have; shrink or remove it"
        )


def _open(path: Path) -> Image.Image:
    """Pillow's image at `path`, its header read; the size is checked here (`_check_size`), so
    Pillow's decompression-bomb warning (above 89 M pixels) is not shown on top."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    try:
        _check_size(path, image)
    except UserError:
        image.close()
        raise
    return image


def check_images(files: list[Path]) -> None:
    """Every file opens as an image of a sane size (its header only: no pixel is decoded)."""
    for path in files:
        try:
            with _open(path):
                pass
        except READ_ERRORS as error:
            raise _unreadable(path, error) from None


def _rgb(image: Image.Image) -> Image.Image:
    """RGB at 8 bits. A 16- or 32-bit grayscale image ('I;16', 'I') is scaled to 0..255 (Pillow's
    own conversion clips every value above 255 to white)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() <= 65535 else values.max()
        scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """The image at `path` decoded as 8-bit RGB (16-bit scaled); an unreadable, truncated or
    oversized file is a UserError naming it. The loader of every image folder, streams' and
    pretraining's."""
    path = Path(path)
    try:
        with _open(path) as image:
            rgb = _rgb(image)
            rgb.load()
            return rgb
    except READ_ERRORS as error:
        raise _unreadable(path, error) from None


def read_image(path: Path, image_size: int) -> torch.Tensor:
    """uint8 (3, S, S); an unreadable file is named in the error."""
    image = load_rgb(path).resize((image_size, image_size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


class FolderImages(ImageTensorDataset):
    """Image files as an `ImageTensorDataset` whose images are decoded on first use, then kept."""

    def __init__(self, files: list[Path], targets: list[int], image_size: int):
        super().__init__(
            torch.empty(len(files), 3, image_size, image_size, dtype=torch.uint8), targets
        )
        self.files = list(files)
        self.image_size = image_size
        self.decoded = torch.zeros(len(files), dtype=torch.bool)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not self.decoded[index]:
            self.images[index] = read_image(self.files[index], self.image_size)
            self.decoded[index] = True
        return super().__getitem__(index)


def _labelled(tree: dict[str, list[Path]], label_of: dict[str, int], size: int) -> FolderImages:
    files = [f for name in tree for f in tree[name]]
    labels = [label_of[name] for name in tree for _ in tree[name]]
    check_images(files)
    return FolderImages(files, labels, size)


def build_folder_stream(plan: Plan) -> Stream:
    from avalanche.benchmarks import dataset_benchmark

    size = plan.options["image_size"]
    augment = plan.options["augment"]
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    root = plan.folder
    assert root is not None  # a folder plan (`plan_folder_ni`, `plan_folder_nc`) has its root
    if plan.protocol["scenario"] == "ni":
        sessions, test = _ni_layout(root)
        classes = plan.protocol["classes"]
        label_of = {name: i for i, name in enumerate(classes)}
        train_sets = [_labelled(tree, label_of, size) for tree in sessions.values()]
        test_set = _labelled(test, label_of, size)
    else:
        tree = _class_tree(root)
        names = plan.protocol["classes"]
        order = [names[i] for i in plan.protocol["class_order"]]
        label_of = {name: i for i, name in enumerate(order)}  # label = position in class order
        classes = order
        rng = np.random.default_rng([plan.seed, 1])
        held = {name: _held_out(tree[name], plan.options["test_fraction"], rng) for name in order}
        train_tree = {n: [f for i, f in enumerate(tree[n]) if i not in held[n]] for n in order}
        test_tree = {n: [f for i, f in enumerate(tree[n]) if i in held[n]] for n in order}
        train_sets, start = [], 0
        for count in plan.protocol["classes_per_experience"]:
            group = order[start : start + count]
            train_sets.append(_labelled({n: train_tree[n] for n in group}, label_of, size))
            start += count
        test_set = _labelled(test_tree, label_of, size)
    benchmark = dataset_benchmark(
        train_sets,
        [test_set],
        complete_test_set_only=True,
        train_transform=make_train_transform(mean, std, image_size=size, augment=augment),
        eval_transform=eval_transform(mean, std),
    )
    return make_stream(
        name=plan.name,
        scenario=plan.protocol["scenario"],
        source="folder",
        benchmark=benchmark,
        protocol=plan.protocol,
        num_classes=len(classes),
        image_shape=(3, size, size),
        train_deterministic=not augment,
        class_names=classes,
    )
