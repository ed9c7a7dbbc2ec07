"""HARIVO mitigating-gradient (MG) sampling, Algorithm 1 of the HARIVO paper (METHODS.md).

    x̂  = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t                    per frame
    D_i = x̂_{i+1} − x̂_i,  n_i = ‖D_i‖₂ over (c, h, w)
    S   = median(n)² / log(f−1)
    G_i = 2 exp(−n_i²/S) D_i / S · ω,   ω = √((1−ᾱ_t)/ᾱ_t)
    ε̂  ← ε̂ + α · concat(0, G_1..G_{f−1})

Adding δ to ε̂ moves x̂ by −ω δ, so frame i+1 is pulled toward frame i: temporal smoothing in closed form.
"""
from __future__ import annotations

import math

import torch


def mitigating_gradient(
    noise_pred: torch.Tensor, latents: torch.Tensor, alpha_prod_t, scale: float
) -> torch.Tensor:
    """Return `noise_pred` with HARIVO's mitigating gradient added (a new tensor; inputs are not modified).

    noise_pred, latents: `(b, c, f, h, w)`; alpha_prod_t: ᾱ_t (float or 0-d tensor); scale: α (0 = off).
    No-ops (returns `noise_pred` unchanged) when `scale == 0`, `f < 3` (log(f−1) ≤ 0) or the median frame
    difference is 0 (a static video). Computed in fp32, returned in `noise_pred`'s dtype.
    """
    if noise_pred.shape != latents.shape:
        raise ValueError(f"noise_pred {tuple(noise_pred.shape)} and latents {tuple(latents.shape)} must match")
    if noise_pred.ndim != 5:
        raise ValueError(f"expected (b, c, f, h, w) tensors, got {noise_pred.ndim} dims")
    f = noise_pred.shape[2]
    if scale == 0 or f < 3:
        return noise_pred
    a = torch.as_tensor(alpha_prod_t, dtype=torch.float32, device=latents.device)
    if not (0 < float(a) <= 1):
        raise ValueError(f"alpha_prod_t must be in (0, 1], got {float(a)}")
    eps = noise_pred.float()
    x0 = (latents.float() - (1 - a).sqrt() * eps) / a.sqrt()
    diff = x0[:, :, 1:] - x0[:, :, :-1]  # (b, c, f-1, h, w)
    norms = diff.pow(2).sum(dim=(1, 3, 4)).sqrt()  # (b, f-1)
    med = norms.median(dim=1).values  # (b,)
    s = med.pow(2) / math.log(f - 1)  # (b,)
    safe = s > 0
    s_safe = torch.where(safe, s, torch.ones_like(s))[:, None]
    omega = ((1 - a) / a).sqrt()
    weight = 2 * torch.exp(-norms.pow(2) / s_safe) / s_safe * omega  # (b, f-1)
    weight = weight * safe[:, None].to(weight.dtype)
    g = diff * weight[:, None, :, None, None]
    g = torch.cat([torch.zeros_like(g[:, :, :1]), g], dim=2)
    return (eps + scale * g).to(noise_pred.dtype)
