"""Benchmark options: each benchmark declares them per data source as an `Options` model (next to
its planner) and registers them with its factory (`params={"real": ..., "synthetic": ...}`)."""

from __future__ import annotations

from typing import Any

from cycl_bench.params import Options, check


def resolve_options(
    benchmark: str, source: str, given: dict[str, Any], declaration: type[Options]
) -> dict[str, Any]:
    """The declaration's defaults overridden by `given` (YAML values or `--option` text),
    each value of the declared type; a one-line UserError for an unknown option or bad value."""
    owner = f"{benchmark} with {source} data"
    return check(declaration, given, owner=owner, kind="option").model_dump()
