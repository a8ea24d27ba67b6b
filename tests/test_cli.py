"""The command line: every command has --help, `list` shows the registries, user errors exit 2."""

import subprocess
import sys

import pytest

from cycl_bench.cli import COMMANDS, main
from cycl_bench.registry import ALL


def cycl_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cycl_bench", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_list_shows_every_registered_name_and_the_shipped_experiments():
    done = cycl_bench("list")
    assert done.returncode == 0, done.stderr
    for registry in ALL:
        assert f"{registry.plural}:" in done.stdout
        for name in registry.names():
            assert f"  {name}" in done.stdout
    for experiment in ("core50_nc", "core50_ni", "split_cifar10", "split_cifar100"):
        assert f"  {experiment}" in done.stdout


def test_the_console_script_and_the_module_are_the_same_program():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "cycl-bench"]
    assert script.value == "cycl_bench.cli:main"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "core50nc"], "unknown experiment 'core50nc'"),
        (["run", "core50_nc", "seeds"], "malformed override 'seeds'"),
        (["run", "core50_nc", "pretrain.min_bitz=2"], "unknown config key 'pretrain.min_bitz'"),
        (["show", "no/such/results.json"], "no results file at no/such/results.json"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(args, message):
    done = cycl_bench(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
