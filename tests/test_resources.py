"""The CPU allocator policy of `continual/resources.py`: freed memory kept for reuse (what saves
the page faults of large activations every step), and each phase's peak still its own.

Each case runs in a fresh interpreter: malloc's settings are per process and cannot be undone.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc"
)

SCRIPT = textwrap.dedent(
    """
    from pathlib import Path

    import torch

    from cycl_bench.continual.resources import keep_freed_memory, peak_rss_mb, reset_peak_memory

    def rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    kept = keep_freed_memory()
    baseline = rss_mb()
    block = torch.ones(64 * 2**20)  # 256 MB, every page written
    del block
    after_free = rss_mb() - baseline
    reset_peak_memory()
    after_reset = rss_mb() - baseline
    small = torch.ones(8 * 2**20)  # 32 MB in the next phase
    phase_peak = peak_rss_mb() - baseline
    print(kept, round(after_free), round(after_reset), round(phase_peak))
    """
)


def run_script(**environment: str) -> tuple[bool, float, float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | environment
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    kept, *figures = done.stdout.split()
    return kept == "True", *(float(f) for f in figures)  # type: ignore[return-value]


def test_kept_memory_stays_for_reuse_until_the_next_phase_trims_it() -> None:
    kept, after_free, after_reset, phase_peak = run_script()
    assert kept
    assert after_free > 200  # the freed 256 MB block is still the process's, for reuse
    assert after_reset < 100  # the next phase starts from what is live
    assert phase_peak < 100  # and its peak is its own 32 MB, not the earlier 256 MB


def test_without_the_setting_glibc_hands_a_large_block_back_at_once() -> None:
    """The default this replaces, and a user's own malloc settings, which stand."""
    kept, after_free, _, phase_peak = run_script(MALLOC_TRIM_THRESHOLD_="131072")
    assert not kept
    assert after_free < 100
    assert phase_peak < 100
