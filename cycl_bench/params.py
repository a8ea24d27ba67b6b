"""Parameters declared once: a pydantic model gives the defaults, types, ranges, one-line
descriptions and the message for a bad value.

Every registered strategy, backbone and benchmark declares what it takes as a `Params` model and
registers it with its factory (`STRATEGIES.register("ewc", params=EwcParams)`; a benchmark
registers one `Options` model per data source). `check` validates what a user gave against a
declaration and turns pydantic's error into a one-line `UserError`; `describe` lists the
parameters for `python -m cycl_bench list --details`.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo

from cycl_bench.errors import UserError, suggest
from cycl_bench.quant.bits import FLOAT_GRAD_BITS, GRAD_BITS_RANGE, check_grad_bits

# Physical upper bounds of what a user gives: far above any real setting, below what would run
# for days or ask for more memory than a machine has (a 100000-pixel square image is 30 GB).
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_MEMORY = 10_000_000
"""replay or latent memory, in samples"""
MAX_IMAGE_SIZE = 1024
MAX_IMAGES = 100_000
"""images per object or per class of a synthetic or subsampled stream"""
MAX_PROCESSES = 256
"""training processes (DDP devices) or data-loading workers one command starts"""


class Params(BaseModel):
    """Strict: an integer parameter refuses True and 1.0, a number refuses "0.1", a flag "yes".
    A field's docstring is its description."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,  # a learning rate of inf or nan trains a model of NaNs
    )


class Options(Params):
    """Benchmark options: values may also be text (`--option image_size=64` on the command line),
    parsed to the field's type (`true/false/yes/no/1/0` for a flag); a bool is still no number."""

    model_config = ConfigDict(strict=False, coerce_numbers_to_str=True)

    @field_validator("*", mode="before")
    @classmethod
    def _a_bool_is_no_number(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None  # a field validator always validates a field
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation is not bool:
            raise ValueError("a bool where a value of another type is expected")
        return value


GradBits = Annotated[
    int,
    AfterValidator(check_grad_bits),
    Field(
        json_schema_extra={
            "allowed": f"from {GRAD_BITS_RANGE[0]} to {GRAD_BITS_RANGE[1]} "
            f"({FLOAT_GRAD_BITS} = float)"
        }
    ),
]
"""A gradient bit width, checked by `quant.bits.check_grad_bits` (its range and message)."""

P = TypeVar("P", bound=Params)


def check(
    declaration: type[P], values: Mapping[str, Any], *, owner: str, kind: str = "parameter"
) -> P:
    """`values` validated against `declaration` (defaults filled in), or a one-line UserError:
    `owner` names whose parameters they are ("strategy 'ewc'"), `kind` what one is called."""
    try:
        return declaration.model_validate(dict(values))
    except ValidationError as error:
        raise UserError(_explain(error, declaration, owner, kind)) from None


def _explain(error: ValidationError, declaration: type[Params], owner: str, kind: str) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    valid = sorted(declaration.model_fields)
    if first["type"] == "extra_forbidden":
        return (
            f"unknown {kind} '{name}' for {owner}{suggest(name, valid)}; "
            f"valid {kind}s: {', '.join(valid)}"
        )
    field = declaration.model_fields[name]
    if first["type"] == "missing":
        return f"{owner} needs the {kind} {name} ({allowed(field, with_type=True)})"
    if first["type"] == "finite_number":  # inf, nan, or a YAML number beyond float range
        return f"{name}={first['input']!r} must be finite: {allowed(field, with_type=True)}"
    return f"{name}={first['input']!r} must be {allowed(field, with_type=True)}"


# -- describing a declaration ------------------------------------------------------------------


def _choices(annotation: Any) -> tuple[Any, ...] | None:
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None


def type_name(field: FieldInfo) -> str:
    """'int', 'float', 'bool', 'text' or 'choice'."""
    if _choices(field.annotation) is not None:
        return "choice"
    names: dict[object, str] = {bool: "bool", int: "int", float: "float", str: "text"}
    return names.get(field.annotation, str(field.annotation))


_TYPE_PHRASES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "text": "a text",
}
_POSITIVE = {
    ("int", ">= 1"): "a positive integer",
    ("int", "> 0"): "a positive integer",
    ("float", "> 0"): "a positive number",
}


def _bounds(field: FieldInfo) -> str:
    limits = {
        key: getattr(item, key)
        for item in field.metadata
        for key in ("ge", "gt", "le", "lt")
        if getattr(item, key, None) is not None
    }
    if "ge" in limits and "le" in limits:
        return f"from {_number(limits['ge'])} to {_number(limits['le'])}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{symbols[key]} {_number(value)}" for key, value in limits.items())


def _number(value: float) -> str:
    """10000000 as written (not 1e+07), 0.0005 as 0.0005."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def allowed(field: FieldInfo, *, with_type: bool = False) -> str:
    """What a value must be: 'from 2 to 16', '> 0', 'adam, sgd' (with the type in front:
    'an integer from 2 to 16', 'one of adam, sgd'); '' when any value of the type goes."""
    choices = _choices(field.annotation)
    if choices is not None:
        text = ", ".join(str(choice) for choice in choices)
        return f"one of {text}" if with_type else text
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    text = str(extra.get("allowed", "")) or _bounds(field)
    if not with_type:
        return text
    kind = type_name(field)
    return _POSITIVE.get((kind, text)) or f"{_TYPE_PHRASES.get(kind, kind)} {text}".rstrip()


def shown(value: Any) -> str:
    """As in YAML: true / false / none."""
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Described:
    """One parameter as `list --details` shows it."""

    name: str
    type: str
    default: str
    allowed: str
    description: str


def describe(declaration: type[Params]) -> list[Described]:
    """Every parameter of a declaration, in declaration order."""
    return [
        Described(
            name=name,
            type=type_name(field),
            default="required" if field.is_required() else shown(field.default),
            allowed=allowed(field),
            description=" ".join((field.description or "").split()),
        )
        for name, field in declaration.model_fields.items()
    ]
