"""Learning-rate schedules for the training loop (`loop.run_steps`): `diffusers.optimization.get_scheduler`, with a floor.

HARIVO (seed 002, Appendix): "a learning rate of 0.0001 … gradually decreased to 0.00001". `get_scheduler`'s decaying
schedules (`linear`, `cosine`, `cosine_with_restarts`, `polynomial`) end at 0 (`polynomial` at a fixed 1e-7) and it
takes no end value, so `lr_factor` rescales its multiplier after the warm-up to end at `lr_end / lr` instead:
`m'(s) = r + (1 − r) · m(s)`, `r = lr_end / lr`. The decay is laid out so that the run's last step (`steps − 1`) is
the schedule's end: the last step trains at exactly `lr_end`.

The multiplier is a pure function of the step, so the loop sets each step's LR from it (resume needs no scheduler
state, and `accelerate` does not step it once per process).

`warmup_stable_cosine` is the micro-model stages' schedule (warm-up, flat, then a cosine to a floor), put together
from two `get_scheduler` multipliers.
"""
from __future__ import annotations

from typing import Callable

import torch

NAMES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
DECAYING = ("linear", "cosine", "cosine_with_restarts", "polynomial")


def lr_factor(name: str, steps: int, warmup: int = 0, floor: float = 0.0, num_cycles: int = 1,
              power: float = 1.0) -> Callable[[int], float]:
    """`step -> multiplier of the peak LR` from `get_scheduler(name, ...)`; decaying schedules end at `floor`."""
    from diffusers.optimization import get_scheduler

    if name not in NAMES:
        raise ValueError(f"lr_schedule must be one of {', '.join(NAMES)}, got {name!r}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"the LR floor must be between 0 and the peak LR (ratio in [0, 1]), got ratio {floor}")
    warmup = max(0, int(warmup))
    # a throwaway optimiser: get_scheduler builds a LambdaLR over it; only its multiplier is kept
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)
    total = max(steps - 1, warmup + 1)  # the last step (steps − 1) sits at the end of the decay
    sched = get_scheduler(name, dummy, num_warmup_steps=warmup, num_training_steps=total, num_cycles=num_cycles,
                          power=power)
    base = sched.lr_lambdas[0]
    if name not in DECAYING or floor == 0.0:
        return lambda s: float(base(int(s)))

    def f(s: int) -> float:
        s = int(s)
        m = float(base(s))
        if s < warmup:
            return m  # the warm-up ramps to the peak as get_scheduler has it
        if name == "polynomial":  # get_scheduler's polynomial ends at lr_end=1e-7 of a peak of 1: rescale to [0, 1]
            m = max(0.0, (m - 1e-7) / (1 - 1e-7))
        return floor + (1.0 - floor) * m

    return f


def config_factor(cfg) -> Callable[[int], float]:
    """The multiplier for a `TrainConfig` (`lr_schedule`, `lr_warmup`, `lr_end`, `steps`)."""
    floor = 0.0 if cfg.lr_end is None else cfg.lr_end / cfg.lr
    return lr_factor(cfg.lr_schedule, cfg.steps, cfg.lr_warmup, floor)


def warmup_stable_cosine(steps: int, warmup: int, decay_from: float = 0.6, floor: float = 0.1) -> Callable[[int], float]:
    """`step -> multiplier`: `get_scheduler("constant_with_warmup")` counting the step being taken (step s trains at
    (s + 1) / warmup, so the first step does not train at 0), flat until step `int(decay_from · steps)`, then
    `get_scheduler("cosine")` (half a cosine over the remaining steps) rescaled to end at `floor`: `floor + (1 −
    floor) · m`. The micro trainer's former `lr_at(step, steps, base, warmup)` is `base ·` this, step for step."""
    from diffusers.optimization import get_scheduler

    warmup = max(1, int(warmup))
    decay_start = int(steps * decay_from)

    def dummy():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)

    ramp = get_scheduler("constant_with_warmup", dummy(), num_warmup_steps=warmup).lr_lambdas[0]
    cosine = get_scheduler("cosine", dummy(), num_warmup_steps=0,
                           num_training_steps=max(1, steps - decay_start)).lr_lambdas[0]

    def f(s: int) -> float:
        s = int(s)
        if s < warmup:
            return float(ramp(s + 1))
        if s < decay_start:
            return 1.0
        return floor + (1.0 - floor) * float(cosine(s - decay_start))

    return f


__all__ = ["NAMES", "lr_factor", "config_factor", "warmup_stable_cosine"]
