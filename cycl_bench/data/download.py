"""Data root rules and downloads that fail fast and clearly when the host is unreachable."""

from __future__ import annotations

import contextvars
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

from cycl_bench.data.base import default_data_root
from cycl_bench.errors import UserError

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
OFFLINE_HINT = "or use --data synthetic to run offline"
_DOWNLOADS_ALLOWED = contextvars.ContextVar("downloads_allowed", default=True)


@contextmanager
def downloads_off() -> Iterator[None]:
    """Within: a dataset that is not on disk is a UserError instead of a download (what
    `leaderboard verify` does by default: CORe50 is several GB)."""
    token = _DOWNLOADS_ALLOWED.set(False)
    try:
        yield
    finally:
        _DOWNLOADS_ALLOWED.reset(token)


def resolve_data_root(data_root: Path | str | None) -> Path:
    """--data-root, else $CYCL_BENCH_DATA, else the user cache directory."""
    return Path(data_root).expanduser() if data_root else default_data_root()


def ensure_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written there, before any download starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(
            f"data root {folder} is not writable ({error.strerror or error}); "
            "pass --data-root DIR or set CYCL_BENCH_DATA to a writable folder"
        ) from None


def _endpoint(url: str) -> tuple[str | None, int, str]:
    """Where urllib connects to fetch `url`: the configured proxy, else the host itself (None:
    the URL or the proxy setting names no host)."""
    parsed = urlparse(url)
    proxy = getproxies().get(parsed.scheme)
    kind = "host"
    if proxy and not proxy_bypass(parsed.hostname or ""):
        parsed, kind = urlparse(proxy if "://" in proxy else f"http://{proxy}"), "proxy"
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), kind


def _check_reachable(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
        pass


@contextmanager
def _read_timeout() -> Iterator[None]:
    """urllib (used by torchvision) waits forever by default; a stalled host should not."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(READ_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@contextmanager
def downloading(dataset: str, folder: Path, files: list[str], urls: list[str]) -> Iterator[None]:
    """Guard a download: probe every host first (seconds, not minutes, when offline), turn
    network errors into one UserError naming the folder, the files expected there and where
    to get them, and the offline alternative."""

    def failure(reason: str) -> UserError:
        return UserError(
            f"cannot download {dataset} ({reason}); place {', '.join(files)} in {folder} "
            f"(from {' '.join(urls)}), {OFFLINE_HINT}"
        )

    if not _DOWNLOADS_ALLOWED.get():
        raise UserError(
            f"{dataset} is not in {folder} and downloads are off here; place "
            f"{', '.join(files)} there (from {' '.join(urls)}) or give --download"
        )

    for url in urls:
        host, port, kind = _endpoint(url)
        if host is None:  # not a host to probe (socket would try this machine)
            raise failure(f"the {kind} for {url} names no host")
        try:
            _check_reachable(host, port)
        except OSError as error:
            reason = error.strerror or error
            raise failure(f"{kind} {host}:{port} unreachable: {reason}") from None
    try:
        with _read_timeout(), redirect_stdout(sys.stderr):  # keep stdout for the summary
            yield
    except (URLError, OSError) as error:
        raise failure(f"download failed: {error}") from None
    except RuntimeError as error:  # torchvision's checksum / redirect errors
        raise failure(str(error)) from None
