"""One registry mechanism: name -> factory, for benchmarks, backbones and strategies.

Entries register themselves with a decorator next to their definition; the module that
holds them is imported the first time the registry is read, so `import cycl_bench` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from cycl_bench.errors import UserError, suggest


class Registry:
    def __init__(self, kind: str, module: str):
        self.kind = kind
        self._module = module
        self._entries: dict[str, Callable[..., Any]] = {}
        self._details: dict[str, dict[str, Any]] = {}

    def register(
        self, name: str, **details: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a factory under `name`; `details` travel with the entry: every entry's
        `params` (its parameters declared once, `cycl_bench.params`; a benchmark's options per
        data source), a benchmark's `planner` (its protocol without loading data)."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = factory
            self._details[name] = details
            return factory

        return decorator

    @property
    def plural(self) -> str:
        return self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + "s"

    def _load(self) -> None:
        importlib.import_module(self._module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        self._load()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise UserError(
                f"unknown {self.kind} '{name}'{suggest(name, self._entries)}; known: {known}"
            )
        return self._entries[name]

    def detail(self, name: str, key: str) -> Any:
        """A detail given at registration (KeyError if the entry has none of that name)."""
        self.get(name)
        return self._details[name][key]

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def describe(self, name: str) -> str:
        """First line of the factory's docstring, for `list`."""
        doc = (self.get(name).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


BENCHMARKS = Registry("benchmark", "cycl_bench.data")
BACKBONES = Registry("backbone", "cycl_bench.models")
STRATEGIES = Registry("strategy", "cycl_bench.strategies")

ALL = (BENCHMARKS, BACKBONES, STRATEGIES)
