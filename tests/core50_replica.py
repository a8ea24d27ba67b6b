"""A miniature CORe50 on disk, in the exact layout Avalanche 0.6.0's `CORe50` reads.

`<data root>/core50/` gets `core50_128x128/` and `core50_32x32/` image trees
(`s<session>/o<object>/C_<ss>_<oo>_<fff>.png`), `batches_filelists/{NI_inc,NC_inc}/run<r>/`
(`train_batch_XX_filelist.txt`, `test_filelist.txt`, lines `path label`), the NICv2 file lists
of `batches_filelists_NICv2.zip` (`NIC_v2_{79,196,391}/run<r>/`, the same files), and the four
pickles `paths.pkl`, `LUP.pkl`, `labels.pkl`, `labels2names.pkl`, indexed
`[scenario][run][batch]` as Avalanche's `CORe50Dataset` reads them. Only the number of frames
per object and session differs from the real dataset (300 there, `frames` here).

The NICv2 lists are built as CORe50's own are (read from the published lists): batch 0 is
session 1 of o1, o6, ..., o46 in every run; the other 390 object sessions follow, 5, 2 or 1 per
batch, each object's sessions in temporal order, the objects interleaved in a run-drawn order;
labels are the object numbers. Each image's pixels encode its object and session (red = 5 x
object index, green = 20 x session), so a test can tell which object session an image is.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

OBJECTS = 50
TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
TEST_SESSIONS = (3, 7, 10)
CATEGORIES = (
    "plug_adapter",
    "mobile_phone",
    "scissor",
    "light_bulb",
    "can",
    "glass",
    "ball",
    "marker",
    "cup",
    "remote_control",
)


def object_name(obj: int) -> str:
    """CORe50 names objects by category and number: o1..o5 are plug_adapter1..5, and so on."""
    return f"{CATEGORIES[obj // 5]}{obj % 5 + 1}"


def image_path(session: int, obj: int, frame: int) -> str:
    return f"s{session}/o{obj + 1}/C_{session:02d}_{obj + 1:02d}_{frame:03d}.png"


def _write_images(folder: Path, size: int, frames: int) -> None:
    for session in (*TRAIN_SESSIONS, *TEST_SESSIONS):
        for obj in range(OBJECTS):
            for frame in range(frames):
                path = folder / image_path(session, obj, frame)
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = np.full((size, size, 3), (obj * 5, session * 20, frame * 40), np.uint8)
                pixels[: size // 4, : size // 4] = 255  # a mark, so no image is one flat colour
                Image.fromarray(pixels).save(path)


NICV2_FIRST_OBJECTS = tuple(range(0, OBJECTS, 5))  # o1, o6, ..., o46: one of each category
NICV2_SESSIONS_PER_BATCH = {79: 5, 196: 2, 391: 1}


def nicv2_object_sessions(run: int, n_batches: int) -> list[list[tuple[int, int]]]:
    """(object index, session) of each NICv2 batch of run `run`."""
    pending = {
        o: list(TRAIN_SESSIONS[1:] if o in NICV2_FIRST_OBJECTS else TRAIN_SESSIONS)
        for o in range(OBJECTS)
    }
    turns = [o for o in range(OBJECTS) for _ in pending[o]]
    order = np.random.default_rng(200 + run).permutation(turns).tolist()
    rest = [(o, pending[o].pop(0)) for o in order]
    size = NICV2_SESSIONS_PER_BATCH[n_batches]
    return [[(o, 1) for o in NICV2_FIRST_OBJECTS]] + [
        rest[i : i + size] for i in range(0, len(rest), size)
    ]


def _test_set(frames: int) -> list[tuple[str, int]]:
    """Every object of the test sessions (label = object index)."""
    return [
        (image_path(s, o, f), o)
        for s in TEST_SESSIONS
        for o in range(OBJECTS)
        for f in range(frames)
    ]


def _nicv2_batches(n_batches: int, run: int, frames: int) -> list[list[tuple[str, int]]]:
    """The run's NICv2 batches (label = object index, as in the real lists), then the test set."""
    batches = [
        [(image_path(s, o, f), o) for o, s in batch for f in range(frames)]
        for batch in nicv2_object_sessions(run, n_batches)
    ]
    return [*batches, _test_set(frames)]


