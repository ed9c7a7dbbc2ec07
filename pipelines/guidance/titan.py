"""TITAN-Guide: guidance with forward-mode gradients (seed 000; METHODS.md "TITAN-Guide").

Per guided step, after the unguided DDIM step gives x_{t−1}:
    J(x) = Σ_k R_k(D(x̂0_k(x)))          x̂0_k: the estimate after `depth` more deterministic DDIM steps from x
                                         (depth 0: Tweedie at t−1; depth −1: the whole remaining chain to t = 0)
    V    = random N(0, I) | score ε̂ | direct ∇_{x̂0} R(D(x̂0)) on |S| frames, spread over the others by `fill`
    (J, d) = jvp(J, x_{t−1}, V);  ĝ = d · V, averaged over K guesses (V/‖V‖ for score and direct; the random V
                                         unnormalised, so that E[ĝ] = ∇J: the unbiased forward gradient)
    x_{t−1} ← x_{t−1} + B(λ_t u(ĝ))      B: the trust region (`trust`), each frame's shift ≤ trust·b_{t−1} in rms
Update forms u (`update`), measured on the exact micro suites (bench/EVALUATE.md):
    x0     √ᾱ_{t−1} ĝ/rms(ĝ)            a step of λ in x̂0 units (MPGD's profile: small early, large late; default)
    noise  √(1−ᾱ_{t−1}) ĝ/rms(ĝ)       a fraction λ of the noise still left at t−1
    cfg    w·rms(ε_c−ε_u) ĝ/rms(ĝ)       FreeDoM's yardstick: the size of the CFG correction
    rms    ĝ/rms(ĝ)                     the first implementation: λ latent-rms units at every step
    sign   sign(ĝ)                      the public code's effective AdamW step
    raw    ĝ                            magnitude-aware: plain gradient ascent on the jvp's estimate, keeping |d|
No backprop through the UNet, ever: the only reverse-mode pass is decoder + reward on the |S| frames of the direct
guess; the objective, however deep, is differentiated in forward mode, so its memory does not grow with `depth`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import jvp

from .base import MAX_SHIFT, TRUST_HELP, RangedGuidance, bound_shift, param, rms, step_schedule
from .forward_ad import forward_ad_safe

UPDATES = ("noise", "x0", "cfg", "rms", "sign", "raw")


def lerp_frames(g_s: torch.Tensor, frames: list[int], f: int) -> torch.Tensor:
    """Spread (b, c, |S|, h, w) values at sorted frame indices `frames` over f frames: linear in time between
    neighbouring frames of S, copies of the first/last before/after them."""
    out = []
    for k in range(f):
        j = sum(1 for s in frames if s <= k)  # frames[j-1] <= k < frames[j]
        if j == 0:
            out.append(g_s[:, :, 0])
        elif j == len(frames):
            out.append(g_s[:, :, -1])
        else:
            a, b = frames[j - 1], frames[j]
            w = (k - a) / (b - a)
            out.append((1 - w) * g_s[:, :, j - 1] + w * g_s[:, :, j])
    return torch.stack(out, dim=2)


@dataclass
class TitanGuidance(RangedGuidance):
    name: ClassVar[str] = "titan"
    needs_gradient: ClassVar[bool] = True
    summary: ClassVar[str] = "TITAN-Guide: forward-mode (jvp) gradient estimates, no backprop through the UNet."

    guess: str = param("direct", choices=["direct", "random", "score"], help="gradient guess V")
    num_guesses: int = param(1, min=1, max=64, step=1, help="K guesses averaged per refinement")
    subset_frames: int = param(2, min=1, max=64, step=1, help="frames decoded for the direct guess (the sampled subset S)")
    subset: str = param("random", choices=["random", "contiguous"], help="how the direct guess picks its frames")
    fill: str = param("auto", choices=["auto", "pad", "tile", "lerp"],
                      help="direct guess on frames outside S: auto = pad when the reward names the frames it "
                           "scores (key frames, audio), else lerp; pad = zeros (the true gradient restricted to S; when "
                           "a replacement overwrites every frame of S, lerp over the other frames instead), "
                           "tile = copies of S's gradient (the public code), lerp = linear in time between the "
                           "nearest frames of S (copies beyond the first and last)")
    per_frame: bool = param(False, help="one directional derivative per frame (assumes frame-local rewards)")
    update: str = param("x0", choices=list(UPDATES),
                        help="step form: noise = λ√(1−ᾱ) ĝ/rms(ĝ); x0 = λ√ᾱ ĝ/rms(ĝ); cfg = λ·w·rms(ε_c−ε_u) ĝ/rms(ĝ); "
                             "rms = λ ĝ/rms(ĝ); sign = λ sign(ĝ); raw = λ ĝ (keeps the "
                             "jvp's size, in the reward's units)")
    step_size: float = param(5.0, min=0.0, max=50.0, step=0.01, help="λ: step size in the units of `update`")
    schedule: str = param("constant", choices=["constant", "increase", "decrease"], help="λ_t = λ·s_t")
    depth: int = param(0, min=-1, max=1000, step=1,
                       help="objective depth k: DDIM steps run inside the objective before Tweedie "
                            "(0 = Tweedie at t−1; −1 = the whole chain to t = 0)")
    n_iter: int = param(1, min=1, max=10, step=1, help="refinements per guided step")
    objective_cfg: bool = param(False, help="use CFG in the objective's UNet passes (doubles their cost)")
    attention_slices: int = param(
        0, min=0, max=64, step=1,
        help="0: automatic jvp attention (fused jvp-flash kernel on CUDA when installed, else chunked math); "
        "N: sliced attention, N heads at a time",
    )
    trust: float = param(MAX_SHIFT, min=0.0, max=10.0, step=0.05, help=TRUST_HELP)
    time_travel: int = param(0, min=0, max=10, step=1,
                             help="r: re-noise the guided x_{t−1} to t and redo the step r times (FreeDoM's time "
                                  "travel: the model re-denoises what guidance wrote)")
    objective_subset: bool = param(
        False, help="decode only the sampled frames S in J's jvp (the direct guess's; |S|/f of the decoder's cost)"
    )

    # --- the pieces of the formula ----------------------------------------------------------------------
    def chain(self, ctx, t_prev: int) -> list[int]:
        """Timesteps the objective visits: t−1 and the next `depth` ones of the schedule (fewer near the end)."""
        ts = [t_prev]
        k = len(ctx.timesteps) if self.depth < 0 else self.depth
        while len(ts) <= k:
            nxt = ctx.prev_t(ts[-1])
            if nxt < 0:
                break
            ts.append(nxt)
        return ts

    def objective(self, ctx, t_prev: int, frames=None):
        """J(z) = Σ_k R_k(D(x̂0_k(z))_k) over all frames, or over `frames` only (decoding only those)."""
        ts = self.chain(ctx, t_prev)

        def J(z: torch.Tensor) -> torch.Tensor:
            for t in ts[:-1]:  # `depth` deterministic (η = 0) DDIM steps
                eps = ctx.eps(z, t, cfg=self.objective_cfg)
                z = ctx.ddim(ctx.x0(z, eps, t), eps, t, eta=0.0)
            eps = ctx.eps(z, ts[-1], cfg=self.objective_cfg)
            r = ctx.reward(ctx.decode(ctx.x0(z, eps, ts[-1]), frames), frames)  # (f,) or (|S|,)
            return r if self.per_frame else r.sum()

        return J

    def start(self, ctx) -> None:
        super().start(ctx)
        if self.per_frame and getattr(ctx, "whole_video_decode", False):
            raise ValueError(f"titan.per_frame=True needs a VAE that decodes each frame from its own latent frame; "
                             f"{type(ctx.pipe).__name__}'s VAE is causal over the video (use per_frame=False)")

    def direct_guess(self, ctx, x0: torch.Tensor) -> torch.Tensor:
        if getattr(ctx, "whole_video_decode", False):
            # A causal video VAE (Wan) cannot decode a subset of latent frames on its own: the guess is the gradient
            # of the reward of the whole decoded video (decoder only; the transformer stays in forward mode)
            self._frames = None
            with torch.enable_grad():
                y = x0.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(ctx.objective(y), y)
            return g
        f = x0.shape[2]
        frames = self._frames = self.pick_frames(ctx, f)
        with torch.enable_grad():
            sub = x0[:, :, frames].detach().requires_grad_(True)  # (1, c, |S|, h, w): decode only S
            r = ctx.reward(ctx.decode(sub, None), frames).sum()
            (g_s,) = torch.autograd.grad(r, sub)
        fill = self.fill
        if fill == "auto":
            fill = "pad" if self._required(ctx, f) else "lerp"
        fixed = set(getattr(ctx, "fixed_frames", ()) or ())
        if fill == "pad" and fixed and set(frames) <= fixed and len(fixed) < f:
            # Every scored frame is overwritten after the step (interpolation's replacement): a padded guess would
            # move only frames that are then replaced, a silent no-op. Spread S's gradient over the free frames
            # instead; the jvp then measures how they move the scored frames' x̂0 through the temporal layers.
            g = lerp_frames(g_s, frames, f)
            g[:, :, sorted(fixed)] = 0
            return g
        if fill == "tile":  # the public code: S's gradient copied along the frame axis
            reps = -(-f // len(frames))
            return g_s.repeat(1, 1, reps, 1, 1)[:, :, :f]
        if fill == "lerp":
            return lerp_frames(g_s, frames, f)
        g = torch.zeros_like(x0)
        g[:, :, frames] = g_s
        return g

    @staticmethod
    def _required(ctx, f: int):
        return ctx.reward_fn.required_frames(f) if ctx.reward_fn is not None else None

    def pick_frames(self, ctx, f: int) -> list[int]:
        required = self._required(ctx, f)
        if required:
            return sorted(set(int(k) for k in required))
        k = min(self.subset_frames, f)
        if self.subset == "contiguous":
            s = int(torch.randint(0, f - k + 1, (1,), generator=ctx.aux_generator))
            return list(range(s, s + k))
        return sorted(torch.randperm(f, generator=ctx.aux_generator)[:k].tolist())

    def guess_direction(self, ctx, x_prev, eps, x0) -> torch.Tensor:
        """V. A random guess is N(0, I) itself, so that E[(∇J·V) V] = ∇J (the unbiased forward gradient; a unit V
        would give ∇J/n, n the latent size, and `raw` would step n times too short). Score and direct guesses are
        unit vectors: ĝ is then ∇J's component along the guess."""
        if self.guess == "random":
            return ctx.randn_like(x_prev)
        elif self.guess == "score":
            v = eps.detach().clone()
        else:
            v = self.direct_guess(ctx, x0)
        return v / (v.float().norm() + 1e-12)

    def estimate(self, ctx, x_prev: torch.Tensor, t_prev: int, eps, x0) -> torch.Tensor:
        total = torch.zeros_like(x_prev)
        f = x_prev.shape[2]
        for _ in range(self.num_guesses):
            self._frames = None
            v = self.guess_direction(ctx, x_prev, eps, x0).to(x_prev.dtype)
            frames = None
            if self.objective_subset:  # video frame indices where the decoder is causal (`whole_video_decode`)
                f_pick = ctx.num_frames if getattr(ctx, "whole_video_decode", False) else f
                frames = self._frames if self._frames is not None else self.pick_frames(ctx, f_pick)
            J = self.objective(ctx, t_prev, frames)
            with forward_ad_safe([ctx.unet, ctx.vae], self.attention_slices):
                value, d = jvp(J, (x_prev,), (v,))
            if self.per_frame:
                coef = d.to(v.dtype)
                if frames is not None:  # one derivative per decoded frame; the others get none
                    coef = torch.zeros(f, dtype=v.dtype, device=v.device).index_copy(
                        0, torch.tensor(frames, device=v.device), coef)
                total = total + coef[None, None, :, None, None] * v
            else:
                total = total + d.to(v.dtype) * v
            ctx.stats["objective"] = float(value.detach().sum())
            ctx.stats["jvp"] = float(d.detach().float().sum())
        return total / self.num_guesses

    def scale(self, ctx, g: torch.Tensor, t: int, t_prev: int, parts, eps) -> torch.Tensor:
        """u(ĝ): the update direction at its size (before λ_t)."""
        if self.update == "sign":
            return torch.sign(g)
        if self.update == "raw":
            return g
        unit = g / (rms(g) + 1e-12)
        if self.update == "rms":
            return unit
        a_prev, b_prev = ctx.level(t_prev)
        if self.update == "noise":
            return b_prev * unit
        if self.update == "x0":
            return a_prev * unit
        eps_c, eps_u = parts
        strength = rms(eps) if eps_u is None else ctx.cfg_scale(t) * rms(eps_c - eps_u)
        return strength * unit

    @property
    def retakes_step(self) -> bool:
        return self.time_travel > 0

    def step(self, ctx, x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        x_prev = self.one_step(ctx, x, t, i)
        if self.time_travel and self.guided(ctx, t, i):
            for _ in range(self.time_travel):
                x_prev = self.one_step(ctx, ctx.renoise(x_prev, t), t, i)
        return x_prev

    def one_step(self, ctx, x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        with torch.no_grad():
            eps, parts = ctx.eps(x, t, return_parts=True)
            x0 = ctx.note_x0(ctx.x0(x, eps, t))
            x_prev = ctx.ddim(x0, eps, t)
            if not self.guided(ctx, t, i):
                return x_prev
            t_prev = ctx.prev_t(t)
            lam = self.step_size * step_schedule(self.schedule, i, len(ctx.timesteps))
            base, shift = x_prev, torch.zeros_like(x_prev)
            for _ in range(self.n_iter):  # the refinements' total shift stays inside the trust region
                g = self.estimate(ctx, base + shift, t_prev, eps, x0)
                shift = bound_shift(ctx, shift + lam * self.scale(ctx, g, t, t_prev, parts, eps), t_prev, self.trust)
            return base + shift
