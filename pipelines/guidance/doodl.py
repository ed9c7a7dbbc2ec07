"""DOODL: optimise the initial noise x_T through the whole (deterministic) sampling chain.

Reverse mode through every UNet call of the chain, with gradient checkpointing per step so memory holds one
step's activations at a time. Each iteration: run DDIM (η = 0) from x_T, R(D(x̂0 at the end)), backprop to x_T,
x_T ← x_T + lr · g / rms(g), then rescale x_T back to the Gaussian shell (‖x_T‖ = √d). The final video is
sampled with η = 0 from the optimised x_T. Slowest and most memory-hungry by design: a reference point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.utils.checkpoint import checkpoint

from .base import MAX_SHIFT, TRUST_HELP, Guidance, bound_shift, param, rms


@dataclass
class DOODLGuidance(Guidance):
    name: ClassVar[str] = "doodl"
    needs_gradient: ClassVar[bool] = True
    summary: ClassVar[str] = "DOODL: optimise the initial noise through the whole chain (checkpointed backprop)."

    iterations: int = param(3, min=1, max=50, step=1, help="outer optimisation iterations over x_T")
    lr: float = param(0.1, min=0.0, max=5.0, step=0.01, help="step on x_T in units of its rms")
    checkpointing: bool = param(True, help="recompute each step's activations in the backward pass")
    trust: float = param(MAX_SHIFT, min=0.0, max=10.0, step=0.05, help=TRUST_HELP)

    def _chain(self, ctx, x: torch.Tensor) -> torch.Tensor:
        def one(z: torch.Tensor, t: int) -> torch.Tensor:
            eps = ctx.eps(z, t)
            return ctx.ddim(ctx.x0(z, eps, t), eps, t, eta=0.0)

        for t in ctx.timesteps[:-1]:
            x = checkpoint(one, x, t, use_reentrant=False) if self.checkpointing else one(x, t)
        t = ctx.timesteps[-1]
        eps = ctx.eps(x, t)
        return ctx.x0(x, eps, t)  # the chain's final x̂0

    def initial_latents(self, ctx, latents: torch.Tensor):
        radius = latents.float().norm()
        x_T = latents.detach()
        for it in range(self.iterations):
            with torch.enable_grad():
                z = x_T.clone().requires_grad_(True)
                frames = ctx.decode(self._chain(ctx, z))
                value = ctx.reward(frames).sum()
                (g,) = torch.autograd.grad(value, z)
            with torch.no_grad():
                ctx.stats = {}
                x_T = x_T + bound_shift(ctx, self.lr * g / (rms(g) + 1e-12), int(ctx.timesteps[0]), self.trust)
                x_T = x_T * (radius / x_T.float().norm())
            yield {
                "iteration": it + 1,
                "iterations": self.iterations,
                "reward": float(value.detach()) / frames.shape[0],
                "shift_ratio": ctx.stats.get("shift_ratio", 0.0),
                "shift_ratio_raw": ctx.stats.get("shift_ratio_raw", 0.0),
                "preview": frames.detach().clamp(0, 1).cpu(),
            }
        return x_T

    def step(self, ctx, x, t, i):
        with torch.no_grad():
            eps = ctx.eps(x, t)
            x0 = ctx.note_x0(ctx.x0(x, eps, t))
            return ctx.ddim(x0, eps, t, eta=0.0)
