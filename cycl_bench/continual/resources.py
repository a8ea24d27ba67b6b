"""Peak memory of a training phase, without psutil; the CPU allocator's policy.

CPU: the process's peak resident set (VmHWM in /proc/self/status), reset before each phase by
writing 5 to /proc/self/clear_refs (Linux); elsewhere the lifetime peak from `resource`.
CUDA: the peak of PyTorch's allocator on the device, reset the same way.

`keep_freed_memory`: glibc's malloc hands every freed block above 32 MB back to the system, so
a training step that allocates such activations (ResNet-18's first stage at batch 128: 33.5 MB)
pays 15-20 ms of page faults for each, every step. The command line asks malloc to keep freed
memory for reuse instead (no mmap'ed blocks, no trimming: what `MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=...` set before start would do); `reset_peak_memory` then trims what a
previous phase left free, so each phase's peak stays its own.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MIB = 2**20
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
NEVER_TRIM = 2**31 - 1  # bytes of free memory at the top of the heap before it is handed back
ALLOCATOR_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_kept: bool = False


def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (this process, from now on); whether
    it did. Not on other C libraries, and not where the environment already sets malloc's
    thresholds (the user's choice stands)."""
    global _kept
    libc = _glibc()
    if libc is None or any(name in os.environ for name in ALLOCATOR_VARIABLES):
        return False
    _kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    return _kept


def _uses_cuda(device: str | torch.device) -> bool:
    # "cuda", "cuda:1" or torch.device("cuda:1"); torch itself is imported only for CUDA: the
    # command line imports this module before torch (`keep_freed_memory`)
    return str(device).startswith("cuda")


def reset_peak_memory(device: str | torch.device = "cpu") -> None:
    libc = _glibc() if _kept else None
    if libc is not None:
        libc.malloc_trim(0)  # what earlier phases left free is not this phase's peak
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the lifetime peak is reported instead
    if _uses_cuda(device):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MIB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak * 1024 / MIB


def peak_memory_mb(device: str | torch.device = "cpu") -> dict[str, float]:
    """Peak since the last reset: {'rss_mb': ..., 'cuda_mb': ... (on CUDA only)}."""
    peaks = {"rss_mb": peak_rss_mb()}
    if _uses_cuda(device):
        import torch

        peaks["cuda_mb"] = torch.cuda.max_memory_allocated(device) / MIB
    return peaks
