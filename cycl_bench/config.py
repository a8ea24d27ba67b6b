"""Experiment configs: shipped YAML parts composed into one validated, resolved config.

An experiment file (configs/experiments/NAME.yaml) names a benchmark part, a backbone part and
strategy parts (configs/benchmarks/, backbones/, strategies/), and sets pretraining, seeds and the
`fast` preset. The parts live inside the package so a non-editable install finds them.

Resolution order: experiment + parts -> the experiment's `settings` -> `fast` preset (with
--fast) -> command-line flags -> `key=value` overrides -> validation (pydantic; unknown keys are
errors with a suggestion).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cycl_bench.errors import UserError, suggest
from cycl_bench.params import MAX_EPOCHS
from cycl_bench.pretrain.config import PretrainConfig

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def config_root() -> Traversable:
    return resources.files("cycl_bench") / "configs"


def _names(kind: str) -> list[str]:
    folder = config_root() / kind
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def shipped_experiments() -> list[str]:
    return _names("experiments")


def load_part(kind: str, name: str) -> dict[str, Any]:
    """configs/<kind>/<name>.yaml as a dict; UserError naming the shipped ones if missing."""
    path = config_root() / kind / f"{name}.yaml"
    if not path.is_file():
        known = _names(kind)
        singular = kind.rstrip("s")
        raise UserError(
            f"no shipped {singular} config '{name}'{suggest(name, known)}; "
            f"shipped: {', '.join(known)}"
        )
    return yaml.safe_load(path.read_text()) or {}


# -- the resolved config -------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SourceOptions(_Strict):
    """Benchmark options per data source (the sources take different options)."""

    real: dict[str, Any] = Field(default_factory=dict)
    synthetic: dict[str, Any] = Field(default_factory=dict)
    folder: dict[str, Any] = Field(default_factory=dict)


class BenchmarkConfig(_Strict):
    name: str
    seed: int = 0
    """The stream seed (class order, synthetic generation): part of the protocol."""
    options: SourceOptions = Field(default_factory=SourceOptions)

    def options_for(self, data: str) -> dict[str, Any]:
        source = "folder" if data.startswith("folder:") else data
        return dict(getattr(self.options, source, {}))


class BackboneConfig(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


MAX_SEED = 2**32 - 1


class ExperimentConfig(_Strict):
    experiment: str
    description: str = ""
    benchmark: BenchmarkConfig
    backbone: BackboneConfig
    pretrain: PretrainConfig
    # entry name -> {"use": registered strategy (default: the entry name), **params}
    strategy: dict[str, dict[str, Any]]
    # entry name -> its parameters that no published source fixes for this scenario
    untuned: dict[str, list[str]] = Field(default_factory=dict)
    # numpy's and Avalanche's generators take seeds in [0, 2**32); a boolean is no seed
    seeds: list[Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]] = Field(min_length=1)
    eval_every: int = Field(1, ge=1, le=MAX_EPOCHS, strict=True)
    """Evaluate the test views after experience 0, every `eval_every`-th one and the last
    (`continual.loop.evaluated_experiences`); 1: after every experience. Long streams (CORe50
    NICv2) evaluate less often: the evaluation is not what the stream measures, the training is."""
    data: str = "real"
    data_root: str | None = None
    device: str = "cpu"
    threads: int | None = Field(None, ge=1, le=1024, strict=True)
    """Torch threads every cell trains with, on whichever executor runs it (the order of a
    float sum, hence a binary network's numbers, depends on it); None: this machine's torch
    default, resolved and recorded when the run starts (`runner.prepare`)."""
    wandb: Literal["offline", "online", "disabled"] = "offline"
    fast: bool = False

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            raise ValueError(f"seed {repeated[0]} is given twice: each seed trains once")
        return seeds

    @field_validator("strategy")
    @classmethod
    def _some_strategy(cls, entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not entries:
            raise ValueError("at least one strategy is needed")
        return entries

    def strategy_of(self, entry: str) -> tuple[str, dict[str, Any]]:
        """(registered strategy name, its parameters) of a strategy entry."""
        params = dict(self.strategy[entry])
        return params.pop("use", entry), params


def compose(experiment: str, *, fast: bool = False, add: Sequence[str] = ()) -> dict[str, Any]:
    """The experiment's raw dict with its parts filled in (before overrides); `add`: shipped
    strategy parts to run besides the experiment's own, under the same settings."""
    raw = load_part("experiments", experiment)
    raw["experiment"] = experiment
    preset = raw.pop("fast_preset", {}) or {}
    raw["benchmark"] = load_part("benchmarks", raw["benchmark"])
    raw["backbone"] = load_part("backbones", raw["backbone"])
    # each strategy part is a named configuration: `use:` picks the registered strategy
    entries = raw.pop("strategies")
    entries += [name for name in add if name not in entries and name in _names("strategies")]
    raw["strategy"] = {entry: load_part("strategies", entry) for entry in entries}
    # the experiment's own settings of its parts (the protocol every strategy shares, the
    # baselines' parameters for this scenario), each with its source in the YAML
    for key, value in (raw.pop("settings", {}) or {}).items():
        set_dotted(raw, key, value)
    if fast:
        raw["fast"] = True
        for key, value in preset.items():
            set_dotted(raw, key, value)
    return raw


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """tree['a']['b'] = value for 'a.b'; a '*' part sets the key in every child section."""
    parts = key.split(".")
    if "*" in parts:
        star = parts.index("*")
        parent: object = tree
        for part in parts[:star]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            raise UserError(f"cannot set '{key}': '{'.'.join(parts[:star])}' is not a section")
        rest = ".".join(parts[star + 1 :])
        for child in parent.values():
            if isinstance(child, dict):
                set_dotted(child, rest, copy.deepcopy(value))
        return
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"cannot set '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"malformed override '{text}'; write key=value, e.g. seeds=[0]")
    try:
        return key, yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        raise UserError(f"cannot parse the value of override '{text}'") from None


def resolve(
    experiment: str,
    *,
    overrides: Sequence[str] = (),
    fast: bool = False,
    strategies: list[str] | None = None,
    **flags: Any,
) -> ExperimentConfig:
    """Compose, apply flags (None = not given) and key=value overrides, validate; `strategies`
    keeps only those entries (the config then records what the run selected), a shipped
    strategy the experiment does not list joining it under the experiment's settings."""
    if experiment not in shipped_experiments():
        known = shipped_experiments()
        raise UserError(
            f"unknown experiment '{experiment}'{suggest(experiment, known)}; "
            f"shipped: {', '.join(known)}"
        )
    raw = compose(experiment, fast=fast, add=strategies or ())
    for key, value in flags.items():
        if value is not None:
            raw[key] = value
    overridden = []  # (strategy entry, override key)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
        parts = key.split(".")
        if parts[0] == "strategy" and len(parts) > 1 and parts[1] != "*":
            overridden.append((parts[1], key))
    config = select_strategies(validate(raw), strategies)
    for entry, key in overridden:
        if entry not in config.strategy:
            entries = list(config.strategy)
            raise UserError(
                f"override {key} sets strategy entry '{entry}', which this run does not "
                f"run{suggest(entry, entries)}; its strategies: {', '.join(entries)}"
            )
    return config


def select_strategies(config: ExperimentConfig, names: list[str] | None) -> ExperimentConfig:
    """The config with only the strategy entries named (all when None), in the config's order."""
    if not names:
        return config
    entries = list(config.strategy)
    for name in names:
        if name not in entries:
            shipped = _names("strategies")
            what = (
                "is not in this run"
                if name in shipped
                else "is neither in this run nor a shipped strategy"
            )
            raise UserError(
                f"strategy '{name}' {what}{suggest(name, sorted({*entries, *shipped}))}; "
                f"the run's strategies: {', '.join(entries)}"
            )
    selected = {entry: params for entry, params in config.strategy.items() if entry in names}
    return config.model_copy(update={"strategy": selected})


def validate(raw: dict[str, Any]) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise UserError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = suggest(loc[-1], valid)
        return f"unknown config key '{key}'{hint}; valid keys here: {', '.join(valid)}"
    if first["type"] == "missing":
        return f"config key '{key}' is required"
    return f"config key '{key}': {first['msg']}"


def _valid_keys(path: list[str]) -> list[str]:
    model: type[BaseModel] = ExperimentConfig
    for part in path:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def to_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def load_resolved(path: Path) -> ExperimentConfig:
    """A resolved config written by a run (for --resume); one-line errors naming the file."""
    fix = "restore it, or start a new run"
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}; {fix}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} holds binary data, not YAML; {fix}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML ({_yaml_problem(error)}); {fix}") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply for a run config; {fix}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a run config (no key: value mapping); {fix}")
    try:
        return validate(copy.deepcopy(raw))
    except UserError as error:
        raise UserError(f"{path}: {error}; {fix}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """'line 3, column 5: mapping values are not allowed here' from PyYAML's multi-line text."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def shipped_protocol(benchmark: str, data: str = "real") -> dict[str, Any]:
    """The protocol the shipped benchmark config defines on `data` ("real" or "synthetic"; no
    data needed)."""
    from cycl_bench.data import protocol_of

    part = BenchmarkConfig.model_validate(load_part("benchmarks", benchmark))
    return protocol_of(part.name, data=data, seed=part.seed, **part.options_for(data))


def shipped_protocol_hash(benchmark: str, data: str = "real") -> str:
    from cycl_bench.data.base import protocol_hash

    return protocol_hash(shipped_protocol(benchmark, data))
