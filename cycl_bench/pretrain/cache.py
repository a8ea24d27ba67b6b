"""The pretrained-checkpoint cache: one folder per hash of everything that defines the weights.

Key = sha256 of (resolved pretraining config, backbone name and its constructor kwargs, stream
protocol hash, seed, fast). A folder holds `backbone.pt` (a plain state dict), `pretrain.json`
(the key's inputs, the run's numbers and the checkpoint's sha256), `metrics.csv` and
`schedule.png`. Entries are written to a temporary folder and renamed, so a crashed run never
leaves a half entry behind; a checkpoint damaged afterwards (a full disk, an edit, a truncated
copy) no longer has the sha256 written with it, and `damaged` says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

CHECKPOINT = "backbone.pt"
SIDECAR = "pretrain.json"


def cache_key(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def entry_dir(cache_dir: Path, backbone: str, key: str) -> Path:
    return Path(cache_dir) / f"{backbone}-{key}"


def checkpoint_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    with open(folder / CHECKPOINT, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_entry(folder: Path, key: str) -> dict[str, Any] | None:
    """The sidecar of a complete entry with this key, else None."""
    sidecar = folder / SIDECAR
    if not (sidecar.is_file() and (folder / CHECKPOINT).is_file()):
        return None
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("cache_key") == key else None


def damaged(folder: Path, record: dict[str, Any]) -> bool:
    """Whether the entry's checkpoint is not the file written with it (an entry written before
    the sha256 was recorded: whether it no longer loads)."""
    recorded = record.get("checkpoint_sha256")
    if recorded is not None:
        return checkpoint_sha256(folder) != recorded
    import pickle

    import torch

    try:
        torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError):
        return True
    return False


def move_aside(folder: Path) -> Path:
    """Move an entry out of the way (never deleted: it may be someone's only copy)."""
    aside = folder.with_name(f".{folder.name}.aside-{uuid.uuid4().hex[:8]}")
    os.replace(folder, aside)
    return aside


def staging_dir(folder: Path) -> Path:
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    return staging


def commit_entry(staging: Path, folder: Path, key: str) -> None:
    """Move a finished staging folder into place, unless another run completed it first.

    Something else under the entry's name (a broken entry, or anything a user put in a
    `--cache-dir` folder) is moved aside to `.<name>.aside-<id>`, never deleted."""
    if read_entry(folder, key) is not None:
        shutil.rmtree(staging)  # our own staging copy
        return
    if folder.exists() or folder.is_symlink():
        move_aside(folder)
    os.replace(staging, folder)
