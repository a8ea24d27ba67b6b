"""Every option of every command, given a hostile value, is one line, exit 2, no traceback, and
nothing created or changed.

The cases are generated, not listed: the options come from the CLI's own parser (each declares
its kind with its type, its choices or its metavar: FOLDER, RUN_DIR, RESULT, ...), and the
config keys a run takes (`KEY=VALUE`) from the pydantic declarations of the experiment, the
pretraining, every strategy entry and the benchmark's options. A new option or parameter of a
known kind is covered without a new test; an option of a kind this file does not know fails
`test_every_option_has_a_known_kind` until its hostile values are written here.

What makes a value hostile comes from outside the code: a file where a folder goes, a path that
does not exist, a number that is not finite or beyond any machine, a name nothing registers.
"""

from __future__ import annotations

import argparse
import os
import typing
from pathlib import Path

import pytest

from cycl_bench import config as configs
from cycl_bench.cli import build_parser, main
from cycl_bench.cli.kinds import Kind
from cycl_bench.pretrain.config import PretrainConfig
from cycl_bench.registry import BENCHMARKS, STRATEGIES

# Markers a case's hostile value is built from, resolved against the case's folders.
A_FILE = "<a file>"
UNDER_A_FILE = "<under a file>"
MISSING = "<missing>"
EMPTY_DIR = "<an empty folder>"
BINARY = "<a binary file>"
RUN_FILE = "<a file of the run folder>"

HUGE = "1" + "0" * 30
INT = ["abc", "1.5", "-1", HUGE]
FLOAT = ["abc", "nan", "inf", "-1"]
NAME = ["no_such_name"]

# kind (a metavar) -> hostile values
KINDS: dict[str, list[str]] = {
    "FOLDER": [A_FILE, UNDER_A_FILE],  # a folder a command writes into
    "DIR": [MISSING, A_FILE],  # a folder a command reads
    "RUN_DIR": [MISSING, A_FILE, EMPTY_DIR],
    "RESULT": [MISSING, EMPTY_DIR, BINARY],
    "RESULT_RUN_OR_SWEEP_DIR": [MISSING, EMPTY_DIR, BINARY],
    "SUBMISSIONS": [MISSING],  # a file that is no submission fails validation: exit 1
    "OUT_FILE": [EMPTY_DIR, RUN_FILE],  # a file a command writes: never over the run's own
    "EXPERIMENT": NAME,
    "BENCHMARK": NAME,
    "BACKBONE": NAME,
    "ENTRY": NAME,
    "FORMAT": NAME,
    "EXECUTOR": NAME,
    "DATA": ["no_such_source", f"folder:{MISSING}"],
    "DEVICE": ["no_such_device", "cuda:-1"],
    "TEXT": ["", "two\nlines", "x" * 5000],
    "NOTE": ["x" * 5000, "\x1b[31mred"],
    "RECORDS": [A_FILE, UNDER_A_FILE],  # a folder read when it exists
    "SEED": INT,
    "URL": ["javascript:alert(1)", "no url"],
    "DATE": ["2026-02-30"],
    "KEY=VALUE": ["no_value", "no_such_key=1"],
    "KEY=V1,V2": ["no_value", "no_such_key=1,2"],
    "ADDR": ["127.0.0.1:1"],  # without --executor ray there is no cluster to join
    "GIT_REF": ["no-such-ref/at-all"],
    "N": INT,
}
SKIPPED = {("--version",), ("--help",)}

# A valid command line per command; a case replaces (or adds) one option's value.
BASES = {
    ("list",): "list",
    ("data",): "data core50_nc --data synthetic",
    ("run",): "run core50_nc --data synthetic --fast --wandb disabled --strategy naive "
    "--seeds 0 --out {case}/out --cache-dir {case}/cache",
    ("sweep",): "sweep core50_nc --grid strategy.naive.first_lr=0.01,0.02 --data synthetic "
    "--fast --wandb disabled --strategy naive --seeds 0 --out {case}/out --cache-dir {case}/cache",
    ("compare",): "compare {result} --out {case}/out",
    ("show",): "show {result}",
    ("pretrain",): "pretrain --backbone tiny_bnn --benchmark core50_nc --data synthetic --fast "
    "--out {case}/out --cache-dir {case}/cache",
    ("submit",): "submit {result} --name N --author A --license MIT --hardware cpu "
    "--submissions {case}/out",
    ("leaderboard", "validate"): "leaderboard validate {submission}",
    ("leaderboard", "verify"): "leaderboard verify {submission} --records {case}/out",
    ("leaderboard", "build"): "leaderboard build --submissions {submissions} --out {case}/out "
    "--verifications {case}/none",
    ("export",): "export {run} --entry cwr_star --seed 0 --format onnx --out {case}/out/m.onnx",
}


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> typing.Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command path, its parser) for every leaf command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from commands(child, (*path, name))


