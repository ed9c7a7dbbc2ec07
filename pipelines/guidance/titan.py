"""TITAN-Guide: guidance with forward-mode gradients (seed 000; METHODS.md "TITAN-Guide").

Per guided step, after the unguided DDIM step gives x_{t−1}:
    J(x) = Σ_k R_k(D(x̂0(x, t−1)))                       the reward of x_{t−1} at its own timestep
    V    = random N(0, I) | score ε̂/‖ε̂‖ | direct g/‖g‖   the gradient guess
    (J, d) = jvp(J, x_{t−1}, V);  ĝ = d · V               one forward-mode pass, no stored activations
    x_{t−1} ← x_{t−1} + λ_t ĝ / (rms(ĝ) + 1e-8)
The direct guess is the reverse-mode gradient of the reward through the decoder and reward only (never the UNet),
on |S| sampled latent frames of x̂0, tiled along the frame axis. K guesses are averaged. No backprop through the
UNet, ever: the only reverse-mode pass is decoder + reward on |S| frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import jvp

from .base import RangedGuidance, param, rms, step_schedule
from .forward_ad import forward_ad_safe


@dataclass
class TitanGuidance(RangedGuidance):
    name: ClassVar[str] = "titan"
    needs_gradient: ClassVar[bool] = True
    summary: ClassVar[str] = "TITAN-Guide: forward-mode (jvp) gradient estimates, no backprop through the UNet."

    guess: str = param("direct", choices=["direct", "random", "score"], help="gradient guess V")
    num_guesses: int = param(1, min=1, max=64, step=1, help="K guesses averaged per refinement")
    subset_frames: int = param(2, min=1, max=64, step=1, help="frames decoded for the direct guess (the sampled subset S)")
    subset: str = param("random", choices=["random", "contiguous"], help="how the direct guess picks its frames")
    per_frame: bool = param(False, help="one directional derivative per frame (assumes frame-local rewards)")
    step_size: float = param(0.1, min=0.0, max=5.0, step=0.01, help="λ: step size in units of latent rms")
    schedule: str = param("constant", choices=["constant", "increase", "decrease"], help="λ_t = λ·s_t")
    n_iter: int = param(1, min=1, max=10, step=1, help="refinements per guided step")
    objective_cfg: bool = param(False, help="use CFG in the objective's UNet pass (doubles its cost)")
    attention_slices: int = param(
        0, min=0, max=64, step=1,
        help="0: automatic jvp attention (fused jvp-flash kernel on CUDA when installed, else chunked math); "
        "N: sliced attention, N heads at a time",
    )
    objective_subset: bool = param(
        False, help="decode only the sampled frames S in J's jvp (the direct guess's; |S|/f of the decoder's cost)"
    )

    # --- the pieces of the formula ----------------------------------------------------------------------
    def objective(self, ctx, t_prev: int, frames=None):
        """J(z) = Σ_k R_k(D(x̂0(z))_k) over all frames, or over `frames` only (decoding only those)."""

        def J(z: torch.Tensor) -> torch.Tensor:
            eps = ctx.eps(z, t_prev, cfg=self.objective_cfg)
            r = ctx.reward(ctx.decode(ctx.x0(z, eps, t_prev), frames), frames)  # (f,) or (|S|,)
            return r if self.per_frame else r.sum()

        return J

    def direct_guess(self, ctx, x0: torch.Tensor) -> torch.Tensor:
        f = x0.shape[2]
        frames = self._frames = self.pick_frames(ctx, f)
        with torch.enable_grad():
            sub = x0[:, :, frames].detach().requires_grad_(True)  # (1, c, |S|, h, w): decode only S
            r = ctx.reward(ctx.decode(sub), frames).sum()
            (g_s,) = torch.autograd.grad(r, sub)
        reps = -(-f // len(frames))
        g = g_s.repeat(1, 1, reps, 1, 1)[:, :, :f]  # tile along the frame axis
        return g

    def pick_frames(self, ctx, f: int) -> list[int]:
        required = ctx.reward_fn.required_frames(f) if ctx.reward_fn is not None else None
        if required:
            return sorted(set(int(k) for k in required))
        k = min(self.subset_frames, f)
        if self.subset == "contiguous":
            s = int(torch.randint(0, f - k + 1, (1,), generator=ctx.aux_generator))
            return list(range(s, s + k))
        return sorted(torch.randperm(f, generator=ctx.aux_generator)[:k].tolist())

    def guess_direction(self, ctx, x_prev, eps, x0) -> torch.Tensor:
        if self.guess == "random":
            v = ctx.randn_like(x_prev)
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
            if self.objective_subset:
                frames = self._frames if self._frames is not None else self.pick_frames(ctx, f)
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
        return total / self.num_guesses

    def step(self, ctx, x: torch.Tensor, t: int, i: int) -> torch.Tensor:
        with torch.no_grad():
            eps = ctx.eps(x, t)
            x0 = ctx.note_x0(ctx.x0(x, eps, t))
            x_prev = ctx.ddim(x0, eps, t)
            if not self.guided(ctx, t, i):
                return x_prev
            t_prev = ctx.prev_t(t)
            lam = self.step_size * step_schedule(self.schedule, i, len(ctx.timesteps))
            for _ in range(self.n_iter):
                g = self.estimate(ctx, x_prev, t_prev, eps, x0)
                x_prev = x_prev + lam * g / (rms(g) + 1e-8)
            return x_prev
