"""Gradio-free helpers of the app: status lines with per-phase progress and ETA, the reward plot, run history,
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
def reward_figure(series: dict, title: str = "Reward per step"):
    """A small matplotlib figure: one line per named series of per-step rewards (None skipped).

    The x axis shows integer step numbers only, the y axis 3 significant digits.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # a bare Figure, never registered with pyplot (nothing to close, no global state kept per request)
    fig = Figure(figsize=(5.6, 2.4), dpi=100)
    ax = fig.subplots()
    shown = False
    for name, values in series.items():
        pts = [(i + 1, v) for i, v in enumerate(values) if v is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", markersize=2.5, linewidth=1.4, label=name)
            shown = True
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.grid(alpha=0.3)
    if shown and len(series) > 1:
        ax.legend(fontsize=8, loc="best")
    if not shown:
        ax.text(0.5, 0.5, "the reward of each step appears here", ha="center", va="center", transform=ax.transAxes,
                color="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    # fixed margins (room for 3-digit tick labels and the axis labels): `tight_layout` measured every text and
    # took a third of the figure's cost (52 -> 36 ms to draw and encode)
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.2, top=0.88)
    return fig


# --------------------------------------------------------------------------------------------------- history
# moved to pipelines.studio.history; re-exported for older imports
from .studio.history import (  # noqa: E402,F401
    RESTORED_FIELDS, add_history, gallery_items, history_caption, raw_path, settings_from_report,
)
