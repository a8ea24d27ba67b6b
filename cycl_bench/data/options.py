"""Benchmark options: typed defaults, values from YAML or `--option key=value` strings alike."""

from __future__ import annotations

from typing import Any

from cycl_bench.errors import UserError, suggest

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UserError(f"option {name}={value!r} is not a boolean; use true or false")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise UserError(f"option {name}={value!r} is not an integer")
    try:
        return int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise UserError(f"option {name}={value!r} is not an integer") from None


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"option {name}={value!r} is not a number") from None


_CONVERTERS = {bool: _as_bool, int: _as_int, float: _as_float, str: lambda name, v: str(v)}


def resolve_options(
    benchmark: str, source: str, given: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """`defaults` overridden by `given`, each value converted to its default's type.

    A default of None means "no default": the value stays None unless given, and is then
    taken as a string (the caller parses it).
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        name = unknown[0]
        valid = ", ".join(sorted(defaults)) or "none"
        raise UserError(
            f"unknown option '{name}' for {benchmark} with {source} data"
            f"{suggest(name, defaults)}; valid options: {valid}"
        )
    resolved = dict(defaults)
    for name, value in given.items():
        kind = type(defaults[name]) if defaults[name] is not None else str
        resolved[name] = _CONVERTERS[kind](name, value)
    return resolved


def require_positive(options: dict[str, Any], *names: str) -> None:
    for name in names:
        if options[name] < 1:
            raise UserError(f"option {name}={options[name]} must be at least 1")