def _write_filelist(path: Path, entries: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{image} {label}\n" for image, label in entries))


def _ni_batches(run: int, frames: int) -> list[list[tuple[str, int]]]:
    """8 train batches (one session each, run-dependent session order), then the test set."""
    order = np.random.default_rng(run).permutation(TRAIN_SESSIONS).tolist()
    batches = [
        [(image_path(s, o, f), o) for o in range(OBJECTS) for f in range(frames)] for s in order
    ]
    return [*batches, _test_set(frames)]


def nc_order(run: int) -> list[int]:
    return np.random.default_rng(100 + run).permutation(OBJECTS).tolist()


def _nc_batches(run: int, frames: int) -> list[list[tuple[str, int]]]:
    """9 train batches (10, then 5 objects each, every train session); label = position of
    the object in the run's class order, as in the real NC file lists; then the test set."""
    order = nc_order(run)
    label = {obj: i for i, obj in enumerate(order)}
    groups = [order[:10]] + [order[i : i + 5] for i in range(10, OBJECTS, 5)]

    def entries(sessions, objects):
        return [
            (image_path(s, o, f), label[o])
            for s in sessions
            for o in objects
            for f in range(frames)
        ]

    return [*(entries(TRAIN_SESSIONS, g) for g in groups), entries(TEST_SESSIONS, order)]


def write_nicv2_filelists(root: Path, *, frames: int = 1, runs: tuple[int, ...] = (0,)) -> None:
    """`root/NIC_v2_{79,196,391}/run<r>/`: what batches_filelists_NICv2.zip extracts to."""
    for n_batches in NICV2_SESSIONS_PER_BATCH:
        for run in runs:
            folder = Path(root) / f"NIC_v2_{n_batches}" / f"run{run}"
            batches = _nicv2_batches(n_batches, run, frames)
            for i, batch in enumerate(batches[:-1]):
                _write_filelist(folder / f"train_batch_{i:02d}_filelist.txt", batch)
            _write_filelist(folder / "test_filelist.txt", batches[-1])


def write_core50_replica(
    data_root: Path, *, frames: int = 1, runs: tuple[int, ...] = (0,), nicv2: bool = True
) -> Path:
    """Write the replica under `data_root/core50` and return that folder; `nicv2=False` leaves
    out the NICv2 file lists (a CORe50 folder from before they were downloaded)."""
    root = Path(data_root) / "core50"
    _write_images(root / "core50_128x128", 128, frames)
    _write_images(root / "core50_32x32", 32, frames)
    if nicv2:
        write_nicv2_filelists(root, frames=frames, runs=runs)

    scenarios = {"ni": _ni_batches, "nc": _nc_batches}
    folders = {"ni": "NI_inc", "nc": "NC_inc"}
    # paths.pkl follows NI run 0's batches, so labels.pkl['ni'][0] concatenated indexes it
    paths = [image for batch in _ni_batches(0, frames) for image, _ in batch]
    index_of = {image: i for i, image in enumerate(paths)}
    lup: dict[str, list] = {}
    labels: dict[str, list] = {}
    names: dict[str, dict] = {}
    for scenario, make_batches in scenarios.items():
        lup[scenario], labels[scenario], names[scenario] = [], [], {}
        for run in range(10):
            batches = make_batches(run, frames)
            lup[scenario].append([[index_of[image] for image, _ in b] for b in batches])
            labels[scenario].append([[label for _, label in b] for b in batches])
            order = nc_order(run) if scenario == "nc" else list(range(OBJECTS))
            names[scenario][run] = {i: object_name(obj) for i, obj in enumerate(order)}
            if run in runs:
                folder = root / "batches_filelists" / folders[scenario] / f"run{run}"
                for i, batch in enumerate(batches[:-1]):
                    _write_filelist(folder / f"train_batch_{i:02d}_filelist.txt", batch)
                _write_filelist(folder / "test_filelist.txt", batches[-1])
    for name, value in [
        ("paths.pkl", paths),
        ("LUP.pkl", lup),
        ("labels.pkl", labels),
        ("labels2names.pkl", names),
    ]:
        with open(root / name, "wb") as handle:
            pickle.dump(value, handle)
    return root
