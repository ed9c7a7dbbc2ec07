"""A *case*: one prompt with its inputs and what its metric compares with. The micro suites (`micro.py`) and the
real-preset suites (`real.py`) both build their cases from this one class; the grid (`grid.py`) crosses them with
method specs and seeds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Case:
    id: str
    task: str
    prompt: str
    inputs: dict = field(default_factory=dict)  # GenerationRequest fields (media, interpolation mode)
    target: dict = field(default_factory=dict)  # what the metric compares with
    cfg: Optional[float] = None
    steps: Optional[int] = None  # the suite's own step count (overrides --steps)


__all__ = ["Case"]
