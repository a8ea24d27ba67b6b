"""What a command-line option takes, declared once with the option (`type=kinds.FOLDER`).

The parser checks each value where it is given, before any work: a bad one is one line, exit 2
(argparse calls the kind; its `ArgumentTypeError` becomes the line). The kind's metavar is what
`--help` shows, and the hostile-input tests generate their bad values from it. What only a
command can judge (a registered name, a run folder's contents, a config key) stays with the
command; its option still names its kind by its metavar (ENTRY, DATA, KEY=VALUE, ...).
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cycl_bench.errors import UserError, check_writable_folder

MAX_SEED = 2**32 - 1
"""what numpy and torch accept as a seed"""
MAX_TEXT = 200
MAX_NOTE = 2000


class Kind:
    """A converter for argparse's `type=`: `metavar` names it, `convert` checks and converts
    the text (raising UserError or ValueError with the fix)."""

    def __init__(self, metavar: str, convert: Callable[[str], Any]):
        self.metavar = metavar
        self.convert = convert
        self.__name__ = metavar.lower()  # argparse names a kind by it

    def __call__(self, text: str) -> Any:
        try:
            return self.convert(text)
        except (UserError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error).strip()) from None

    def __repr__(self) -> str:
        return f"Kind({self.metavar})"


def _folder(text: str) -> str:
    """A folder the command writes into: new, or an existing writable folder."""
    check_writable_folder(text, "")
    return text


def _existing(text: str, what: str, *, folder: bool | None) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise UserError(f"{text} does not exist; give an existing {what}")
    if folder is True and not path.is_dir():
        raise UserError(f"{text} is not a folder; give an existing {what}")
    if folder is False and not path.is_file():
        raise UserError(f"{text} is not a regular file (a folder, pipe or device); give a {what}")
    return path


def _maybe_folder(text: str) -> Path:
    """A folder read when it exists (none: nothing to read); never a file or under one."""
    path = Path(text).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"{text}: {existing} is a file; give a folder")
    return path


def _out_file(text: str) -> Path:
    """A file the command writes: not a folder, not under a file."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise UserError(f"{text} is a folder; give a file name")
    check_writable_folder(path.parent, "")
    return path


def integer(low: int, high: int, metavar: str = "N") -> Kind:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"{text!r} is not an integer; give one from {low} to {high}") from None
        if not low <= value <= high:
            raise UserError(f"{value} is out of range; give an integer from {low} to {high}")
        return value

    return Kind(metavar, convert)


def _text(limit: int, *, one_line: bool) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if one_line and not text.strip():
            raise UserError("the text is empty; give a value")
        if len(text) > limit:
            raise UserError(f"the text has {len(text)} characters; give at most {limit}")
        allowed = "" if one_line else "\n\t"
        if any(ord(c) < 32 and c not in allowed for c in text):
            raise UserError(f"{text!r} has control characters or line breaks; give one line")
        return text

    return convert


def _url(text: str) -> str:
    if not text.startswith(("https://", "http://")) or any(c.isspace() for c in text):
        raise UserError(f"{text!r} is not an http(s) URL; give one like https://example.org/x")
    return text


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is not a date; give YYYY-MM-DD") from None


def _device(text: str) -> str:
    kind, colon, index = text.partition(":")
    if text != "cpu" and (kind != "cuda" or (colon and not index.isdigit())):
        raise UserError(f"{text!r} is not cpu, cuda or cuda:N; use one of them")
    return text


FOLDER = Kind("FOLDER", _folder)
"""a folder written into (created when missing)"""
FOLDER_PATH = Kind("FOLDER", lambda text: Path(_folder(text)))
DIR = Kind("DIR", lambda text: _existing(text, "folder", folder=True))
"""an existing folder that is read"""
RUN_DIR = Kind("RUN_DIR", lambda text: str(_existing(text, "run folder", folder=True)))
RESULT = Kind("RESULT", lambda text: _existing(text, "results file", folder=False))
PATHS = Kind("SUBMISSIONS", lambda text: _existing(text, "file or folder", folder=None))
RESULTS_OR_FOLDERS = Kind(
    "RESULT_RUN_OR_SWEEP_DIR",
    lambda text: str(_existing(text, "results file or folder", folder=None)),
)
RECORDS = Kind("RECORDS", _maybe_folder)
"""a folder read when it exists"""
OUT_FILE = Kind("OUT_FILE", _out_file)
SEED = integer(0, MAX_SEED, "SEED")
WORKERS = integer(1, 4096)
TEXT = Kind("TEXT", _text(MAX_TEXT, one_line=True))
"""a short line: a name, an author, a license, hardware"""
NOTE = Kind("NOTE", _text(MAX_NOTE, one_line=False))
"""a sentence or two"""
URL = Kind("URL", _url)
DEVICE = Kind("DEVICE", _device)
"""cpu, cuda or cuda:N (whether that GPU is there is the command's check)"""
LIMIT = integer(1, 10_000_000)
DATE = Kind("DATE", _date)