def kind_of(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return "flag"
    if action.choices is not None:
        return "choice"
    if isinstance(action.type, Kind):
        return action.type.metavar
    if action.metavar in KINDS:
        return str(action.metavar)
    if action.type is int:
        return "N"
    if action.type is float:
        return "float"
    return None


def options() -> list[tuple[tuple[str, ...], argparse.Action]]:
    found = []
    for path, parser in commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or tuple(action.option_strings) in SKIPPED:
                continue
            found.append((path, action))
    return found


def hostile(kind: str) -> list[str]:
    return {"flag": ["=1"], "choice": ["no_such_choice"], "float": FLOAT}.get(kind) or KINDS[kind]


def cases() -> list:
    found = []
    for path, action in options():
        kind = kind_of(action)
        if kind is None:
            continue
        label = action.option_strings[0] if action.option_strings else action.dest
        for value in hostile(kind):
            found.append(
                pytest.param(path, action.dest, value, id=f"{' '.join(path)} {label} {value!r}")
            )
    return found


def test_every_option_has_a_known_kind():
    unknown = [
        f"{' '.join(path)} {action.option_strings or action.dest} (metavar {action.metavar})"
        for path, action in options()
        if kind_of(action) is None
    ]
    assert not unknown, (
        f"give these options a kind (a metavar of KINDS, a type or choices): {unknown}"
    )


def test_every_command_has_a_base_line():
    assert {path for path, _ in commands(build_parser())} == set(BASES)


# -- the world a case runs in -------------------------------------------------------------------

CHEAP = [
    "backbone.name=tiny_bnn",
    "pretrain.schedule=none",
    "strategy.*.first_epochs=1",
    "strategy.*.epochs=1",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A real run folder (cwr_star, one seed) and its results file: what a base line names.
    A hostile value is refused before the base's files are read in full, so one seed (not a
    submittable run) and an empty submissions folder are enough."""
    root = tmp_path_factory.mktemp("world")
    args = ["run", "core50_nc", "--data", "synthetic", "--strategy", "cwr_star", "--seeds", "0"]
    assert main([*args, "--wandb", "disabled", "--out", str(root / "runs"), *CHEAP]) == 0
    (run,) = (root / "runs" / "core50_nc").iterdir()
    result = run / "results" / "cwr_star.json"
    submissions = root / "submissions"
    (submissions / "core50_nc").mkdir(parents=True)
    return {"root": root, "run": run, "result": result, "submissions": submissions,
            "submission": result}  # fmt: skip


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every path under the folders with its size and modification time."""
    seen = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                stat = path.lstat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen


def materialise(value: str, case: Path, world: dict[str, Path]) -> str:
    blocker = case / "a-file"
    markers = {
        A_FILE: blocker,
        UNDER_A_FILE: blocker / "folder",
        MISSING: case / "no" / "such" / "path",
        EMPTY_DIR: case / "empty",
        BINARY: case / "binary.json",
        RUN_FILE: world["run"] / "config.yaml",
    }
    for marker, path in markers.items():
        value = value.replace(marker, str(path))
    return value


def command_line(
    path: tuple[str, ...], dest: str, value: str, case: Path, world: dict[str, Path]
) -> list[str]:
    fill = {"case": case, **{key: str(p) for key, p in world.items()}}
    base = BASES[path].format(**fill).split()
    parser = dict(commands(build_parser()))[path]
    (action,) = [a for a in parser._actions if a.dest == dest]
    if action.nargs == "*":  # positionals the base has none of (overrides): added
        return [*base, value]
    if not action.option_strings:  # a positional: the base's first value of it is replaced
        positional = [a for a in parser._actions if not a.option_strings]
        index = len(path) + positional.index(action)
        return [*base[:index], value, *base[index + 1 :]]
    option = action.option_strings[0]
    if action.nargs == 0:
        return [*base, option + value]
    if option in base:  # replace the base's value(s) of the option
        start = base.index(option) + 1
        end = start
        while end < len(base) and not base[end].startswith("--"):
            end += 1
        if action.nargs in ("+", "*"):
            return [*base[:start], value, *base[end:]]
        return [*base[:start], value, *base[start + 1 :]]
    return [*base, option, value]


def refused(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own error: exit code 2
        code = exit.code
    return code, capsys.readouterr().err


def check_refused(argv, mentions, case, world, capsys, monkeypatch) -> None:
    monkeypatch.chdir(case)
    before = snapshot(case, world["root"], Path(os.environ["CYCL_BENCH_CACHE"]))
    code, err = refused(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, code, err)
    assert "Traceback" not in err
    assert any(m in lines[0] for m in mentions), (lines[0], mentions)
    after = snapshot(case, world["root"], Path(os.environ["CYCL_BENCH_CACHE"]))
    assert after == before, sorted(set(after) ^ set(before))


def prepare(case: Path) -> None:
    (case / "a-file").write_text("mine\n")
    (case / "empty").mkdir()
    (case / "binary.json").write_bytes(bytes(range(256)) * 4)


@pytest.mark.parametrize("path, dest, value", cases())
def test_a_hostile_option_is_one_line_and_leaves_nothing(
    path, dest, value, world, tmp_path, capsys, monkeypatch
):
    prepare(tmp_path)
    value = materialise(value, tmp_path, world)
    argv = command_line(path, dest, value, tmp_path, world)
    parser = dict(commands(build_parser()))[path]
    (action,) = [a for a in parser._actions if a.dest == dest]
    mentions = [*action.option_strings, str(action.metavar), action.dest, value.strip() or "''"]
    mentions.append(value.partition(":")[2])  # folder:PATH names the PATH
    mentions.append(value.partition("=")[0])  # KEY=VALUE names the KEY
    check_refused(argv, [m for m in mentions if m], tmp_path, world, capsys, monkeypatch)


# -- config keys: every parameter the run's declarations take ------------------------------------


def hostile_values(field) -> list[str]:
    """What no parameter of this type accepts, and just beyond its declared bounds."""
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return ["no_such_choice"]
    values = {
        bool: ["maybe", "2"],
        int: ["abc", "1.5", "true", HUGE],
        float: ["abc", ".nan", ".inf", "true"],
    }.get(annotation, [])
    for item in field.metadata:
        for key, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            bound = getattr(item, key, None)
            if bound is not None and annotation in (int, float):
                values.append(str(bound + step if annotation is int else bound + step * 0.5))
    return values


def config_cases() -> list:
    raw = configs.compose("core50_nc", fast=True)
    found = []
    declarations = {}  # one entry per declaration: entries that share one share its checks
    for entry, values in raw["strategy"].items():
        declarations.setdefault(STRATEGIES.detail(values.get("use", entry), "params"), entry)
    checked = set()  # a field several declarations inherit is checked once
    for declaration, entry in declarations.items():
        for name, field in declaration.model_fields.items():
            if (name, repr(field)) in checked:
                continue
            checked.add((name, repr(field)))
            for value in hostile_values(field):
                found.append((entry, f"strategy.{entry}.{name}", value))
    synthetic = BENCHMARKS.detail("core50_nc", "params")["synthetic"]
    for name, field in synthetic.model_fields.items():
        for value in hostile_values(field):
            found.append(("naive", f"benchmark.options.synthetic.{name}", value))
    for name, field in PretrainConfig.model_fields.items():
        for value in hostile_values(field):
            found.append(("naive", f"pretrain.{name}", value))
    for name in ("eval_every", "threads", "wandb"):
        for value in hostile_values(configs.ExperimentConfig.model_fields[name]):
            found.append(("naive", name, value))
    for value in ("[-1]", "[0,0]", "[true]", f"[{2**32}]", "[]", "abc"):
        found.append(("naive", "seeds", value))
    # a key nothing reads, and an entry the run does not select
    found += [
        ("naive", "strategy.naive.first_lrr", "0.1"),
        ("naive", "strategy.ewc.ewc_lambda", "1"),
    ]
    found += [
        ("naive", "pretrain.min_bitz", "2"),
        ("naive", "benchmark.options.synthetic.sizee", "8"),
    ]
    return [pytest.param(e, k, v, id=f"{k}={v}") for e, k, v in found]


@pytest.mark.parametrize("entry, key, value", config_cases())
def test_a_hostile_config_value_is_one_line_and_leaves_nothing(
    entry, key, value, world, tmp_path, capsys, monkeypatch
):
    prepare(tmp_path)
    base = BASES[("run",)].format(case=tmp_path).split()
    argv = [*base[: base.index("--strategy") + 1], entry, *base[base.index("--strategy") + 2 :]]
    check_refused([*argv, f"{key}={value}"], [key.split(".")[-1]], tmp_path, world, capsys,
                  monkeypatch)  # fmt: skip
