"""The strategy interface every guidance method implements, and its parameter descriptions.

A method is a dataclass whose fields are its parameters (defaults from METHODS.md; `param(...)` metadata gives
ranges and help text, from which the app and CLI build their widgets and validation). The sampler calls
`start(ctx)` once, then `step(ctx, x, t, i)` for every step, which returns `x_{t−1}`. Methods never copy the
sampling loop: `ctx` (a `pipelines.sampler.Denoiser`, docs/denoiser.md) is all they see: the noise levels
(a_t, b_t) = `ctx.level(t)`, the model wrapper's ε̂ and x̂0 whatever the model predicts (with CFG and HARIVO MG
applied), the step, the differentiable decoder and the reward; never the scheduler itself.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence

import torch


def param(default, *, min=None, max=None, step=None, choices=None, help="", last=False):
    """A dataclass field carrying the metadata the UI and validation need (`last`: list it after the others)."""
    return field(default=default, metadata={"min": min, "max": max, "step": step, "choices": choices, "help": help,
                                            "last": last})


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    kind: str  # "float" | "int" | "choice" | "bool"
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    choices: Optional[Sequence[Any]] = None
    help: str = ""


@dataclass
class Guidance:
    """Base class: unguided DDIM (the `none` method's behaviour)."""

    name: ClassVar[str] = "none"
    #: True when the method needs gradients of the reward (it is refused with a non-differentiable reward).
    needs_gradient: ClassVar[bool] = False
    summary: ClassVar[str] = "Plain DDIM sampling, no guidance."

    @property
    def retakes_step(self) -> bool:
        """True when the method takes a step of the loop more than once (time travel, recurrences): the sampler then
        keeps what it needs to rebuild the scheduler's state before the step (`sampler.SchedulerStep`)."""
        return False

    def __post_init__(self) -> None:
        self.validate()

    # --- parameters -------------------------------------------------------------------------------------
    @classmethod
    def params(cls) -> list[ParamSpec]:
        specs = []
        fields = sorted(dataclasses.fields(cls), key=lambda f: bool(f.metadata.get("last")))  # stable sort
        for f in fields:
            if not f.init or f.name.startswith("_"):
                continue
            md = f.metadata
            default = f.default
            if md.get("choices"):
                kind = "choice"
            elif isinstance(default, bool):
                kind = "bool"
            elif isinstance(default, int):
                kind = "int"
            else:
                kind = "float"
            specs.append(
                ParamSpec(f.name, default, kind, md.get("min"), md.get("max"), md.get("step"), md.get("choices"), md.get("help", ""))
            )
        return specs

    def validate(self) -> None:
        for spec in self.params():
            value = getattr(self, spec.name)
            where = f"{self.name}.{spec.name}"
            if spec.kind == "choice":
                if value not in spec.choices:
                    raise ValueError(f"{where} must be one of {list(spec.choices)}, got {value!r}")
                continue
            if spec.kind == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{where} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where} must be a number, got {value!r}")
            if spec.kind == "int" and int(value) != value:
                raise ValueError(f"{where} must be a whole number, got {value!r}")
            if value != value:  # NaN
                raise ValueError(f"{where} must be a number, got NaN")
            if spec.min is not None and value < spec.min:
                raise ValueError(f"{where} must be ≥ {spec.min}, got {value}")
            if spec.max is not None and value > spec.max:
                raise ValueError(f"{where} must be ≤ {spec.max}, got {value}")

    def config(self) -> dict:
        return {s.name: getattr(self, s.name) for s in self.params()}

    # --- sampling hooks ---------------------------------------------------------------------------------
    def start(self, ctx) -> None:
        """Called once before the first step (reset per-run state here)."""

    def initial_latents(self, ctx, latents: torch.Tensor):
        """Optionally replace x_T before sampling. May be a generator yielding progress dicts; returns latents."""
        return latents

    def step(self, ctx, x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        with torch.no_grad():
            eps = ctx.eps(x, t)
            x0 = ctx.note_x0(ctx.x0(x, eps, t))
            return ctx.ddim(x0, eps, t)


@dataclass
class RangedGuidance(Guidance):
    """A method that guides a window of the run (the other steps are plain sampling), given as step indices
    `[start_step, end_step)` and/or as a noise-level range `guide_to ≤ ν ≤ guide_from`. ν is the noise level of the
    latents a step starts from, √(1−ᾱ_t) = b_t / √(a_t² + b_t²) (`Denoiser.level`; 1 = pure noise, 0 = clean), the same
    measure on VP, σ-space and flow schedules: a noise window guides the same part of denoising whatever the number
    of steps or a flow schedule's shift, where a step window would move with them. A step is guided when it is in
    both windows (the defaults leave the noise window open: every step index range works as it always did)."""

    start_step: int = param(0, min=0, max=1000, step=1, help="first guided step index", last=True)
    end_step: int = param(
        -1, min=-1000, max=1000, step=1, help="guided steps end (exclusive; −1 = all but the last)", last=True
    )
    guide_from: float = param(1.0, min=0.0, max=1.0, step=0.01, last=True,
                              help="noise window: guide only steps whose noise level √(1−ᾱ_t) (1 = pure noise, "
                                   "0 = clean; the same on VP and flow schedules) is at most this")
    guide_to: float = param(0.0, min=0.0, max=1.0, step=0.01, last=True,
                            help="noise window: guide only steps whose noise level √(1−ᾱ_t) is at least this")

    def validate(self) -> None:
        super().validate()
        if self.guide_to > self.guide_from:
            raise ValueError(f"{self.name}.guide_to must be ≤ {self.name}.guide_from (the window runs from the noisier "
                             f"level down to the cleaner one), got guide_from={self.guide_from}, "
                             f"guide_to={self.guide_to}")

    def start(self, ctx) -> None:
        self._steps = guided_steps(ctx, self.start_step, self.end_step, self.guide_from, self.guide_to)

    def guided(self, ctx, t: int, i: int) -> bool:
        """Step i is guided: inside the windows and not the final step to t < 0."""
        return i in self._steps and ctx.prev_t(t) >= 0


#: The step policy's ceiling: no default of any method moves a frame of x_{t−1} by more than this many times b_{t−1},
#: the noise left after the step (rms over the frame's latent). What a late step can absorb shrinks with the noise
#: left; a step far beyond it writes a pattern the remaining steps cannot turn back into the prompt's video.
MAX_SHIFT = 1.0
TRUST_HELP = ("trust region: the guided step moves each frame of x_{t−1} by at most this many times the noise left "
              "after the step, b_{t−1} (rms; √(1−ᾱ_{t−1}) on VP, σ_{t−1} on flow, in the scheduler's own latents); "
              "smaller steps keep their size; 0 = unbounded (the old forms)")


def noise_left(ctx, t_prev: int) -> torch.Tensor:
    """b_{t−1}: the noise x_{t−1} still carries after the step (0 at the end of sampling), in the variance-preserving
    coordinates methods see (`ctx.level(t_prev)[1]` = √(1−ᾱ_{t−1})). In a scheduler's own latents a·x0 + b·ε (flow
    matching: 1 − σ, σ) both a shift and this noise are scaled by the same √(a² + b²), so a shift's ratio to it is its
    ratio to the scheduler's own b_{t−1} (σ_{t−1} on flow): the trust region means the same on every schedule."""
    return ctx.level(t_prev)[1]


def frame_rms(v: torch.Tensor) -> torch.Tensor:
    """rms of latents (b, c, f, h, w) per frame: shape (f,)."""
    return v.float().pow(2).mean(dim=(0, 1, 3, 4)).sqrt()


def bound_shift(ctx, delta: torch.Tensor, t_prev: int, trust: float, record: bool = True) -> torch.Tensor:
    """The trust region of every guided step, stated in b_{t−1}, the noise left after the step (`noise_left`): scale
    each frame of the shift `delta` (added to x_{t−1}) down to at most `trust`·b_{t−1} in rms, keeping frames already inside it as they are (`trust` 0: unbounded).
    Records the step's largest shift ÷ noise left in `ctx.stats["shift_ratio"]` (after the bound) and
    `["shift_ratio_raw"]` (before it), so every report carries it per step."""
    noise = noise_left(ctx, t_prev).float()
    r = frame_rms(delta)
    if trust > 0:
        cap = trust * noise
        scale = torch.where(r > cap, cap / r.clamp(min=1e-20), torch.ones_like(r))
        delta = delta * scale.to(delta.dtype)[None, None, :, None, None]
        r_after = r * scale
    else:
        r_after = r
    if record:
        denom = float(noise.clamp(min=1e-12))
        ctx.stats["shift_ratio"] = max(ctx.stats.get("shift_ratio", 0.0), float(r_after.max()) / denom)
        ctx.stats["shift_ratio_raw"] = max(ctx.stats.get("shift_ratio_raw", 0.0), float(r.max()) / denom)
    return delta


def guided_steps(ctx, start: int, end: int, guide_from: float = 1.0, guide_to: float = 0.0) -> set[int]:
    """The step indices a `RangedGuidance` guides on this run's schedule: those in `guided_range(start, end)` whose
    timestep's noise level √(1−ᾱ_t) (`ctx.level`) lies in [guide_to, guide_from]."""
    steps = guided_range(len(ctx.timesteps), start, end)
    if guide_from >= 1.0 and guide_to <= 0.0:
        return set(steps)
    eps = 1e-6  # the ends of the schedule (ν = 1 at a flow's σ = 1) are inside a window that names them
    return {i for i in steps if guide_to - eps <= float(ctx.level(ctx.timesteps[i])[1]) <= guide_from + eps}


def guided_range(total: int, start: int, end: int) -> range:
    """Step indices `[start, end)`; a negative `end` counts from the end as a Python slice does (−1: all but the
    last step, −2: all but the last two)."""
    stop = end if end >= 0 else total + end
    return range(max(0, start), max(0, min(total, stop)))


def step_schedule(kind: str, i: int, total: int) -> float:
    """Multiplier s_i for a step size: constant, increase (small early, large late) or decrease."""
    if kind == "constant" or total <= 1:
        return 1.0
    frac = i / (total - 1)
    if kind == "increase":
        return 2.0 * frac
    if kind == "decrease":
        return 2.0 * (1.0 - frac)
    raise ValueError(f"unknown schedule {kind!r}")


def rms(v: torch.Tensor) -> torch.Tensor:
    return v.float().pow(2).mean().sqrt()
