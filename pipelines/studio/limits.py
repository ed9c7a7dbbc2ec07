"""A wall-clock cap per job (issue #32): without one, a DOODL run of 50 iterations x 200 steps holds the only slot for
hours. The cap is checked between steps (and DOODL's iterations), where a Cancel is checked; a job that reaches it
stops with a message saying so, the last preview kept.

The default depends on the preset and the device (`default_job_seconds`); the operator sets another with
`python app.py --max-job-seconds S` (or `GVS_MAX_JOB_S`; 0 = no cap). On ZeroGPU, `spaces.GPU`'s duration
(`pipelines.studio.gpu`) is a second, outer limit.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Tuple

#: (micro-world preset, device type) -> seconds. The micro presets (32-px frames) finish a default run in seconds on a
#: CPU; the full-size ones take minutes on a GPU and far longer on a CPU.
DEFAULT_JOB_SECONDS = {
    (True, "cpu"): 300,
    (True, "cuda"): 120,
    (False, "cpu"): 3600,
    (False, "cuda"): 900,
}
ENV = "GVS_MAX_JOB_S"


def default_job_seconds(preset) -> Tuple[float, str]:
    """(seconds, why) for `preset` on its device."""
    from ..presets import is_micro_world

    name = str(getattr(preset, "name", ""))
    micro = is_micro_world(name) or name == "tiny"
    device = getattr(getattr(preset, "device", None), "type", "cpu")
    kind = "cuda" if device == "cuda" else "cpu"
    return float(DEFAULT_JOB_SECONDS[(micro, kind)]), f"default for {name} on {kind}"


def parse_seconds(value, field: str = "--max-job-seconds") -> float:
    """A cap in seconds from a flag or the environment: a number >= 0 (0: no cap); ValueError naming `field`."""
    try:
        secs = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{field}: expected a number of seconds (0 = no cap), got {value!r}") from None
    if not secs >= 0 or secs == float("inf"):
        raise ValueError(f"{field}: expected a number of seconds >= 0 (0 = no cap), got {value!r}")
    return secs


def job_cap(preset, requested=None, env=None) -> Tuple[float, str]:
    """(seconds, why): `requested` (the flag) if given, else `GVS_MAX_JOB_S`, else the preset's default. 0: no cap."""
    env = os.environ if env is None else env
    if requested is not None:
        return parse_seconds(requested), "--max-job-seconds"
    if env.get(ENV):
        return parse_seconds(env[ENV], ENV), ENV
    return default_job_seconds(preset)


class Deadline:
    """`seconds` of wall-clock time from now (0 or None: never)."""

    def __init__(self, seconds: Optional[float], clock=time.monotonic):
        self.seconds = float(seconds or 0)
        self._clock = clock
        self.start = clock()

    def expired(self) -> bool:
        return self.seconds > 0 and self._clock() - self.start >= self.seconds

    def elapsed(self) -> float:
        return self._clock() - self.start


def describe_cap(seconds: float, why: str) -> str:
    """The cap as the status and summary announce it."""
    if not seconds:
        return f"no time cap ({why})"
    return f"time cap {seconds:g} s ({why})"


__all__ = ["DEFAULT_JOB_SECONDS", "Deadline", "default_job_seconds", "describe_cap", "job_cap", "parse_seconds"]
