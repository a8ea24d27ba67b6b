"""Errors a user can fix. The CLI prints them on one line and exits with code 2."""

import difflib
import os
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """A problem in what the user gave (name, config, data, path), with the fix in the message."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_writable_folder(folder: str | Path, option: str) -> None:
    """A UserError, where the option is given, when `folder` is a file (or under one) or cannot
    be created or written: the command would fail there only after its work."""
    folder = Path(folder).expanduser()
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder.absolute() and not existing.is_dir():
        raise UserError(f"{option} {folder} is a file; give a folder")
    if not existing.is_dir():
        raise UserError(f"{option} {folder}: {existing} is a file, not a folder; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {folder}: {existing} is not writable; give a writable folder")
