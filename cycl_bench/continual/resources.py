"""Peak memory of a training phase, without psutil.

CPU: the process's peak resident set (VmHWM in /proc/self/status), reset before each phase by
writing 5 to /proc/self/clear_refs (Linux); elsewhere the lifetime peak from `resource`.
CUDA: the peak of PyTorch's allocator on the device, reset the same way.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

MIB = 2**20


def _uses_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def reset_peak_memory(device: str | torch.device = "cpu") -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the lifetime peak is reported instead
    if _uses_cuda(device):
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
        peaks["cuda_mb"] = torch.cuda.max_memory_allocated(device) / MIB
    return peaks
