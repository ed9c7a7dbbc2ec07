"""Gradio-free helpers of the app: status lines with per-phase progress and ETA, the reward plot's data, run history,
torch threads. Kept apart from app.py so they can be tested without a server.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

#: Names of the sampling phases as the user reads them.
PHASE_WORDS = {"optimize": "optimising x_T", "sample": "sampling"}


# --------------------------------------------------------------------------------------------------- threads
def configure_torch_threads(env=None) -> tuple[int, str]:
    """Use every core this process may run on, unless OMP_NUM_THREADS says otherwise; returns (threads, why)."""
    import torch

    env = os.environ if env is None else env
    if env.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores))
    return torch.get_num_threads(), "the cores available to this process"


def busy_notice() -> Optional[str]:
    """A sentence when the machine is loaded above its cores (generations then run several times slower)."""
    try:
        load = os.getloadavg()[0]
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if load > 1.5 * cores:
        return (f"the machine is busy (load {load:.1f} on {cores} cores): expect this to take several times "
                "longer than on an idle machine")
    return None


# ---------------------------------------------------------------------------------------------------- status
@dataclass
class StatusTracker:
    """Turns StepEvents into a status line: phase, step k/N, reward, elapsed time and an ETA from the first steps.

    Phases: DOODL first optimises x_T (`optimize`, iterations 1..n), then every method samples (`sample`, steps
    0..N−1). `done` counts finished steps of the current phase; `cancelled()` says where a run stopped.
    """

    prefix: str = ""
    key: str = ""  # the (session, tab) the run belongs to
    phase: str = "sample"
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    _phase_start: float = 0.0
    _started: float = field(default_factory=time.perf_counter)

    def update(self, ev) -> str:
        phase = getattr(ev, "phase", "sample") or "sample"
        if phase != self.phase:
            self._phase_start = self.seconds
            self.phase = phase
        # optimise events count iterations from 1; sampling events index steps from 0
        self.done = int(ev.index) if phase == "optimize" else int(ev.index) + 1
        self.total = int(ev.total)
        self.seconds = float(ev.seconds)
        parts = [f"{self.prefix}{PHASE_WORDS.get(phase, phase)} {self.done}/{self.total}"]
        if ev.reward is not None:
            parts.append(f"reward {ev.reward:.3g}")
        parts.append(f"{self.seconds:.1f} s")
        eta = self.eta()
        if eta is not None:
            parts.append(f"≈ {eta:.0f} s left" + (" in the optimisation, then sampling" if phase == "optimize" else ""))
        return " · ".join(parts)

    def eta(self) -> Optional[float]:
        if self.done < 1 or self.total <= self.done:
            return None if self.done < 1 else 0.0
        rate = (self.seconds - self._phase_start) / self.done
        return rate * (self.total - self.done)

    def progress(self) -> tuple[int, int]:
        return min(self.done, self.total), max(1, self.total)

    def cancelled(self) -> str:
        if self.total == 0:
            return f"{self.prefix}cancelled before the first step"
        where = "optimisation iteration" if self.phase == "optimize" else "step"
        return (f"{self.prefix}cancelled at {where} {self.done}/{self.total} after {self.seconds:.1f} s "
                "(nothing was written)")


# ------------------------------------------------------------------------------------------------------ plot
#: The reward plot's columns (Gradio's native `LinePlot`: x, y, colour).
PLOT_X, PLOT_Y, PLOT_COLOR = "step", "reward", "series"
#: d3 formats the browser applies to the plot's axes: integer steps, 3 significant digits.
PLOT_X_FORMAT, PLOT_Y_FORMAT = "d", ".3g"
#: The plot's series, and their colours. The page builds the chart's colour scale from the series present when it
#: draws the chart (first value, a resize, a tab shown again) and otherwise only swaps the data: a series absent
#: then is later drawn without a colour. So a run's line is "unguided" (method none) or "guided", in a Generate as
#: in a Compare, and every value of the plot names both (`reward_plot_data`).
PLOT_SERIES = {"unguided": "#6b7280", "guided": "#f97316"}


def series_name(method: str) -> str:
    """The plot series of a run of `method`."""
    return "unguided" if method == "none" else "guided"


def empty_plot_data():
    """The plot's first value: no point, both series named."""
    return reward_plot_data({})


def reward_plot_data(series: dict):
    """The reward plot's data: one row per (series, step) with a reward (None skipped), steps counted from 1, and a
    row with a NaN reward (which the chart skips) for each of `PLOT_SERIES` without a point, so every value names
    both series.

    The app's plot is Gradio's native `LinePlot`, drawn in the browser from these rows: sending them costs the
    server well under a millisecond, where a matplotlib figure cost about 0.04 s to draw and encode on every
    update (`bench/RESULTS_APP.md`)."""
    import numpy as np
    import pandas as pd

    steps, rewards, names = [], [], []
    for name, values in series.items():
        for i, v in enumerate(values):
            if v is not None:
                steps.append(i + 1)
                rewards.append(float(v))
                names.append(str(name))
    for name in PLOT_SERIES:
        if name not in names:
            steps.append(1)
            rewards.append(float("nan"))
            names.append(name)
    # columns with their dtypes given (no `astype` pass): 0.14 ms for a Compare's two 50-step series
    return pd.DataFrame({PLOT_X: np.array(steps, dtype=np.int64), PLOT_Y: np.array(rewards, dtype=np.float64),
                         PLOT_COLOR: pd.Series(names, dtype=object)})


# --------------------------------------------------------------------------------------------------- history
# moved to pipelines.studio.history; re-exported for older imports
from .studio.history import (  # noqa: E402,F401
    RESTORED_FIELDS, add_history, gallery_items, history_caption, raw_path, settings_from_report,
)
