"""Torch threads per run from the cores actually free (issue #32).

On a shared CPU machine, OpenMP threads beyond the free cores wait on each other at every kernel's barrier: beside
three CPU-bound processes on 2 cores an unguided micro run took 17 s with 2 threads against 3.4 s with 1. So the app
chooses each run's thread count from how busy the cores it may run on were over the last second or two:

    free = Σ over this process's cores of (idle share)  +  this process's own CPU use (its cores are its to reuse)
    threads = clamp(⌊free + MARGIN⌋, 1, cores)

read from /proc/stat and `os.times()`, sampled in the background every `EVERY_S` (a few microseconds each), so a run
starts without waiting. An explicit `OMP_NUM_THREADS` or the operator's `--threads N` wins. Without /proc/stat (not
Linux) the 1-minute load average stands in. The choice and its reason go into the run's summary.
"""
from __future__ import annotations

import collections
import math
import os
import threading
import time
from typing import Callable, Optional, Tuple

EVERY_S = 1.0  # background sampling period
MIN_WINDOW_S = 0.5  # the shortest window a choice is made over (a fresh 0.3 s one when none is at hand)
FRESH_WINDOW_S = 0.3
#: a core counts as free from this much idle share up (0.7 idle + ... rounds to a thread); a half-free core does
#: not: an OpenMP thread on a core shared with a busy process stalls every barrier of the run.
MARGIN = 0.3


def affinity_cores() -> list:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def read_proc_stat(path: str = "/proc/stat") -> dict:
    """{cpu index: (busy jiffies, idle jiffies)} for each `cpuN` line."""
    out = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            parts = line.split()
            vals = [int(x) for x in parts[1:]]
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
            busy = sum(vals[:8]) - idle if len(vals) >= 8 else sum(vals) - idle  # guest time is inside user
            out[int(parts[0][3:])] = (busy, idle)
    return out


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


Sample = collections.namedtuple("Sample", "t stat own")


class FreeCores:
    """Estimates the cores free for this process; `reader`/`own`/`clock` are injectable for tests."""

    def __init__(self, cores=None, reader: Callable[[], dict] = read_proc_stat, own: Callable[[], float] = own_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 background: bool = False):
        self.cores = list(cores) if cores is not None else affinity_cores()
        self.reader, self.own, self.clock, self.sleep = reader, own, clock, sleep
        self._samples: collections.deque = collections.deque(maxlen=4)
        self._lock = threading.Lock()
        self._thread = None
        if background:
            self.start()

    def sample(self) -> Optional[Sample]:
        try:
            s = Sample(self.clock(), self.reader(), self.own())
        except (OSError, ValueError, IndexError):
            return None
        with self._lock:
            self._samples.append(s)
        return s

    def start(self) -> None:
        """Sample every `EVERY_S` in a daemon thread (the app's; tests call `sample` themselves)."""
        if self._thread is not None or self.sample() is None:
            return

        def loop():
            while True:
                time.sleep(EVERY_S)
                self.sample()

        self._thread = threading.Thread(target=loop, name="gvs-cpu-sampler", daemon=True)
        self._thread.start()

    def free(self) -> Tuple[Optional[float], float]:
        """(free cores, window in seconds), or (None, 0) when /proc/stat cannot be read."""
        now = self.sample()
        if now is None:
            return None, 0.0
        with self._lock:
            older = [s for s in self._samples if now.t - s.t >= MIN_WINDOW_S]
        base = older[-1] if older else None
        if base is None:  # nothing old enough: a short fresh window
            base = now
            self.sleep(FRESH_WINDOW_S)
            now = self.sample()
            if now is None:
                return None, 0.0
        window = max(1e-6, now.t - base.t)
        idle_cores = 0.0
        for c in self.cores:
            if c in now.stat and c in base.stat:
                busy = now.stat[c][0] - base.stat[c][0]
                idle = now.stat[c][1] - base.stat[c][1]
                total = busy + idle
                idle_cores += idle / total if total > 0 else 1.0
        mine = max(0.0, (now.own - base.own) / window)
        return min(float(len(self.cores)), idle_cores + mine), window


class ThreadPolicy:
    """How many torch threads a run gets: `fixed` (OMP_NUM_THREADS or `--threads N`) or chosen from free cores."""

    def __init__(self, fixed: Optional[int] = None, why: str = "", free_cores: Optional[FreeCores] = None):
        self.fixed = fixed
        self.why = why
        self.free_cores = free_cores

    @classmethod
    def from_settings(cls, threads="auto", env=None, background: bool = True) -> "ThreadPolicy":
        """`threads`: "auto" or a whole number >= 1 (the `--threads` flag). OMP_NUM_THREADS, when set, wins over
        "auto"; an explicit number wins over both."""
        env = os.environ if env is None else env
        text = str(threads if threads is not None else "auto").strip().lower()
        if text != "auto":
            try:
                n = int(text)
            except ValueError:
                n = 0
            if n < 1:
                raise ValueError(f"--threads: expected 'auto' or a whole number >= 1, got {threads!r}")
            return cls(n, "--threads")
        omp = env.get("OMP_NUM_THREADS")
        if omp:
            try:
                n = int(omp.split(",")[0])
            except ValueError:
                n = 0
            if n >= 1:
                return cls(n, f"OMP_NUM_THREADS={omp}")
        return cls(None, "", FreeCores(background=background))

    def choose(self) -> Tuple[int, str]:
        """(threads, why) for the run about to start."""
        if self.fixed is not None:
            return self.fixed, self.why
        cores = len(self.free_cores.cores)
        free, window = self.free_cores.free()
        if free is None:
            try:
                load = os.getloadavg()[0]
            except (AttributeError, OSError):
                return cores, f"all {cores} cores (the machine's load is unknown)"
            free, how = max(0.0, cores - load), f"1-min load {load:.1f}"
        else:
            how = f"over {window:.1f} s"
        n = max(1, min(cores, int(math.floor(free + MARGIN))))
        return n, f"{free:.1f} of {cores} cores free {how}"

    def apply(self) -> Tuple[int, str]:
        """Choose and set torch's thread count (on the calling thread: the one that runs the run)."""
        import torch

        n, why = self.choose()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n, why


def describe_threads(n: int, why: str) -> str:
    return f"{n} torch thread{'s' if n != 1 else ''} ({why})"


__all__ = ["FreeCores", "ThreadPolicy", "affinity_cores", "describe_threads", "read_proc_stat"]
