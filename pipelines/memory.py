"""Peak-memory measurement for one generation, on CUDA or CPU.

CUDA: the caching allocator's peak (`torch.cuda.max_memory_allocated`), reset at the start of a run.
CPU: the process's peak resident set size (Linux `VmHWM`), reset through `/proc/self/clear_refs` where the
kernel allows it; otherwise the peak since process start (documented as an upper bound in the report).
"""
from __future__ import annotations

import resource
import sys

import torch


def _read_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """`with PeakMemory(device) as pm: ...; pm.peak()` -> bytes."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.resettable = False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False

    def current(self) -> int:
        """Memory in use now (CUDA: allocated bytes; CPU: resident set size)."""
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        rss = _read_status("VmRSS")
        return int(rss) if rss is not None else self.peak()

    def peak(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _read_status("VmHWM")
        if hwm is not None:
            return hwm
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)

    def __enter__(self) -> "PeakMemory":
        self.reset()
        return self

    def __exit__(self, *exc) -> None:
        return None
