"""HARIVO mitigating-gradient (MG) sampling, Algorithm 1 of the HARIVO paper (METHODS.md).

    x̂  = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t                    per frame
    D_i = x̂_{i+1} − x̂_i,  n_i = ‖D_i‖₂ over (c, h, w)
    S   = median(n)² / log(f−1)
    G_i = 2 exp(−n_i²/S) D_i / S · ω,   ω = √((1−ᾱ_t)/ᾱ_t)
    ε̂  ← ε̂ + α · concat(0, G_1..G_{f−1})

Adding δ to ε̂ moves x̂ by −ω δ, so frame i+1 is pulled toward frame i: temporal smoothing in closed form.

Size: frame i+1 moves toward frame i by the fraction 2αω² exp(−n_i²/S)/S; with n_i near the median that is
≈ 2αω² log(f−1)/((f−1)·d·δ²) (d = c·h·w elements, δ the rms per-element frame difference of x̂0), so a given α
acts less on longer videos and larger latents. `normalized_mg_scale` converts α into the value with the effect α
has at HARIVO's setting (24 frames × 4 × 32² latents, α = 40); `mitigating_gradient(..., normalized=True)`
applies that conversion from the latents' own shape.
"""
from __future__ import annotations

import math

from typing import Optional, Sequence, Union

import torch

#: HARIVO's setting, where α = 40 was tuned: (frames, latent channels, latent height, latent width)
HARIVO_MG_REFERENCE = (24, 4, 32, 32)


def _mg_size_factor(num_frames: int, elements: int) -> float:
    """log(f−1)/((f−1)·d): how strongly one unit of α acts at f frames of d latent elements each."""
    return math.log(num_frames - 1) / ((num_frames - 1) * elements)


def normalized_mg_scale(alpha: float, num_frames: int, latent_hw: Union[int, Sequence[int]], channels: int = 4) -> float:
    """The raw α that shrinks x̂0 frame differences at `num_frames` × `channels` × `latent_hw` latents by the same
    fraction as `alpha` does at HARIVO's 24 × 4 × 32² (e.g. 40 -> ≈ 121 at 16 × 4 × 64²). Fewer than 3 frames:
    MG is off anyway, `alpha` is returned unchanged."""
    h, w = (latent_hw, latent_hw) if isinstance(latent_hw, int) else tuple(int(v) for v in latent_hw)
    if min(h, w, channels) < 1 or num_frames < 1:
        raise ValueError(f"normalized_mg_scale: bad size {num_frames} frames × {channels} × {h}×{w}")
    if num_frames < 3:
        return float(alpha)
    rf, rc, rh, rw = HARIVO_MG_REFERENCE
    return float(alpha) * _mg_size_factor(rf, rc * rh * rw) / _mg_size_factor(num_frames, channels * h * w)


def mitigating_gradient(
    noise_pred: torch.Tensor, latents: torch.Tensor, alpha_prod_t, scale: float, normalized: bool = False,
    max_pull: Optional[float] = None,
) -> torch.Tensor:
    """Return `noise_pred` with HARIVO's mitigating gradient added (a new tensor; inputs are not modified).

    noise_pred, latents: `(b, c, f, h, w)`; alpha_prod_t: ᾱ_t (float or 0-d tensor); scale: α (0 = off);
    normalized: read `scale` as a normalised α (its effect at HARIVO's 24 × 4 × 32² latents, `normalized_mg_scale`).
    max_pull: cap on the fraction 2αω² exp(−n_i²/S)/S by which frame i+1 of x̂0 moves toward frame i (None: the
    paper's uncapped form). Flow matching needs it: its early steps have ω² = σ²/(1 − σ)² up to ~10⁴ (shift 7), where
    the explicit step overshoots the neighbour and the frame differences grow instead of shrinking.
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
    if normalized:
        _, c, _, h, w = noise_pred.shape
        scale = normalized_mg_scale(scale, f, (h, w), c)
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
    if max_pull is not None and scale > 0:  # x̂0 moves by the fraction α·ω·weight of D_i
        weight = weight.clamp(max=float(max_pull) / (float(scale) * float(omega)))
    g = diff * weight[:, None, :, None, None]
    g = torch.cat([torch.zeros_like(g[:, :, :1]), g], dim=2)
    return (eps + scale * g).to(noise_pred.dtype)
