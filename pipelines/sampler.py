"""One guided loop over the parts of a video pipeline, written against a noise-level denoiser (docs/denoiser.md).

Every scheduler's latents are x_t = a_t·x0 + b_t·ε with (a_t, b_t) read from it (`NoiseSchedule`): VP schedulers
(DDIM, DPM-Solver(++), UniPC, PNDM, LCM) (√ᾱ_t, √(1−ᾱ_t)); Euler-type σ-space ones (1, σ_t); flow matching
(`FlowMatchEulerDiscreteScheduler`, `UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction")`,
whatever `is_flow_scheduler` names) (1 − σ_t, σ_t). Methods see them scaled to variance-preserving form,
x_t / √(a_t² + b_t²), with ᾱ_t = a_t² / (a_t² + b_t²) (`Denoiser.level`): x̂0 and ε̂ are unchanged by that scaling, and
so is the ratio of a step to the noise left after it (the trust region, `guidance.base.bound_shift`), so every method
runs unchanged on every family.

`Denoiser` holds one generation's state (prompt embeddings, CFG, schedule, MG, reward) and is all a guidance method
sees: the model wrapper `eps` / `x0` / `predict` returns ε̂ and x̂0 whatever the model predicts (ε, v, sample, flow
velocity v̂: x̂0 = x − σ·v̂, ε̂ = x + (1 − σ)·v̂, exact at σ = 1 where a_t = 0; `Prediction`), `ddim` the step,
`decode` (differentiable VAE decode to [0, 1]) and `reward`. `sample` is the loop: one `StepEvent` per step and a
final event carrying the video.

The step. With diffusers' `DDIMScheduler` (no thresholding: every AnimateDiff preset's) `ddim` is the η-DDIM formula
itself. With any other scheduler `ddim(x̂0, ε̂, t)` is that scheduler's own `step` (`SchedulerStep`), fed the model
output that implies (x_t, x̂0): the raw output itself when the method changed nothing, so an unguided run is the
parent pipeline's bit for bit; on flow, the velocity v = (x_t − x̂0) / σ_t. A step taken again (time travel) runs on a
fresh scheduler built from the scheduler's config and replayed through the run's steps: no scheduler state is ever
copied. A chain a method runs on its own timesteps (TITAN's depth, DOODL) steps with the η = 0 DDIM formula, which on
flow is exactly the Euler step of the flow ODE, x' = (1 − σ')·x̂0 + σ'·ε̂ (FlowMatchEulerDiscreteScheduler's own step;
for UniPC an Euler approximation of its multistep update), and is refused on other VP schedulers (`needs_ddim`).
With η > 0 the same formula in the variance-preserving coordinates is the flow's stochastic step (Free²Guide's
candidates): x' = a'·x̂0 + √(b'² − s²)·ε̂ + s·ξ, s = η·√(a'² + b'²)·√((1−ᾱ')/(1−ᾱ))·√(1 − ᾱ/ᾱ'), which keeps the
marginals of x_t' = a'·x0 + b'·ε.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.utils.checkpoint
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from .guidance.base import Guidance
from .guidance.temporal import mitigating_gradient
from .memory import PeakMemory


class Cancelled(RuntimeError):
    """Raised inside the stream when `should_stop()` returns True (checked once per step)."""


@dataclass
class StepEvent:
    index: int  # 0-based step index; == total on the final event
    total: int
    timestep: int
    preview: Optional[torch.Tensor]  # (f, 3, h, w) in [0, 1]: this step's x̂0, decoded or fast-mapped (≤ 256 px)
    reward: Optional[float]  # task reward (mean over frames) of this step's x̂0
    rewards: dict = field(default_factory=dict)  # extra named figures (guidance diagnostics)
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    final: bool = False
    frames: Optional[torch.Tensor] = None  # final video (f, 3, H, W) in [0, 1], on the final event
    phase: str = "sample"  # "sample", or "optimize" for DOODL's outer iterations


class StepHook:
    """Runs after every step on x_{t−1} (e.g. replacement of known latent frames for interpolation)."""

    def start(self, ctx: "Denoiser") -> None:  # pragma: no cover - interface
        pass

    def after_step(self, ctx: "Denoiser", x_prev: torch.Tensor, t_prev: int, i: int) -> torch.Tensor:
        return x_prev

    def fixed_frames(self, num_frames: int) -> list[int]:
        """Frames whose x_{t−1} this hook overwrites after every step: a guided shift of them is lost."""
        return []


def is_flow_scheduler(scheduler) -> bool:
    """A flow-matching scheduler: latents (1 − σ)·x0 + σ·ε and a velocity-predicting model."""
    cfg = scheduler.config
    return (isinstance(scheduler, FlowMatchEulerDiscreteScheduler) or type(scheduler).__name__.startswith("FlowMatch")
            or bool(cfg.get("use_flow_sigmas", False)) or cfg.get("prediction_type") == "flow_prediction")


HARIVO_CFG_HIGH = 12.5
TRACKED_KEY_FRAMES = 4


def reward_frames(reward, num_frames: int, k: int = TRACKED_KEY_FRAMES) -> list[int]:
    """The frames a reward needs to be read: its required frames if it names them, else `k` evenly spaced ones."""
    required = reward.required_frames(num_frames) if hasattr(reward, "required_frames") else None
    if required:
        return sorted(set(int(j) for j in required))
    from rewards.lvlm import key_frame_indices

    return key_frame_indices(num_frames, k)  # HARIVO: CFG 10–15 for t > 0.7 T, 7.5 after


LEAN_DECODE_PIXELS = 256 * 256  # frames at least this large decode lean (Denoiser.decode)
LEAN_DECODE_FRAMES = 1  # frames per chunk when decoding lean (at ≥ 256² one frame is a full GPU batch)


def _checkpoint_module(module, *args):
    return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)


def _decode_blockwise(vae, z: torch.Tensor) -> torch.Tensor:
    """`vae.decode(z).sample` with the decoder's mid and up blocks checkpointed (diffusers' own switch, turned on
    for this call only; it acts only when grad is enabled, i.e. here and in the recomputation during backward)."""
    dec = getattr(vae, "decoder", None)
    if dec is None or not hasattr(dec, "gradient_checkpointing"):
        return vae.decode(z).sample
    if getattr(dec, "_gradient_checkpointing_func", None) is None:  # what enable_gradient_checkpointing() sets
        dec._gradient_checkpointing_func = _checkpoint_module
    saved, dec.gradient_checkpointing = dec.gradient_checkpointing, True
    try:
        return vae.decode(z).sample
    finally:
        dec.gradient_checkpointing = saved


class NoiseSchedule:
    """The noise levels of one run, read from the scheduler: x_t = a_t·x0 + b_t·ε at every listed timestep.

    Three families (`kind`): "vp", a scheduler with `alphas_cumprod` stepping in variance-preserving latents (DDIM,
    DPM-Solver, UniPC, PNDM, LCM): (a_t, b_t) = (√ᾱ_t, √(1−ᾱ_t)); "sigma", Euler-type σ-space latents x0 + σ_t·ε
    (`init_noise_sigma` ≠ 1): (1, σ_t); "flow", flow matching (`is_flow_scheduler`): (1 − σ_t, σ_t). Methods see every
    family's latents scaled to variance-preserving form, x_t / √(a_t² + b_t²), with ᾱ_t = a_t² / (a_t² + b_t²)
    (`alpha_bar`) and `level(t)` = (√ᾱ_t, √(1−ᾱ_t)) = (a_t, b_t) / √(a_t² + b_t²). `noise_level(t)` = √(1−ᾱ_t) ∈ [0, 1]
    (1 = pure noise) is the same measure on every family, which guided windows and the trust region are stated in.
    After the last step (t < 0) the schedule's end: DDIM/PNDM's `final_alpha_cumprod`, else ᾱ = 1.
    """

    def __init__(self, scheduler, timesteps, device):
        self.timesteps = [int(t) for t in timesteps]
        self.device = device
        self.num_train = scheduler.config.num_train_timesteps
        flow = is_flow_scheduler(scheduler)
        #: the η-DDIM formula is the scheduler's step (DDIMScheduler without thresholding)
        self.native_ddim = (not flow and isinstance(scheduler, DDIMScheduler)
                            and not scheduler.config.get("thresholding", False))
        sigma = (not flow and not self.native_ddim and hasattr(scheduler, "sigmas")
                 and float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0)
        self.kind = "flow" if flow else "sigma" if sigma else "vp"
        self._abar: dict[int, torch.Tensor] = {}
        self._sigma: dict[int, float] = {}  # σ at each listed timestep (sigma and flow families)
        if self.kind == "vp":
            self.alphas = scheduler.alphas_cumprod.to(device, torch.float32)
            self.final_alpha = torch.as_tensor(float(getattr(scheduler, "final_alpha_cumprod", 1.0)),
                                               device=device, dtype=torch.float32)
        elif self.kind == "sigma":
            sig = scheduler.sigmas.to(device, torch.float32)
            for k, t in enumerate(self.timesteps):
                self._abar.setdefault(t, 1.0 / (1.0 + sig[k] ** 2))
                self._sigma.setdefault(t, float(scheduler.sigmas[k].double()))
            self.alphas = scheduler.alphas_cumprod.to(device, torch.float32)
            self.final_alpha = torch.as_tensor(1.0, device=device, dtype=torch.float32)
        else:
            sig = scheduler.sigmas.to(torch.float64)
            for k, t in enumerate(self.timesteps):
                self._sigma.setdefault(t, float(sig[k]))
                self._abar.setdefault(t, self._flow_abar(float(sig[k])))
            self.sigma_end = float(scheduler.sigmas[-1])
            self.final_alpha = self._flow_abar(self.sigma_end)
        self._next_t = {t: (self.timesteps[k + 1] if k + 1 < len(self.timesteps) else -1)
                        for k, t in reversed(list(enumerate(self.timesteps)))}

    def _flow_abar(self, sigma: float) -> torch.Tensor:
        a, b = 1.0 - sigma, sigma
        return torch.as_tensor(a * a / (a * a + b * b), device=self.device, dtype=torch.float32)

    def prev(self, t: int) -> int:
        """The timestep the step from `t` lands on. DDIM: diffusers' DDIMScheduler.step rule, `t − T // N`, for every
        timestep spacing (with "linspace" this is not the next listed timestep: 25 steps, 999 → 959 while the list
        goes 999, 957, ...; the model still runs at the listed ones). Others: the next listed timestep (−1 after the
        last)."""
        if not self.native_ddim and int(t) in self._next_t:
            return self._next_t[int(t)]
        return int(t) - self.num_train // max(1, len(self.timesteps))

    def alpha_bar(self, t: int) -> torch.Tensor:
        """ᾱ_t of the variance-preserving latents methods see (a 0-dim float32 tensor)."""
        if int(t) < 0:
            return self.final_alpha
        if self._abar and int(t) in self._abar:
            return self._abar[int(t)]
        return self.alphas[int(t)]

    def level(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, b_t) of the latents methods see: (√ᾱ_t, √(1−ᾱ_t)), 0-dim tensors. b at t−1 is the noise left after
        a step, which the trust region is stated in (`guidance.base.bound_shift`)."""
        if self.kind != "vp" and (int(t) in self._sigma or (int(t) < 0 and self.kind == "flow")):
            a, b = self.ab(t)  # from σ in float64: ᾱ in float32 would lose b's precision near the clean end
            n = (a * a + b * b) ** 0.5
            return (torch.tensor(a / n, device=self.device, dtype=torch.float32),
                    torch.tensor(b / n, device=self.device, dtype=torch.float32))
        a = self.alpha_bar(t)
        return a.sqrt(), (1 - a).clamp(min=0).sqrt()

    def noise_level(self, t: int) -> float:
        """√(1−ᾱ_t) = b_t / √(a_t² + b_t²) ∈ [0, 1] (1: pure noise), comparable across VP, σ-space and flow."""
        return float(self.level(t)[1])

    def ab(self, t: int) -> tuple[float, float]:
        """(a_t, b_t) of the scheduler's own latents: VP (√ᾱ, √(1−ᾱ)), σ-space (1, σ), flow (1 − σ, σ)."""
        if self.kind == "flow":
            s = self._sigma.get(int(t), self.sigma_end) if int(t) >= 0 else self.sigma_end
            return 1.0 - s, s
        if self.kind == "sigma" and int(t) in self._sigma:
            return 1.0, self._sigma[int(t)]
        a = float(self.alpha_bar(t))
        return a**0.5, (1 - a) ** 0.5

    def vp_scale(self, t: int) -> float:
        """x_methods / x_scheduler at t: 1/√(a_t² + b_t²) (1 for the VP family)."""
        if self.kind == "vp":
            return 1.0
        a, b = self.ab(t)
        return (a * a + b * b) ** -0.5


