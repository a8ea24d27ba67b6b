"""The protocol of a stream (everything that defines it) computed without loading any data.

The leaderboard validator checks submitted protocol hashes offline, so every benchmark registers
with its factory a `planner` that resolves options and returns the protocol
(`BENCHMARKS.register(name, planner=...)`); the factory uses the same planner, so
`Stream.protocol == protocol_of(...)` by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cycl_bench.data.base import Source, parse_source
from cycl_bench.errors import UserError
from cycl_bench.registry import BENCHMARKS


@dataclass
class Plan:
    """A benchmark request resolved: where the data comes from, typed options, protocol."""

    name: str
    source: Source
    folder: Path | None
    seed: int
    options: dict[str, Any]
    protocol: dict[str, Any]


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"stream seed {seed!r} must be a non-negative integer")
    return seed


def request(data: str, seed: Any) -> tuple[Source, Path | None, int]:
    source, folder = parse_source(data)
    return source, folder, check_seed(seed)


def protocol_of(name: str, *, data: str = "real", seed: int = 0, **options: Any) -> dict:
    """The protocol `BENCHMARKS.build(name, data=data, seed=seed, **options)` would have."""
    planner = BENCHMARKS.detail(name, "planner")  # unknown names: UserError listing the known
    return planner(data=data, seed=seed, options=options).protocol
