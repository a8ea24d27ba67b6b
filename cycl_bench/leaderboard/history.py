"""What a submission file looked like on the base branch, so a pull request cannot quietly
rewrite someone else's entry."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cycl_bench.errors import UserError

DEFAULT_BASE = "origin/main"


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=False
    )


def repository_root(path: Path) -> Path | None:
    """The git work tree holding `path`, or None outside any repository (or without git)."""
    try:
        done = _git(path.resolve().parent, "rev-parse", "--show-toplevel")
    except FileNotFoundError:
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def ref_exists(root: Path, ref: str) -> bool:
    return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0


def base_text(path: Path, ref: str) -> str | None:
    """The file's content at `ref`; None when it did not exist there (a new entry).

    Raises UserError when the file is outside git or `ref` is unknown.
    """
    root = repository_root(path)
    if root is None:
        raise UserError(f"{path} is not inside a git repository; drop --base to skip the check")
    if ref.startswith("-") or not ref_exists(root, ref):
        raise UserError(f"unknown git ref '{ref}' for --base; fetch it or name another branch")
    relative = path.resolve().relative_to(root.resolve()).as_posix()
    done = _git(root, "show", f"{ref}:{relative}")
    return done.stdout if done.returncode == 0 else None
