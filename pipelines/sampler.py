"""One guided DDIM loop over the parts of an AnimateDiff pipeline.

`Denoiser` holds one generation's state (prompt embeddings, CFG, schedule, MG, reward) and gives guidance methods
the formulas of METHODS.md as small functions: `eps` (CFG noise prediction, HARIVO MG applied), `x0` (Tweedie),
`ddim` (the η-DDIM update), `decode` (differentiable per-frame VAE decode to [0, 1]) and `reward`.
`sample` is the loop: it yields one `StepEvent` per step and a final event carrying the video.

Schedulers. With diffusers' `DDIMScheduler` (no thresholding: every preset's) `ddim` is the η-DDIM formula itself,
as it always was. With any other scheduler that has `alphas_cumprod` (Euler, Euler ancestral, DPM-Solver(++), UniPC,
PNDM, LCM, DDIM with thresholding, ...) `ddim(x̂0, ε̂, t)` is that scheduler's own `step`, fed the model output that
implies (x_t, x̂0) (the raw output itself when the method changed nothing, so an unguided run is the parent
pipeline's, bit for bit): guidance acts on ε̂, x̂0 or x_{t−1} and the scheduler does the rest. Methods always see
variance-preserving latents x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε; for σ-space schedulers (Euler-type, whose latents are
x0 + σ ε) the loop converts at each step (`begin_step` / `end_step`). A step can be taken only at the loop's own
timestep (it may be retaken: the scheduler's state is restored first); a method that steps a chain of its own
(DOODL, TITAN with depth > 0) needs `DDIMScheduler` and is refused with another VP scheduler (`needs_ddim`).

Flow matching (`FlowMatchEulerDiscreteScheduler`, `UniPCMultistepScheduler(use_flow_sigmas=True,
prediction_type="flow_prediction")`, any scheduler `is_flow_scheduler` names). The scheduler's latents are
x_t = a_t·x0 + b_t·ε with (a_t, b_t) = (1 − σ_t, σ_t) (`ab(t)`); the model predicts the velocity v̂ and the
denoiser returns x̂0 = x − σ·v̂ and ε̂ = x + (1 − σ)·v̂ (`eps`, `x0`; at σ = 1, where a_t = 0, x̂0 comes from v̂
directly, never from dividing by a_t). Methods see the same latents scaled to variance-preserving form,
x_t / √(a_t² + b_t²), with ᾱ_t = a_t² / (a_t² + b_t²): x̂0 and ε̂ are unchanged by that scaling, and so is every
ratio of a step to the noise left after it (the trust region, `base.bound_shift`), so every method written for
√ᾱ, √(1−ᾱ) runs on flow unchanged. The loop's step is the scheduler's own `step`, fed the velocity implied by the
method's x̂0, v = (x_t − x̂0) / σ_t. A chain a method runs on its own (TITAN's depth, DOODL) steps with the η = 0
DDIM formula, which on flow is exactly the Euler step of the flow ODE, x' = (1 − σ')·x̂0 + σ'·ε̂
(FlowMatchEulerDiscreteScheduler's own step; for UniPC an Euler approximation of its multistep update). With η > 0
the same formula in the variance-preserving coordinates is the flow's stochastic step (Free²Guide's candidates):
x' = a'·x̂0 + √(b'² − s²)·ε̂ + s·ξ, s = η·√(a'² + b'²)·√((1−ᾱ')/(1−ᾱ))·√(1 − ᾱ/ᾱ'), which keeps the marginals of
x_t' = a'·x0 + b'·ε.
"""
from __future__ import annotations

import copy
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


