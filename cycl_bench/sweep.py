"""A sweep: experiments x a grid of config overrides, one run folder per point, and its index.

`--grid KEY=V1,V2,...` is an axis (values are YAML, split at the commas outside brackets and
quotes, so `seeds=[0,1,2]` is one value, the same for every point); the points are every
experiment x every combination of the axes' values. The index
(`<out>/sweeps/<timestamp>/index.json`) lists each point's experiment, overrides and run folder;
`compare` reads it.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cycl_bench.errors import UserError

INDEX_FILE = "index.json"
SWEEPS_DIR = "sweeps"
BRACKETS = {"[": "]", "{": "}", "(": ")"}


@dataclass(frozen=True)
class Point:
    experiment: str
    grid: dict[str, str]
    """This point's value of each grid axis (KEY -> YAML value)."""
    overrides: list[str] = field(default_factory=list)
    """Every override of this point: the sweep's plain ones, then its grid values."""

    def describe(self) -> str:
        values = " ".join(f"{key}={value}" for key, value in self.grid.items())
        return f"{self.experiment} {values}".strip()


def split_values(text: str) -> list[str]:
    """'8,16,32' -> ['8', '16', '32']; commas inside brackets or quotes do not split
    ('[0,1],[2]' -> ['[0,1]', '[2]'])."""
    values, current, closing, quote = [], "", [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in BRACKETS:
            closing.append(BRACKETS[char])
        elif closing and char == closing[-1]:
            closing.pop()
        elif char == "," and not closing:
            values.append(current.strip())
            current = ""
            continue
        current += char
    return [*values, current.strip()]


def parse_axis(text: str) -> tuple[str, list[str]]:
    """'KEY=V1,V2' -> ('KEY', ['V1', 'V2']); a UserError for a missing key or an empty value."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--grid {text}: give an axis as KEY=V1,V2,... (a config override key)")
    if not values.strip():
        raise UserError(f"--grid {text}: no values for {key}; give {key}=V1,V2,...")
    parsed = split_values(values)
    if any(not value for value in parsed):
        raise UserError(f"--grid {text}: an empty value in the list of {key}; give {key}=V1,V2,...")
    return key, parsed


def expand(experiments: list[str], axes: list[str], overrides: list[str]) -> list[Point]:
    """Every experiment x every combination of the axes' values, in the order given."""
    grid: dict[str, list[str]] = {}
    for text in axes:
        key, values = parse_axis(text)
        if key in grid:
            raise UserError(f"--grid names {key} twice; give all its values in one KEY=V1,V2")
        grid[key] = values
    plain = {item.partition("=")[0].strip() for item in overrides}
    both = sorted(plain & set(grid))
    if both:
        raise UserError(f"{both[0]} is both a grid axis and an override; give it once")
    # an axis of one value (`seeds=[0,1,2]` after --grid) is an override of every point
    overrides = [*overrides, *(f"{k}={v[0]}" for k, v in grid.items() if len(v) == 1)]
    grid = {key: values for key, values in grid.items() if len(values) > 1}
    points = []
    for experiment in experiments:
        for combination in itertools.product(*grid.values()):
            chosen = dict(zip(grid, combination, strict=True))
            point_overrides = [*overrides, *(f"{k}={v}" for k, v in chosen.items())]
            points.append(Point(experiment, chosen, point_overrides))
    return points


def write_index(sweep_dir: Path, points: list[Point], run_dirs: list[Path]) -> Path:
    """`index.json`: each point's experiment, grid values, overrides and run folder (relative
    to the sweep folder, so the two can move together)."""
    path = Path(sweep_dir) / INDEX_FILE
    entries = [
        {
            "experiment": point.experiment,
            "grid": point.grid,
            "overrides": point.overrides,
            "run_dir": os.path.relpath(run_dir, sweep_dir),
        }
        for point, run_dir in zip(points, run_dirs, strict=True)
    ]
    path.write_text(json.dumps({"points": entries}, indent=2) + "\n")
    return path


def run_dirs_of(sweep_dir: Path) -> list[Path]:
    """The run folders a sweep's index lists; a UserError if it is not a sweep index."""
    path = Path(sweep_dir) / INDEX_FILE
    try:
        points = json.loads(path.read_text())["points"]
        return [Path(sweep_dir) / point["run_dir"] for point in points]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{path} is not a sweep index ({type(error).__name__}: {error}); give the folder "
            "a sweep wrote, or the run folders"
        ) from None


def is_sweep(path: Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()
