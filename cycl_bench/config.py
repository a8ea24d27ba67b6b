"""Shipped configs (inside the package, so a non-editable install finds them)."""

from __future__ import annotations

from importlib import resources


def config_root():
    return resources.files("cycl_bench") / "configs"


def shipped_experiments() -> list[str]:
    folder = config_root() / "experiments"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