class Denoiser:
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
        #: flow matching (module docstring): velocity prediction, latents (1 − σ)·x0 + σ·ε
        self.flow = is_flow_scheduler(self.scheduler)
        if not self.flow:
            self.alphas = self.scheduler.alphas_cumprod.to(self.device, torch.float32)
        # DDIM/PNDM step to final_alpha_cumprod at the end; the others (DPM-Solver, Euler, UniPC, LCM, flow) to ᾱ = 1
        self.final_alpha = torch.as_tensor(float(getattr(self.scheduler, "final_alpha_cumprod", 1.0)),
                                           device=self.device, dtype=torch.float32)
        if self.flow:
            self.final_alpha = self._flow_abar(float(self.scheduler.sigmas[-1]))
        self._x0_rec = None  # (x, ε̂, x̂0, t) of the last flow model call: x̂0 from v̂ (exact where a_t = 0)
        # IP-Adapter image embeddings (the UNet's added_cond_kwargs): per adapter (cond, uncond or None)
        self.image_embeds = None
        if image_embeds is not None:
            self.image_embeds = [(e.chunk(2)[1], e.chunk(2)[0]) if negative_embeds is not None else (e, None)
                                 for e in image_embeds]
        self._init_scheduler_path()
        self.num_train = self.scheduler.config.num_train_timesteps
        self.prediction_type = "flow" if self.flow else self.scheduler.config.prediction_type
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
    def _flow_abar(self, sigma: float) -> torch.Tensor:
        a, b = 1.0 - sigma, sigma
        return torch.as_tensor(a * a / (a * a + b * b), device=self.device, dtype=torch.float32)

    def _init_scheduler_path(self) -> None:
        sch = self.scheduler
        #: the η-DDIM formula is the scheduler's step (DDIMScheduler without thresholding); else `scheduler.step`
        self.native_ddim = (not self.flow and isinstance(sch, DDIMScheduler)
                            and not sch.config.get("thresholding", False))
        #: σ-space latents (Euler-type: x = x0 + σ ε, model input x / √(σ²+1))
        self.sigma_space = (not self.flow and not self.native_ddim and hasattr(sch, "sigmas")
                            and float(getattr(sch, "init_noise_sigma", 1.0)) != 1.0)
        self._abar: dict[int, torch.Tensor] = {}
        self._sigma: dict[int, float] = {}  # flow: σ at each listed timestep
        if self.sigma_space:
            sig = sch.sigmas.to(self.device, torch.float32)
            for k, t in enumerate(self.timesteps):
                self._abar.setdefault(t, 1.0 / (1.0 + sig[k] ** 2))
        if self.flow:
            sig = sch.sigmas.to(torch.float64)
            for k, t in enumerate(self.timesteps):
                self._sigma.setdefault(t, float(sig[k]))
                self._abar.setdefault(t, self._flow_abar(float(sig[k])))
        self._next_t = {t: (self.timesteps[k + 1] if k + 1 < len(self.timesteps) else -1)
                        for k, t in reversed(list(enumerate(self.timesteps)))}
        self._cur_t = None  # the loop's current timestep (set by begin_step)
        self._cur_x = self._cur_xs = None  # its latents: as methods see them, and in the scheduler's space
        self._rec = None  # (x_t, raw model output, ε̂) of the last model call at the current timestep
        self._snapshot = None  # the scheduler's state before this step's first `step`
        self._stepped = None  # (x_{t−1} as returned to the method, the same in the scheduler's space)

    def prev_t(self, t: int) -> int:
        """The timestep the step from `t` lands on. DDIM: diffusers' DDIMScheduler.step rule, `t − T // N`, for every
        timestep spacing. With "linspace" (the animatediff preset) this is not the next listed timestep
        (25 steps: 999 → 959, while the list goes 999, 957, ...); the UNet still runs at the listed ones.
        Other schedulers: the next listed timestep (−1 after the last)."""
        if not self.native_ddim and int(t) in self._next_t:
            return self._next_t[int(t)]
        return int(t) - self.num_train // max(1, len(self.timesteps))

    def ab(self, t: int) -> tuple[float, float]:
        """(a_t, b_t) of the scheduler's own latents x_t = a_t·x0 + b_t·ε: VP (√ᾱ, √(1−ᾱ)), Euler-type (1, σ),
        flow (1 − σ, σ); after the last step (t < 0) the end of the schedule."""
        if self.flow:
            s = self._sigma.get(int(t), float(self.scheduler.sigmas[-1])) if int(t) >= 0 else float(
                self.scheduler.sigmas[-1])
            return 1.0 - s, s
        if self.sigma_space and int(t) in self._abar:
            a = float(self._abar[int(t)])
            return 1.0, ((1 - a) / a) ** 0.5
        a = float(self.alpha_bar(t))
        return a**0.5, (1 - a) ** 0.5

    def vp_scale(self, t: int) -> float:
        """x_vp / x_scheduler at timestep t: 1/√(a_t² + b_t²) (1 for variance-preserving schedulers)."""
        if not (self.flow or self.sigma_space):
            return 1.0
        a, b = self.ab(t)
        return (a * a + b * b) ** -0.5

    def to_sched(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Latents as methods see them (variance-preserving) → the scheduler's (and the model's, on flow) at t;
        the loop's own latents at its current step are returned as they are (bit for bit)."""
        if not (self.flow or self.sigma_space):
            return x
        if self._cur_x is not None and x is self._cur_x:
            return self._cur_xs
        return x / self.vp_scale(t)

    def alpha_bar(self, t: int) -> torch.Tensor:
        if int(t) < 0:
            return self.final_alpha
        if self._abar and int(t) in self._abar:
            return self._abar[int(t)]
        return self.alphas[int(t)]

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
        """ε̂ at (x, t): CFG (with the optional HARIVO schedule), then HARIVO MG when mg_scale > 0."""
        if self.flow:
            return self._flow_eps(x, t, cfg, return_parts)
        out, cond, uncond = self.model_output(x, t, cfg)
        eps = self._to_eps(out, x, t)
        if self.mg_scale:
            eps = mitigating_gradient(eps, x, self.alpha_bar(t), self.mg_scale)
        if (not self.native_ddim and self._cur_t is not None and int(t) == self._cur_t and cfg
                and x.shape == self._cur_x.shape):
            self._rec = (x.detach(), out.detach(), eps.detach())
        if return_parts:
            parts = (self._to_eps(cond, x, t), None if uncond is None else self._to_eps(uncond, x, t))
            return eps, parts
        return eps

    def _flow_split(self, v: torch.Tensor, xs: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity v̂ at the scheduler's latents xs → (ε̂, x̂0) = (xs + (1 − σ)·v̂, xs − σ·v̂)."""
        a, s = self.ab(t)
        return xs + a * v, xs - s * v

    def _flow_eps(self, x: torch.Tensor, t: int, cfg: bool, return_parts: bool):
        out, cond, uncond = self.model_output(x, t, cfg)
        xs = self.to_sched(x, t)
        eps, x0 = self._flow_split(out, xs, t)
        a = self.alpha_bar(t)
        if self.mg_scale and float(a) > 0:  # HARIVO MG on x̂0 (off where a_t = 0: x̂0 has no noise-free part yet),
            # each frame pulled at most all the way to its neighbour (`mitigating_gradient`'s max_pull)
            eps = mitigating_gradient(eps, x, a, self.mg_scale, max_pull=1.0)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        self._x0_rec = (x, eps, x0, int(t))
        if self._cur_t is not None and int(t) == self._cur_t and cfg and x.shape == self._cur_x.shape:
            self._rec = (x.detach(), out.detach(), eps.detach())
        if return_parts:
            parts = (self._flow_split(cond, xs, t)[0], None if uncond is None else self._flow_split(uncond, xs, t)[0])
            return eps, parts
        return eps

    def _to_eps(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        a = self.alpha_bar(t)
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return a.sqrt() * out + (1 - a).sqrt() * x
        if self.prediction_type == "sample":
            return (x - a.sqrt() * out) / (1 - a).sqrt()
        raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")

    def x0(self, x: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """Tweedie: x̂0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t (ε̂ already converted from v or x0 predictions)."""
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

    def note_x0(self, x0: torch.Tensor) -> torch.Tensor:
        """Record this step's x̂0 for the preview (methods call it on the estimate of the state they step from)."""
        self.last_x0 = x0.detach()
        return x0

    def sigma(self, t: int, eta: Optional[float] = None) -> torch.Tensor:
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

        With a scheduler other than plain DDIM: that scheduler's `step` from (x_t, x̂0) (module docstring); an
        explicit `noise` or another `eta` (Free²Guide's candidates) asks for this DDIM formula itself, and the
        scheduler is advanced past the step all the same."""
        if not self.native_ddim:
            return self._scheduler_step(x0, eps, t, noise, eta)
        return self._ddim_formula(x0, eps, t, noise, eta)

    def _ddim_formula(self, x0, eps, t, noise=None, eta=None) -> torch.Tensor:
        ap = self.alpha_bar(self.prev_t(t))
        sigma = self.sigma(t, eta)
        x_prev = ap.sqrt() * x0 + (1 - ap - sigma**2).clamp(min=0).sqrt() * eps
        if float(sigma) > 0:
            if noise is None:
                noise = randn_tensor(eps.shape, generator=self.generator, device=eps.device, dtype=eps.dtype)
            x_prev = x_prev + sigma * noise
        return x_prev

    # --- any scheduler ----------------------------------------------------------------------------------
    def _c_in(self) -> float:
        """x_vp / x_sched at the scheduler's current step index (1 for variance-preserving schedulers)."""
        if self.flow:
            idx = self.scheduler.step_index or 0
            s = float(self.scheduler.sigmas[min(idx, len(self.scheduler.sigmas) - 1)])
            return ((1 - s) ** 2 + s * s) ** -0.5
        if not self.sigma_space:
            return 1.0
        idx = self.scheduler.step_index or 0
        sigma = self.scheduler.sigmas[min(idx, len(self.scheduler.sigmas) - 1)].to(torch.float32)
        return (sigma**2 + 1) ** -0.5

    def begin_step(self, t: int, xs: torch.Tensor) -> torch.Tensor:
        """The loop's latents at the start of a step → what methods see (variance-preserving x_t)."""
        if self.native_ddim:
            return xs
        self._cur_t, self._cur_xs, self._rec, self._snapshot, self._stepped = int(t), xs, None, None, None
        if self.flow:
            x = xs * self.vp_scale(t)
        else:
            x = self.scheduler.scale_model_input(xs, self.t_exact.get(int(t), t)) if self.sigma_space else xs
        self._cur_x = x
        return x

    def end_step(self, x_prev: torch.Tensor) -> torch.Tensor:
        """A method's x_{t−1} → the loop's latents in the scheduler's space (exactly `step`'s when unchanged)."""
        if self.native_ddim:
            return x_prev
        if self._stepped is None:
            raise RuntimeError("the guidance method returned without stepping the scheduler (ctx.ddim)")
        vp, xs = self._stepped
        self._cur_t = None
        if x_prev is vp or (x_prev.shape == vp.shape and torch.equal(x_prev, vp)):
            return xs
        return (x_prev / self._c_in()).to(xs.dtype)

    def _implied_output(self, x_t, x0, t) -> torch.Tensor:
        """The model output (in the scheduler's prediction type) whose Tweedie estimate at (x_t, t) is x0."""
        a = self.alpha_bar(t)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "v_prediction":
            return a.sqrt() * eps - (1 - a).sqrt() * x0
        if self.prediction_type == "sample":
            return x0
        raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")

    def step_kwargs(self) -> dict:
        """Extra keyword arguments of `scheduler.step` (the pipeline's `prepare_extra_step_kwargs` where it has one)."""
        prep = getattr(self.pipe, "prepare_extra_step_kwargs", None)
        return prep(self.generator, self.eta) if prep is not None else {}

    def _scheduler_step(self, x0, eps, t, noise, eta) -> torch.Tensor:
        name = type(self.scheduler).__name__
        if self.flow and (self._cur_t is None or int(t) != self._cur_t):
            return self._ddim_formula(x0, eps, t, noise, 0.0 if eta is None else eta)  # a chain of the method's own
        if self._cur_t is None or int(t) != self._cur_t:
            raise NotImplementedError(
                f"this guidance steps its own chain of timesteps (t={int(t)}), which needs DDIMScheduler; "
                f"the pipeline's scheduler is {name}")
        rec = self._rec
        same_eps = rec is not None and (eps is rec[2] or (eps.shape == rec[2].shape and torch.equal(eps, rec[2])))
        if same_eps:
            x_t = rec[0]
            exact = not self.mg_scale and torch.equal(x0, self.x0(x_t, eps, t))
        else:
            a = self.alpha_bar(t)
            x_t, exact = a.sqrt() * x0 + (1 - a).sqrt() * eps, False
        if exact:
            out = rec[1]
        elif self.flow:  # the velocity whose x̂0 at the scheduler's x_t is x0: v = (x_t − x̂0)/σ
            out = ((self.to_sched(x_t, t) - x0) / self.ab(t)[1]).to(self._cur_xs.dtype)
        else:
            out = self._implied_output(x_t, x0, t).to(self._cur_xs.dtype)
        if self._snapshot is None:
            self._snapshot = copy.deepcopy({k: v for k, v in vars(self.scheduler).items() if k != "_internal_dict"})
        else:  # retaking the step (time travel, recurrences): from the state before it
            vars(self.scheduler).update(copy.deepcopy(self._snapshot))
        same_x = x_t is self._cur_x or torch.equal(x_t, self._cur_x)
        xs_t = self._cur_xs if same_x else (x_t / self._c_in()).to(self._cur_xs.dtype)
        kwargs = self.step_kwargs()
        t_in = self.t_exact.get(int(t), t)
        xs_prev = self.scheduler.step(out, t_in, xs_t, **kwargs).prev_sample
        if noise is not None or (eta is not None and eta != self.eta):
            x_prev = self._ddim_formula(x0, eps, t, noise, eta)  # the scheduler only advanced
            xs_prev = (x_prev / self._c_in()).to(xs_prev.dtype)
        else:
            x_prev = xs_prev * self._c_in() if (self.sigma_space or self.flow) else xs_prev
        self._stepped = (x_prev, xs_prev)
        return x_prev

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
        x = ctx.begin_step(t, xs)
        x = guidance.step(ctx, x, t, i).detach()
        t_prev = ctx.prev_t(t)
        for hook in hooks:
            x = hook.after_step(ctx, x, t_prev, i)
        xs = ctx.end_step(x)
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