class Prediction:
    """The model wrapper's conversion: whatever the network predicts, (x̂0, ε̂) at latents x = a·x0 + b·ε.

    `kind` is the scheduler's `prediction_type`, or "flow" for a flow-matching scheduler. With (a, b) the latents'
    coefficients (VP: a = √ᾱ, b = √(1−ᾱ), given as ᾱ; flow: a = 1 − σ, b = σ, in the scheduler's own latents):
        epsilon   ε̂ = out                     x̂0 = (x − b·ε̂) / a
        v         ε̂ = a·out + b·x             x̂0 = (x − b·ε̂) / a          (v = a·ε − b·x0, a² + b² = 1)
        sample    ε̂ = (x − a·out) / b         x̂0 = out
        flow      ε̂ = x + (1 − σ)·v̂            x̂0 = x − σ·v̂                (v = ε − x0; exact at σ = 1, where a = 0)
    `output` is the inverse: the raw output whose x̂0 at x is the given one (what the scheduler's `step` is fed when a
    method changed x̂0).
    """

    KINDS = ("epsilon", "v_prediction", "sample", "flow")

    def __init__(self, kind: str):
        if kind not in self.KINDS:
            raise ValueError(f"unsupported prediction_type {kind!r} (one of {', '.join(self.KINDS)})")
        self.kind = kind

    def eps(self, out: torch.Tensor, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """ε̂ from a VP model's output at (x, ᾱ)."""
        if self.kind == "epsilon":
            return out
        if self.kind == "v_prediction":
            return abar.sqrt() * out + (1 - abar).sqrt() * x
        return (x - abar.sqrt() * out) / (1 - abar).sqrt()

    def output(self, x: torch.Tensor, x0: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """The VP model output whose x̂0 at (x, ᾱ) is `x0`."""
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        if self.kind == "epsilon":
            return eps
        if self.kind == "v_prediction":
            return abar.sqrt() * eps - (1 - abar).sqrt() * x0
        return x0

    @staticmethod
    def flow_split(v: torch.Tensor, xs: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity v̂ at the flow latents xs → (ε̂, x̂0) = (xs + (1 − σ)·v̂, xs − σ·v̂)."""
        return xs + (1.0 - sigma) * v, xs - sigma * v

    @staticmethod
    def flow_output(xs: torch.Tensor, x0: torch.Tensor, sigma: float) -> torch.Tensor:
        """The velocity whose x̂0 at the flow latents xs is `x0`: v = (xs − x̂0) / σ."""
        return (xs - x0) / sigma


class SchedulerStep:
    """The loop's step through the scheduler's own `step` (every scheduler but plain DDIM, whose step is the η-DDIM
    formula itself). A method hands over (x̂0, ε̂) at the loop's current timestep; the scheduler is fed the model
    output that implies them (the raw output itself when the method changed nothing, so an unguided run is the
    parent pipeline's bit for bit) and advances. No scheduler state is ever copied:

    * a step taken again at the same timestep (time travel, TFG's recurrences: methods whose `retakes_step` is
      true) runs on a fresh scheduler built from the scheduler's config (`from_config` + `set_timesteps`, checked
      against the run's schedule) and replayed through the inputs of the steps already taken (`history`, kept only
      for such methods); the fresh instance then steps the rest of the run. Its state equals the first's: every
      scheduler's state is a function of the (model output, timestep, sample) triples it was stepped with (the
      noise a stochastic scheduler draws is not kept; the replay draws its own from a throwaway generator);
    * a chain a method runs on its own timesteps (TITAN's depth, DOODL) never touches the scheduler: on flow it is the
      η = 0 DDIM formula, exactly the Euler step of the flow ODE (module docstring); on other VP schedulers it is
      refused (`needs_ddim`).
    """

    def __init__(self, ctx: "Denoiser"):
        self.ctx = ctx
        self.live = ctx.scheduler  # the instance that steps (a fresh one after a retake)
        self.keep_history = False  # set by `sample` from the method's `retakes_step`
        self.history: list[tuple] = []  # (output, timestep, sample) the live scheduler was stepped with, per step
        self.t = None  # the loop's current timestep (between `begin` and `end`)
        self.x = self.xs = None  # its latents: as methods see them, and in the scheduler's space
        self.rec = None  # (x_t, raw model output, ε̂) of the last model call at the current timestep
        self.taken = None  # this step's (output, timestep, sample) once stepped: a second step is a retake
        self.stepped = None  # (x_{t−1} as returned to the method, the same in the scheduler's space)

    def begin(self, t: int, xs: torch.Tensor) -> torch.Tensor:
        """The loop's latents at the start of a step → what methods see (variance-preserving x_t)."""
        ctx = self.ctx
        self.t, self.xs, self.rec, self.taken, self.stepped = int(t), xs, None, None, None
        if ctx.flow:
            x = xs * ctx.schedule.vp_scale(t)
        elif ctx.sigma_space:
            x = self.live.scale_model_input(xs, ctx.t_exact.get(int(t), t))
        else:
            x = xs
        self.x = x
        return x

    def end(self, x_prev: torch.Tensor) -> torch.Tensor:
        """A method's x_{t−1} → the loop's latents in the scheduler's space (exactly `step`'s when unchanged)."""
        if self.stepped is None:
            raise RuntimeError("the guidance method returned without stepping the scheduler (ctx.ddim)")
        vp, xs = self.stepped
        if self.keep_history:
            self.history.append(self.taken)
        self.t = None
        if x_prev is vp or (x_prev.shape == vp.shape and torch.equal(x_prev, vp)):
            return xs
        return (x_prev / self.c_in()).to(xs.dtype)

    def c_in(self) -> float:
        """x_methods / x_scheduler at the live scheduler's current step (1 for the VP family)."""
        ctx = self.ctx
        if not (ctx.flow or ctx.sigma_space):
            return 1.0
        sig = self.live.sigmas
        s = sig[min(self.live.step_index or 0, len(sig) - 1)]
        if ctx.flow:
            s = float(s)
            return ((1 - s) ** 2 + s * s) ** -0.5
        return (s.to(torch.float32) ** 2 + 1) ** -0.5

    def fresh(self):
        """A new instance of the scheduler from its config with the run's timesteps, replayed through `history`."""
        ctx, old = self.ctx, self.live
        name = type(old).__name__
        k = ctx.timesteps.index(self.t)
        if len(self.history) != k:
            raise RuntimeError(
                f"retaking step {k} on {name} replays the {k} steps before it, and this run kept {len(self.history)} "
                f"(a method that takes a step again must say so with `retakes_step`)")
        new = type(old).from_config(old.config)
        n = getattr(old, "num_inference_steps", None) or len(ctx.timesteps)  # PNDM lists one timestep twice
        try:
            new.set_timesteps(n, device=old.timesteps.device)
        except (TypeError, ValueError) as err:
            raise NotImplementedError(f"retaking a step on {name} rebuilds it from its config, and its "
                                      f"set_timesteps({n}) refused: {err}") from err
        if getattr(old, "begin_index", None) is not None and hasattr(new, "set_begin_index"):
            new.set_begin_index(old.begin_index)
        same = torch.equal(new.timesteps.cpu(), old.timesteps.cpu()) and (
            not hasattr(old, "sigmas") or torch.equal(torch.as_tensor(new.sigmas).cpu(), torch.as_tensor(old.sigmas).cpu()))
        if not same:
            raise NotImplementedError(
                f"retaking a step on {name} rebuilds it from its config, which gives another schedule than this "
                f"run's (custom timesteps or sigmas); use time_travel=0 / n_recur=1 with this schedule")
        throwaway = torch.Generator(device=self.xs.device).manual_seed(0)
        kwargs = ctx.step_kwargs(throwaway)
        for out, t_in, sample in self.history:
            new.step(out, t_in, sample, **kwargs)
        return new

    def step(self, x0, eps, t, noise, eta) -> torch.Tensor:
        """x_{t−1} from (x̂0, ε̂) at the current timestep by the scheduler's `step` (see the class docstring)."""
        ctx, name = self.ctx, type(self.live).__name__
        if self.t is None or int(t) != self.t:
            if ctx.flow:  # a chain of the method's own: the flow ODE's Euler step (η = 0 unless asked)
                return ctx.ddim_formula(x0, eps, t, noise, 0.0 if eta is None else eta)
            raise NotImplementedError(
                f"this guidance steps its own chain of timesteps (t={int(t)}), which needs DDIMScheduler; "
                f"the pipeline's scheduler is {name}")
        rec = self.rec
        same_eps = rec is not None and (eps is rec[2] or (eps.shape == rec[2].shape and torch.equal(eps, rec[2])))
        if same_eps:
            x_t = rec[0]
            exact = not ctx.mg_scale and torch.equal(x0, ctx.x0(x_t, eps, t))
        else:
            a = ctx.alpha_bar(t)
            x_t, exact = a.sqrt() * x0 + (1 - a).sqrt() * eps, False
        if exact:
            out = rec[1]
        elif ctx.flow:
            out = Prediction.flow_output(ctx.to_sched(x_t, t), x0, ctx.schedule.ab(t)[1]).to(self.xs.dtype)
        else:
            out = ctx.prediction.output(x_t, x0, ctx.alpha_bar(t)).to(self.xs.dtype)
        if self.taken is not None:  # retaking the step (time travel, recurrences): from the state before it
            self.live = self.fresh()
        same_x = x_t is self.x or torch.equal(x_t, self.x)
        xs_t = self.xs if same_x else (x_t / self.c_in()).to(self.xs.dtype)
        t_in = ctx.t_exact.get(int(t), t)
        xs_prev = self.live.step(out, t_in, xs_t, **ctx.step_kwargs()).prev_sample
        self.taken = (out.detach(), t_in, xs_t.detach()) if self.keep_history else ()
        if noise is not None or (eta is not None and eta != ctx.eta):
            x_prev = ctx.ddim_formula(x0, eps, t, noise, eta)  # the scheduler only advanced
            xs_prev = (x_prev / self.c_in()).to(xs_prev.dtype)
        else:
            x_prev = xs_prev * self.c_in() if (ctx.sigma_space or ctx.flow) else xs_prev
        self.stepped = (x_prev, xs_prev)
        return x_prev


class Denoiser:
    """One generation's state and the interface guidance methods see (docs/denoiser.md).

    Latents as methods see them: x_t = a_t·x0 + b_t·ε in variance-preserving form (`level(t)` = (a_t, b_t)).
    The model wrapper: `eps(x, t)` (CFG, HARIVO MG) and `x0(x, ε̂, t)` give ε̂ and x̂0 whatever the model predicts
    (`Prediction`); `predict(x, t)` gives both. The step: `ddim(x̂0, ε̂, t)` (the η-DDIM formula, or the scheduler's
    own `step`: `SchedulerStep`), `prev_t(t)` where it lands, `renoise` one step back. Reading the result:
    `decode`, `reward`, `objective`. The schedule itself is `schedule` (a `NoiseSchedule`).
    """

    def __init__(
        self,
        pipe,
        prompt_embeds: torch.Tensor,  # (b*f, L, D) conditional, already repeated per frame
        negative_embeds: Optional[torch.Tensor],  # same, or None when CFG is off
        num_frames: int,
        guidance_scale: float,
        eta: float,
        generator,
        timesteps: torch.Tensor,
        mg_scale: float = 0.0,
        cfg_schedule: Optional[str] = None,
        reward=None,
        decode_chunk_size: int = 16,
        cross_attention_kwargs: Optional[dict] = None,
        lean_decode: Optional[bool] = None,
        image_embeds: Optional[list] = None,
    ):
        self.pipe = pipe
        self.unet = self.denoiser_model(pipe)
        self.vae = pipe.vae
        self.scheduler = pipe.scheduler
        self.cond = prompt_embeds
        self.uncond = negative_embeds
        self.num_frames = num_frames
        self.guidance_scale = guidance_scale
        self.eta = eta
        self.generator = generator
        self.timesteps = [int(t) for t in timesteps]
        # the scheduler's own timestep values (Euler-type schedules have fractional ones), for the UNet and `step`
        self.t_exact = {int(t): t for t in timesteps}
        self.mg_scale = mg_scale
        self.cfg_schedule = cfg_schedule
        self.reward_fn = reward
        self.decode_chunk_size = decode_chunk_size
        self.lean_decode = lean_decode  # None: by frame size (lean_decode_on)
        self.cross_attention_kwargs = cross_attention_kwargs
        self.device = prompt_embeds.device
        self.dtype = prompt_embeds.dtype
        self.schedule = NoiseSchedule(self.scheduler, self.timesteps, self.device)
        #: flow matching (module docstring): velocity prediction, latents (1 − σ)·x0 + σ·ε
        self.flow = self.schedule.kind == "flow"
        self.sigma_space = self.schedule.kind == "sigma"  # Euler-type: x = x0 + σ ε, model input x / √(σ²+1)
        self.native_ddim = self.schedule.native_ddim
        self.num_train = self.schedule.num_train
        self.prediction_type = "flow" if self.flow else self.scheduler.config.prediction_type
        self.prediction = Prediction(self.prediction_type)
        self.stepper = SchedulerStep(self)
        self._x0_rec = None  # (x, ε̂, x̂0, t) of the last flow model call: x̂0 from v̂ (exact where a_t = 0)
        # IP-Adapter image embeddings (the UNet's added_cond_kwargs): per adapter (cond, uncond or None)
        self.image_embeds = None
        if image_embeds is not None:
            self.image_embeds = [(e.chunk(2)[1], e.chunk(2)[0]) if negative_embeds is not None else (e, None)
                                 for e in image_embeds]
        self.stats: dict = {}
        self.last_x0: Optional[torch.Tensor] = None
        #: frames the step hooks overwrite after every step (interpolation's latent replacement): set by `sample`
        self.fixed_frames: list[int] = []
        # A generator for the guidance methods' own randomness (random guesses, candidate noise, subsets), kept
        # apart from the sampling noise so that turning a knob does not reshuffle the sampler's noise stream.
        # Derived from the seed without drawing from `generator` (drawing would shift diffusers' noise stream).
        gen0 = generator[0] if isinstance(generator, (list, tuple)) else generator
        seed = (int(gen0.initial_seed()) + 1_000_003) % (2**63 - 1) if gen0 is not None else 1_000_003
        self.aux_generator = torch.Generator(device="cpu").manual_seed(seed)

    @staticmethod
    def denoiser_model(pipe):
        """The network that predicts the noise (the UNet here; a backbone's subclass returns its own)."""
        return pipe.unet

    # --- schedule -------------------------------------------------------------------------------------
    def prev_t(self, t: int) -> int:
        """The timestep the step from `t` lands on (`NoiseSchedule.prev`)."""
        return self.schedule.prev(t)

    def alpha_bar(self, t: int) -> torch.Tensor:
        """ᾱ_t of the latents methods see (`NoiseSchedule.alpha_bar`)."""
        return self.schedule.alpha_bar(t)

    def level(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, b_t) = (√ᾱ_t, √(1−ᾱ_t)) of the latents methods see; at t−1, b is the noise left after the step."""
        return self.schedule.level(t)

    def to_sched(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Latents as methods see them → the scheduler's (and the model's, on flow) at t; the loop's own latents at
        its current step are returned as they are (bit for bit)."""
        if not (self.flow or self.sigma_space):
            return x
        if self.stepper.x is not None and x is self.stepper.x:
            return self.stepper.xs
        return x / self.schedule.vp_scale(t)

    def cfg_scale(self, t: int) -> float:
        if self.cfg_schedule == "harivo" and int(t) > 0.7 * self.num_train:
            return max(self.guidance_scale, HARIVO_CFG_HIGH)
        return self.guidance_scale

    @property
    def do_cfg(self) -> bool:
        return self.uncond is not None

    # --- model ----------------------------------------------------------------------------------------
    def model_output(self, x: torch.Tensor, t: int, cfg: bool = True):
        """Raw model output at (x, t): returns (combined, cond, uncond) with CFG, or (cond, cond, None)."""
        # Embeddings hold one block of `num_frames` rows per video; a single video's block is repeated for a
        # batch of candidates (Free²Guide's lookahead), several prompts' blocks are used as they are.
        rep = 1 if self.cond.shape[0] == x.shape[0] * self.num_frames else x.shape[0]
        use_cfg = cfg and self.do_cfg
        if use_cfg:
            embeds = torch.cat([self.uncond.repeat(rep, 1, 1), self.cond.repeat(rep, 1, 1)])
            inp = torch.cat([x, x])
        else:
            embeds = self.cond.repeat(rep, 1, 1)
            inp = x
        if not self.sigma_space:  # identity for DDIM, DPM-Solver, UniPC, PNDM, LCM; σ-space inputs arrive scaled
            inp = self.scheduler.scale_model_input(inp, t)
        t_in = t if self.native_ddim else self.t_exact.get(int(t), t)
        added = None
        if self.image_embeds is not None:
            def r(e):  # one block per video; FaceID embeddings have 4 dims
                return e.repeat(rep, *([1] * (e.dim() - 1)))

            added = {"image_embeds": [torch.cat([r(u), r(c)]) if use_cfg else r(c) for c, u in self.image_embeds]}
        out = self.unet(
            inp.to(self.dtype), t_in, encoder_hidden_states=embeds, cross_attention_kwargs=self.cross_attention_kwargs,
            added_cond_kwargs=added,
        ).sample
        if not use_cfg:
            return out, out, None
        uncond, cond = out.chunk(2)
        return uncond + self.cfg_scale(t) * (cond - uncond), cond, uncond

    def eps(self, x: torch.Tensor, t: int, cfg: bool = True, return_parts: bool = False):
        """ε̂ at (x, t), whatever the model predicts (`Prediction`): CFG (with the optional HARIVO schedule), then
        HARIVO MG when mg_scale > 0 (on flow, on x̂0: the pair stays consistent)."""
        out, cond, uncond = self.model_output(x, t, cfg)
        a = self.alpha_bar(t)
        if self.flow:
            xs, sigma = self.to_sched(x, t), self.schedule.ab(t)[1]
            eps, x0 = Prediction.flow_split(out, xs, sigma)
            if self.mg_scale and float(a) > 0:  # MG on x̂0 (off where a_t = 0: x̂0 has no noise-free part yet),
                # each frame pulled at most all the way to its neighbour (`mitigating_gradient`'s max_pull)
                eps = mitigating_gradient(eps, x, a, self.mg_scale, max_pull=1.0)
                x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            self._x0_rec = (x, eps, x0, int(t))

            def split(o):
                return Prediction.flow_split(o, xs, sigma)[0]
        else:
            eps = self.prediction.eps(out, x, a)
            if self.mg_scale:
                eps = mitigating_gradient(eps, x, a, self.mg_scale)

            def split(o):
                return self.prediction.eps(o, x, a)
        st = self.stepper
        if (not self.native_ddim and st.t is not None and int(t) == st.t and cfg and x.shape == st.x.shape):
            st.rec = (x.detach(), out.detach(), eps.detach())
        if return_parts:
            return eps, (split(cond), None if uncond is None else split(uncond))
        return eps

    def x0(self, x: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """x̂0 = (x_t − b_t ε̂) / a_t (Tweedie; on flow the model call's own x − σ·v̂, exact where a_t = 0)."""
        rec = self._x0_rec
        if (self.flow and rec is not None and eps is rec[1] and int(t) == rec[3]
                and (x is rec[0] or (x.shape == rec[0].shape and torch.equal(x, rec[0])))):
            return rec[2]  # x̂0 = x − σ·v̂ from the model call that gave this ε̂
        a = self.alpha_bar(t)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        if self.scheduler.config.get("clip_sample", False):
            r = self.scheduler.config.clip_sample_range
            x0 = x0.clamp(-r, r)
        return x0

    def predict(self, x: torch.Tensor, t: int, cfg: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂0, ε̂) at (x, t): the model wrapper in one call."""
        eps = self.eps(x, t, cfg)
        return self.x0(x, eps, t), eps

    def note_x0(self, x0: torch.Tensor) -> torch.Tensor:
        """Record this step's x̂0 for the preview (methods call it on the estimate of the state they step from)."""
        self.last_x0 = x0.detach()
        return x0

    # --- the step -------------------------------------------------------------------------------------
    def sigma(self, t: int, eta: Optional[float] = None) -> torch.Tensor:
        """σ_t of the η-DDIM step: the fresh noise a stochastic step adds (≤ the noise left, √(1−ᾱ_{t−1}))."""
        eta = self.eta if eta is None else eta
        a, ap = self.alpha_bar(t), self.alpha_bar(self.prev_t(t))
        return eta * ((1 - ap) / (1 - a)).sqrt() * (1 - a / ap).sqrt()

    def ddim(
        self,
        x0: torch.Tensor,
        eps: torch.Tensor,
        t: int,
        noise: Optional[torch.Tensor] = None,
        eta: Optional[float] = None,
    ) -> torch.Tensor:
        """x_{t−1} = √ᾱ_{t−1} x̂0 + √(1−ᾱ_{t−1}−σ_t²) ε̂ + σ_t z (noise drawn like diffusers' DDIM when None).

        With a scheduler other than plain DDIM: that scheduler's `step` from (x_t, x̂0) (`SchedulerStep`); an
        explicit `noise` or another `eta` (Free²Guide's candidates) asks for this DDIM formula itself, and the
        scheduler is advanced past the step all the same."""
        if not self.native_ddim:
            return self.stepper.step(x0, eps, t, noise, eta)
        return self.ddim_formula(x0, eps, t, noise, eta)

    def ddim_formula(self, x0, eps, t, noise=None, eta=None) -> torch.Tensor:
        """The η-DDIM update itself, in the latents methods see (on flow with η = 0: the flow ODE's Euler step)."""
        ap = self.alpha_bar(self.prev_t(t))
        sigma = self.sigma(t, eta)
        x_prev = ap.sqrt() * x0 + (1 - ap - sigma**2).clamp(min=0).sqrt() * eps
        if float(sigma) > 0:
            if noise is None:
                noise = randn_tensor(eps.shape, generator=self.generator, device=eps.device, dtype=eps.dtype)
            x_prev = x_prev + sigma * noise
        return x_prev

    def step_kwargs(self, generator=None) -> dict:
        """Extra keyword arguments of `scheduler.step` (the pipeline's `prepare_extra_step_kwargs` where it has one)."""
        prep = getattr(self.pipe, "prepare_extra_step_kwargs", None)
        return prep(self.generator if generator is None else generator, self.eta) if prep is not None else {}

    def renoise(self, x_prev: torch.Tensor, t: int) -> torch.Tensor:
        """One forward step back from t−1 to t: x_t = √(ᾱ_t/ᾱ_{t−1}) x_{t−1} + √(1−ᾱ_t/ᾱ_{t−1}) z (time travel)."""
        a, ap = self.alpha_bar(t), self.alpha_bar(self.prev_t(t))
        z = torch.randn(x_prev.shape, generator=self.aux_generator, dtype=torch.float32).to(x_prev)
        return (a / ap).sqrt() * x_prev + (1 - a / ap).sqrt() * z

    # --- decoder and reward ---------------------------------------------------------------------------
    def lean_decode_on(self, z: torch.Tensor) -> bool:
        """Decode lean (see `decode`): `lean_decode` when set, else `GVS_LEAN_DECODE=0|1` when set (benchmarks), else
        when the decoded frames are ≥ 256² pixels."""
        if self.lean_decode is not None:
            return bool(self.lean_decode)
        env = os.environ.get("GVS_LEAN_DECODE", "").strip()
        if env in ("0", "1"):
            return env == "1"
        factor = int(getattr(self.pipe, "vae_scale_factor", 8))
        return z.shape[-2] * z.shape[-1] * factor * factor >= LEAN_DECODE_PIXELS

    def decode(self, z0: torch.Tensor, frames: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Differentiable decode of latents (1, c, f, h, w) → frames (f', 3, H, W), ≈[0, 1], unclamped.

        Lean at real sizes (`lean_decode_on`): `LEAN_DECODE_FRAMES` frames at a time, which bounds the forward-mode
        (jvp) decode's primal + tangent activations; and when the decode is differentiated in reverse mode (the
        direct guess, FreeDoM, MPGD, TFG, DOODL), every chunk is checkpointed with the decoder's blocks checkpointed
        inside it, so the backward keeps one block of one chunk alive instead of every activation of every frame
        (SD's decoder at 512², 2 frames: 11.6 → 3.5 GiB on a CPU, `bench/RESULTS.md`), for one more decoder
        forward. The values and gradients are those of the plain decode."""
        if z0.shape[0] != 1:
            raise ValueError("guided decoding works on one video at a time")
        z = z0[0].transpose(0, 1)  # (f, c, h, w)
        if frames is not None:
            z = z[list(frames)]
        z = z / self.vae.config.scaling_factor
        chunk, reverse = self.decode_chunk_size, False
        if self.lean_decode_on(z):
            chunk = min(chunk, LEAN_DECODE_FRAMES)
            reverse = torch.is_grad_enabled() and z.requires_grad
        outs = []
        for i in range(0, z.shape[0], chunk):
            piece = z[i : i + chunk].to(self.vae.dtype)
            if reverse:
                outs.append(torch.utils.checkpoint.checkpoint(_decode_blockwise, self.vae, piece, use_reentrant=False))
            else:
                outs.append(self.vae.decode(piece).sample)
        return torch.cat(outs).float() / 2 + 0.5

    def reward(self, frames: torch.Tensor, frame_indices: Optional[Sequence[int]] = None) -> torch.Tensor:
        if self.reward_fn is None:
            raise ValueError("this guidance method needs a reward")
        return self.reward_fn(frames, frame_indices=frame_indices, num_frames=self.num_frames)

    def objective(self, z0: torch.Tensor, frames: Optional[Sequence[int]] = None) -> torch.Tensor:
        """J = Σ_k R_k(D(x̂0)) over the decoded frames."""
        return self.reward(self.decode(z0, frames), frames).sum()

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.aux_generator, dtype=torch.float32).to(x)


def sample(
    ctx: Denoiser,
    latents: torch.Tensor,
    guidance: Optional[Guidance] = None,
    hooks: Sequence[StepHook] = (),
    preview_every: int = 1,
    track_reward: bool = True,
    should_stop: Optional[Callable[[], bool]] = None,
    on_finish: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    preview_mode: str = "decode",
    decode_every: int = 0,
    latent_rgb=None,
    preview_size: Optional[tuple[int, int]] = None,
    on_step_end: Optional[Callable[[int, int, torch.Tensor], torch.Tensor]] = None,
    final: bool = True,
    phase: str = "sample",
) -> Iterator[StepEvent]:
    """The loop. Yields a StepEvent per step; the last event is `final` and carries `frames`.

    Previews (every `preview_every` steps and at the last step): `preview_mode="decode"` decodes the step's x̂0
    through the VAE; `"fast"` maps its latents to RGB with `latent_rgb` (a `pipelines.preview.LatentRGB`; no VAE),
    with a full decode every `decode_every` steps (0: never). A tracked reward is computed on the decoded frames;
    with fast previews only the frames the reward needs are decoded (its required frames, else 4 key frames).
    `on_step_end(i, t, latents) -> latents` runs after each step on the latents in the scheduler's space (diffusers'
    `callback_on_step_end`). With `final=False` (FreeInit's earlier passes) no video is decoded and no final event is
    yielded: the last latents are left in `ctx.final_latents`; step events carry `phase`.
    """
    if preview_mode not in ("decode", "fast"):
        raise ValueError(f"preview_mode must be 'decode' or 'fast' here, got {preview_mode!r}")
    if preview_mode == "fast" and latent_rgb is None:
        raise ValueError("preview_mode='fast' needs a latent→RGB map")
    guidance = guidance or Guidance()
    total = len(ctx.timesteps)
    mem = PeakMemory(ctx.device)
    mem.reset()
    t0 = time.perf_counter()

    def check_stop():
        if should_stop is not None and should_stop():
            raise Cancelled("generation cancelled")

    ctx.stepper.keep_history = bool(getattr(guidance, "retakes_step", False))  # for `SchedulerStep.fresh`
    ctx.fixed_frames = sorted({int(k) for hook in hooks for k in hook.fixed_frames(int(latents.shape[2]))})
    guidance.start(ctx)
    for hook in hooks:
        hook.start(ctx)

    init = guidance.initial_latents(ctx, latents)
    if hasattr(init, "__next__"):  # a generator: DOODL's optimisation of x_T, with progress
        while True:
            check_stop()
            try:
                info = next(init)
            except StopIteration as stop:
                latents = stop.value
                break
            yield StepEvent(
                index=info.get("iteration", 0), total=info.get("iterations", 0), timestep=int(ctx.timesteps[0]),
                preview=info.get("preview"), reward=info.get("reward"), rewards=dict(info),
                seconds=time.perf_counter() - t0, peak_memory_bytes=mem.peak(), phase="optimize",
            )
    else:
        latents = init

    xs = latents  # the scheduler's latents; `x` is what methods and hooks see (the same for DDIM)
    for i, t in enumerate(ctx.timesteps):
        check_stop()
        if getattr(ctx.pipe, "_interrupt", False):  # diffusers' `pipe._interrupt`: skip the remaining steps
            continue
        ctx.stats = {}
        ctx.last_x0 = None
        x = xs if ctx.native_ddim else ctx.stepper.begin(t, xs)
        x = guidance.step(ctx, x, t, i).detach()
        t_prev = ctx.prev_t(t)
        for hook in hooks:
            x = hook.after_step(ctx, x, t_prev, i)
        xs = x if ctx.native_ddim else ctx.stepper.end(x)
        if on_step_end is not None:
            xs = on_step_end(i, ctx.t_exact.get(int(t), t), xs)
        preview = reward = None
        want_preview = preview_every > 0 and (i % preview_every == 0 or i == total - 1)
        if want_preview and x.shape[0] == 1:
            with torch.no_grad():
                # The step's own x̂0 (recorded by the method through ctx.note_x0) is the model's current idea
                # of the video; no extra network pass is spent on previews.
                x0 = ctx.last_x0 if ctx.last_x0 is not None else x
                full = preview_mode == "decode" or (decode_every > 0 and i % decode_every == 0)
                if full:
                    frames = ctx.decode(x0)
                    preview_frames = frames.clamp(0, 1).cpu()
                    if track_reward and ctx.reward_fn is not None:
                        reward = float(ctx.reward(frames.clamp(0, 1)).float().mean())
                else:
                    preview_frames = latent_rgb(x0, out_size=preview_size).cpu()
                    if track_reward and ctx.reward_fn is not None:
                        keys = reward_frames(ctx.reward_fn, ctx.num_frames)
                        reward = float(ctx.reward(ctx.decode(x0, keys).clamp(0, 1), keys).float().mean())
                preview = preview_frames
        yield StepEvent(
            index=i, total=total, timestep=int(t), preview=preview, reward=reward, rewards=dict(ctx.stats),
            seconds=time.perf_counter() - t0, peak_memory_bytes=mem.peak(), phase=phase,
        )
    check_stop()
    ctx.final_latents = xs
    if not final:
        return
    # `on_finish` decodes the final latents to frames (b, f, 3, H, W) in [0, 1] (None from output_type="latent").
    video = on_finish(xs) if on_finish is not None else xs
    if video is None:
        yield StepEvent(index=total, total=total, timestep=-1, preview=None, reward=None, rewards={},
                        seconds=time.perf_counter() - t0, peak_memory_bytes=mem.peak(), final=True, frames=None)
        return
    final_reward = None
    if ctx.reward_fn is not None and video.ndim == 5 and video.shape[0] == 1 and on_finish is not None:
        with torch.no_grad():
            final_reward = float(ctx.reward(video[0].float()).float().mean())
    yield StepEvent(
        index=total, total=total, timestep=-1, preview=None, reward=final_reward, rewards={},
        seconds=time.perf_counter() - t0, peak_memory_bytes=mem.peak(), final=True,
        frames=video[0] if video.shape[0] == 1 else video,
    )
