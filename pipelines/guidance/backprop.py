"""Backprop baselines: FreeDoM, MPGD and the unified TFG update (METHODS.md "Baselines").

Every guided shift of x_{t−1} goes through the trust region `base.bound_shift` (`trust`: each frame moves by at most
trust·b_{t−1}, the noise left after the step, in rms; 0 = unbounded, the forms below as METHODS.md states them).
FreeDoM  g = ∇_{x_t} Σ R(D(x̂0(x_t)))  (through UNet + decoder);  x_{t−1} = DDIM(x_t) + ρ_t g,
         ρ_t = ρ · w · rms(ε_c − ε_u) / rms(g); optional time travel (re-noise one step and redo, r times).
MPGD     g0 = ∇_{x̂0} Σ R(D(x̂0)) (decoder only);  x̂0' = x̂0 + c_t g0,  c_t = ρ · w · rms(ε_c − ε_u) / rms(g0);
         then the DDIM step from x̂0' with the same ε̂.
TFG      L̃(y) = log mean_k exp Σ R(D(y + δ_k)), δ_k ~ N(0, γ_t² I);  Δ_t = ρ_t ∇_{x_t} L̃(x̂0(x_t));
         Δ_0 += μ_t ∇_{x̂0} L̃(x̂0 + Δ_0)  (N_iter times);  x_{t−1} = DDIM(x_t) + Δ_t/√(ᾱ_t/ᾱ_{t−1}) + √ᾱ_{t−1} Δ_0;
         N_recur recurrences (re-noise one step between them). ρ_t = ρ̄ s_t T/Σs, μ_t likewise, γ_t = γ̄ √(1−ᾱ_t).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import MAX_SHIFT, TRUST_HELP, RangedGuidance, bound_shift, param, rms


def _cfg_strength(ctx, parts, eps: torch.Tensor, t: int) -> torch.Tensor:
    """w · rms(ε_c − ε_u): the size of the CFG correction, FreeDoM's and MPGD's yardstick for step sizes."""
    eps_c, eps_u = parts
    if eps_u is None:  # CFG off: fall back to the noise prediction's own size
        return rms(eps)
    return ctx.cfg_scale(t) * rms(eps_c - eps_u)


UNET_CHECKPOINT_HELP = ("checkpoint the UNet's blocks for the backward pass through it (less memory, one more forward "
                        "per block): auto = on at ≥ 256² frames (GVS_UNET_CHECKPOINT overrides), on, off")


def unet_checkpoint(ctx, x: torch.Tensor, option: str):
    """The context a backprop-through-the-UNet pass runs in: `pipelines.memory.unet_checkpointing` by `option`."""
    from ..memory import unet_checkpointing, want_unet_checkpointing

    return unet_checkpointing(ctx.unet, want_unet_checkpointing(x, {"on": True, "off": False}.get(option, "auto")))


@dataclass
class FreeDoMGuidance(RangedGuidance):
    name: ClassVar[str] = "freedom"
    needs_gradient: ClassVar[bool] = True
    summary: ClassVar[str] = "FreeDoM: reward gradient by backprop through the UNet and decoder."

    rho: float = param(0.2, min=0.0, max=10.0, step=0.01,
                       help="ρ: step relative to the CFG correction (scale=cfg) or to the noise left (scale=noise)")
    scale: str = param("cfg", choices=["cfg", "noise"],
                       help="cfg: ρ_t = ρ·w·rms(ε_c−ε_u)/rms(g) (METHODS.md; zero when the prompt adds nothing, e.g. "
                            "an empty prompt); noise: the step moves x_{t−1} by ρ·√(1−ᾱ_{t−1}) in rms")
    time_travel: int = param(0, min=0, max=10, step=1, help="r: re-noise and redo each guided step r times")
    trust: float = param(MAX_SHIFT, min=0.0, max=10.0, step=0.05, help=TRUST_HELP)
    unet_checkpoint: str = param("auto", choices=["auto", "on", "off"], help=UNET_CHECKPOINT_HELP)

    @property
    def retakes_step(self) -> bool:
        return self.time_travel > 0

    def one_step(self, ctx, x, t, i):
        with torch.enable_grad(), unet_checkpoint(ctx, x, self.unet_checkpoint):
            x = x.detach().requires_grad_(True)
            eps, parts = ctx.eps(x, t, return_parts=True)
            x0 = ctx.x0(x, eps, t)
            objective = ctx.objective(x0)
            (g,) = torch.autograd.grad(objective, x)
        ctx.note_x0(x0)
        ctx.stats["objective"] = float(objective.detach())
        with torch.no_grad():
            x_prev = ctx.ddim(x0.detach(), eps.detach(), t)
            if self.scale == "noise":
                size = ctx.level(ctx.prev_t(t))[1]
            else:
                size = _cfg_strength(ctx, parts, eps, t)
            rho_t = self.rho * size / (rms(g) + 1e-12)
            return x_prev + bound_shift(ctx, rho_t * g, ctx.prev_t(t), self.trust)

    def step(self, ctx, x, t, i):
        if not self.guided(ctx, t, i):
            return super().step(ctx, x, t, i)
        x_prev = self.one_step(ctx, x, t, i)
        for _ in range(self.time_travel):
            x_prev = self.one_step(ctx, ctx.renoise(x_prev, t), t, i)
        return x_prev


@dataclass
class MPGDGuidance(RangedGuidance):
    name: ClassVar[str] = "mpgd"
    needs_gradient: ClassVar[bool] = True
    summary: ClassVar[str] = "MPGD: reward gradient w.r.t. x̂0 through the decoder only (no UNet backprop)."

    rho: float = param(15.0, min=0.0, max=100.0, step=0.1,
                       help="ρ: x̂0 step, relative to the CFG correction (scale=cfg) or to the noise left (scale=noise)")
    scale: str = param("cfg", choices=["cfg", "noise"],
                       help="cfg: c_t = ρ·w·rms(ε_c−ε_u)/rms(g0) (METHODS.md); noise: the step moves x_{t−1} by "
                            "ρ·√(1−ᾱ_{t−1}) in rms")
    trust: float = param(MAX_SHIFT, min=0.0, max=10.0, step=0.05, help=TRUST_HELP)

    def step_size(self, ctx, parts, eps, t, g0) -> torch.Tensor:
        if self.scale == "noise":  # a_{t−1} c_t rms(g0) = ρ b_{t−1}
            ap, bp = ctx.level(ctx.prev_t(t))
            return self.rho * (bp / ap) / (rms(g0) + 1e-12)
        return self.rho * _cfg_strength(ctx, parts, eps, t) / (rms(g0) + 1e-12)

    def step(self, ctx, x, t, i):
        with torch.no_grad():
            eps, parts = ctx.eps(x, t, return_parts=True)
            x0 = ctx.note_x0(ctx.x0(x, eps, t))
        if not self.guided(ctx, t, i):
            with torch.no_grad():
                return ctx.ddim(x0, eps, t)
        with torch.enable_grad():
            y = x0.detach().requires_grad_(True)
            objective = ctx.objective(y)
            (g0,) = torch.autograd.grad(objective, y)
        ctx.stats["objective"] = float(objective.detach())
        with torch.no_grad():  # x_{t−1} moves by a_{t−1} times the x̂0 step: that shift is what the trust region bounds
            ap = ctx.level(ctx.prev_t(t))[0]
            shift = bound_shift(ctx, ap * self.step_size(ctx, parts, eps, t, g0) * g0, ctx.prev_t(t), self.trust)
            return ctx.ddim(x0 + shift / ap, eps, t)


@dataclass
class TFGGuidance(RangedGuidance):
    name: ClassVar[str] = "tfg"
    needs_gradient: ClassVar[bool] = True
    summary: ClassVar[str] = "TFG: unified training-free guidance (ρ through the UNet, μ on x̂0, γ smoothing)."

    rho: float = param(0.25, min=0.0, max=100.0, step=0.01, help="ρ̄: x_t gradient strength (through the UNet)")
    mu: float = param(2.0, min=0.0, max=100.0, step=0.1, help="μ̄: x̂0 gradient strength (decoder only)")
    gamma: float = param(0.1, min=0.0, max=10.0, step=0.01, help="γ̄: smoothing noise, γ_t = γ̄ √(1−ᾱ_t)")
    num_samples: int = param(1, min=1, max=16, step=1, help="K: Monte-Carlo samples of the smoothed objective")
    n_recur: int = param(1, min=1, max=10, step=1, help="N_recur: recurrences per step")
    n_iter: int = param(4, min=0, max=20, step=1, help="N_iter: x̂0 refinements per recurrence")
    rho_schedule: str = param("increase", choices=["increase", "decrease", "constant"], help="s_t for ρ_t")
    mu_schedule: str = param("increase", choices=["increase", "decrease", "constant"], help="s_t for μ_t")
    normalize: str = param(
        "none", choices=["none", "rms"], help="none: raw gradients (TFG); rms: gradients scaled to unit rms"
    )
    trust: float = param(MAX_SHIFT, min=0.0, max=10.0, step=0.05, help=TRUST_HELP)
    unet_checkpoint: str = param("auto", choices=["auto", "on", "off"], help=UNET_CHECKPOINT_HELP)

    @property
    def retakes_step(self) -> bool:
        return self.n_recur > 1

    def start(self, ctx) -> None:
        super().start(ctx)
        T = len(ctx.timesteps)

        def s(kind: str, t: int) -> float:
            ratio = float((ctx.level(t)[0] / ctx.level(ctx.prev_t(t))[0]) ** 2)
            return {"increase": ratio, "decrease": 1.0 - ratio, "constant": 1.0}[kind]

        def weights(kind: str) -> dict[int, float]:
            raw = {t: s(kind, t) for t in ctx.timesteps}
            total = sum(raw.values()) or 1.0
            return {t: v * T / total for t, v in raw.items()}

        self._rho_w = weights(self.rho_schedule)
        self._mu_w = weights(self.mu_schedule)

    def smoothed(self, ctx, y: torch.Tensor, t: int) -> torch.Tensor:
        """L̃(y) = log mean_k exp Σ R(D(y + δ_k))."""
        gamma_t = self.gamma * float(ctx.level(t)[1])
        values = []
        for _ in range(self.num_samples):
            delta = gamma_t * ctx.randn_like(y) if gamma_t > 0 else 0.0
            values.append(ctx.objective(y + delta))
        v = torch.stack(values)
        return torch.logsumexp(v, 0) - math.log(len(values))

    def _scale(self, g: torch.Tensor) -> torch.Tensor:
        return g / (rms(g) + 1e-12) if self.normalize == "rms" else g

    def step(self, ctx, x, t, i):
        if not self.guided(ctx, t, i):
            return super().step(ctx, x, t, i)
        rho_t = self.rho * self._rho_w[t]
        mu_t = self.mu * self._mu_w[t]
        a, ap = ctx.level(t)[0], ctx.level(ctx.prev_t(t))[0]  # a_t, a_{t−1}
        for r in range(self.n_recur):
            with torch.enable_grad(), unet_checkpoint(ctx, x, self.unet_checkpoint if rho_t > 0 else "off"):
                xg = x.detach().requires_grad_(rho_t > 0)
                eps = ctx.eps(xg, t)
                x0 = ctx.x0(xg, eps, t)
                if rho_t > 0:
                    objective = self.smoothed(ctx, x0, t)
                    (g,) = torch.autograd.grad(objective, xg)
                    delta_t = rho_t * self._scale(g)
                    ctx.stats["objective"] = float(objective.detach())
                else:
                    delta_t = torch.zeros_like(x)
            x0, eps = x0.detach(), eps.detach()
            ctx.note_x0(x0)
            delta_0 = torch.zeros_like(x0)
            if mu_t > 0:
                for _ in range(self.n_iter):
                    with torch.enable_grad():
                        y = (x0 + delta_0).requires_grad_(True)
                        (g0,) = torch.autograd.grad(self.smoothed(ctx, y, t), y)
                    delta_0 = delta_0 + mu_t * self._scale(g0)
            with torch.no_grad():
                # Δ_t moved to x_{t−1}; at a_t = 0 (flow matching's σ = 1: x_t is pure noise) it has no image there
                ratio = a / ap
                moved = delta_t / ratio if float(ratio) > 0 else torch.zeros_like(delta_t)
                shift = bound_shift(ctx, moved + ap * delta_0, ctx.prev_t(t), self.trust)
                x_prev = ctx.ddim(x0, eps, t) + shift
            if r < self.n_recur - 1:
                x = ctx.renoise(x_prev, t)
        return x_prev
