"""`python -m cycl_bench` / `cycl-bench`: one sub-command per module in this package.

Each command module defines `HELP`, `add_arguments(parser)` and `run(args) -> int`.
User errors print one line and exit with code 2; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager

from cycl_bench import __version__
from cycl_bench.cli.kinds import Kind
from cycl_bench.continual.resources import keep_freed_memory
from cycl_bench.errors import UserError
from cycl_bench.logging.library_output import quiet_libraries

# command name -> module implementing it
COMMANDS = {
    "list": "cycl_bench.cli.listing",
    "data": "cycl_bench.cli.data",
    "run": "cycl_bench.cli.run",
    "sweep": "cycl_bench.cli.sweep",
    "compare": "cycl_bench.cli.compare",
    "show": "cycl_bench.cli.show",
    "pretrain": "cycl_bench.cli.pretrain",
    "submit": "cycl_bench.cli.submit",
    "leaderboard": "cycl_bench.cli.leaderboard",
    "export": "cycl_bench.cli.export",
}


class OneLineParser(argparse.ArgumentParser):
    """A bad option is one line and exit code 2, like every other user error (argparse prints
    its usage block first); the line says where the help is."""

    def add_argument(self, *args: typing.Any, **kwargs: typing.Any) -> argparse.Action:
        """An option of a kind (`type=kinds.FOLDER`) shows the kind as its metavar."""
        kind = kwargs.get("type")
        if isinstance(kind, Kind) and "metavar" not in kwargs:
            kwargs["metavar"] = kind.metavar
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        message = (
            message.replace("argument ", "", 1) if message.startswith("argument ") else message
        )
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cycl-bench",
        description="Continual learning with binary and low-precision networks, benchmarked.",
    )
    parser.add_argument("--version", action="version", version=f"cycl_bench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def discard_stdout() -> None:
    """Point the process's stdout at /dev/null, so that nothing left in its buffer is written
    to a closed pipe at exit (the recipe of Python's signal documentation)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (captured, closed): nothing to redirect
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's kill, `timeout`, a closed session), handled as Ctrl-C is: a run
    keeps what it finished and says how to continue; the exit code is 143 (128 + SIGTERM)."""


def _raise_terminated(signum: int, frame: types.FrameType | None) -> None:
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread while a command runs; the handler that
    was there before (Python's default, or one a library installed) is put back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    keep_freed_memory()  # large activations reused, not page-faulted in every step
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # key=value overrides may come after options (`run core50_nc --fast seeds=[0]`)
        if extra and hasattr(args, "overrides") and all("=" in a and a[0] != "-" for a in extra):
            args.overrides = [*(args.overrides or []), *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as done:  # --help, --version: 0; a bad option: 2, its line printed
        return done.code if isinstance(done.code, int) else 2
    try:
        with sigterm_as_interrupt():
            code = int(args._run(args) or 0)
            sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # `... | head -1`: the reader has all it wanted
        discard_stdout()
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
