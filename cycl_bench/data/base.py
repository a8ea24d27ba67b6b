"""What every stream is: an Avalanche benchmark plus what evaluation and results need of it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from cycl_bench.errors import UserError

# new instances, new classes, new instances and classes (CORe50 NICv2: one shared test set)
Scenario = Literal["ni", "nc", "nic"]
Source = Literal["real", "synthetic", "folder"]
_NAMED_SOURCES: tuple[Source, ...] = ("real", "synthetic")


def protocol_hash(protocol: dict[str, Any]) -> str:
    """Stable short hash of everything that defines a stream (canonical JSON, sha256)."""
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dataset_size(dataset: Dataset[Any]) -> int:
    """The length of a map-style dataset (torch's `Dataset` type does not declare one)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no length")
    return len(dataset)


@dataclass
class Stream:
    """A continual-learning stream ready to train and evaluate on.

    `benchmark` is the Avalanche benchmark (its `train_stream` drives training).
    `test_views[j]` is the evaluation set behind column j of the accuracy matrix: one per
    experience for class-incremental streams (the test set split by each experience's
    classes), a single shared test set for the others (NI, NICv2). Items are (x, y, ...).
    """

    name: str
    scenario: Scenario
    source: Source
    benchmark: Any
    test_views: list[Dataset]
    classes_per_experience: list[list[int]]
    num_classes: int
    image_shape: tuple[int, int, int]
    protocol: dict[str, Any]
    class_names: list[str] = field(default_factory=list)
    # True when the train transform has no randomness (a frozen backbone's features can be cached)
    train_deterministic: bool = True

    @property
    def protocol_hash(self) -> str:
        return protocol_hash(self.protocol)

    @property
    def train_stream(self) -> Any:  # Avalanche's stream of training experiences
        return self.benchmark.train_stream

    @property
    def n_experiences(self) -> int:
        return len(self.benchmark.train_stream)

    @property
    def test_sizes(self) -> list[int]:
        return [dataset_size(view) for view in self.test_views]

    def summary(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "scenario": self.scenario,
            "data_source": self.source,
            "experiences": self.n_experiences,
            "classes_per_experience": [len(c) for c in self.classes_per_experience],
            "train_sizes": [len(exp.dataset) for exp in self.benchmark.train_stream],
            "test_sizes": self.test_sizes,
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "train_deterministic": self.train_deterministic,
            "protocol_hash": self.protocol_hash,
        }


def parse_source(data: str) -> tuple[Source, Path | None]:
    """'real' | 'synthetic' | 'folder:PATH' -> (source, path)."""
    if data in _NAMED_SOURCES:
        return data, None
    if data.startswith("folder:") and len(data) > len("folder:"):
        return "folder", Path(data[len("folder:") :]).expanduser()
    raise UserError(f"unknown data source '{data}'; use real, synthetic or folder:PATH")


def default_data_root() -> Path:
    """--data-root, else $CYCL_BENCH_DATA, else the user cache directory."""
    from platformdirs import user_cache_dir

    env = os.environ.get("CYCL_BENCH_DATA")
    return Path(env).expanduser() if env else Path(user_cache_dir("cycl_bench")) / "data"
