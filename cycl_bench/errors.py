"""Errors a user can fix. The CLI prints them on one line and exits with code 2."""

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem in what the user gave (name, config, data, path), with the fix in the message."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
