"""Cheap step previews: a fixed linear map from the 4 latent channels to RGB instead of a full VAE decode.

Every latent pixel of a Stable-Diffusion-style VAE encodes a patch of `vae_scale_factor`² pixels, and its mean
colour is close to an affine function of the 4 latent channels. So `rgb ≈ zᵀW + b` (W: 4×3, b: 3) gives a preview
at latent resolution for the price of one tiny matmul, where a full decode of 16 frames at 512² costs as much as
several UNet passes. Preview modes (`stream(preview=...)`):

- `decode`: the full VAE decode of the step's x̂0 (exact; the default where decoding is cheap, e.g. micro at 32²);
- `fast`: the latent→RGB map, upscaled to at most `FAST_PREVIEW_MAX_SIDE` pixels (the default at 128² and up),
  with an optional full decode every `decode_every` steps;
- `auto`: `fast` when the frames are ≥ 128 px on a side, else `decode`.

`fit_latent_rgb` fits W, b by least squares (latents against the decoded frames averaged over each latent pixel's
patch); `fit_from_vae` does it for a VAE and a batch of images, which is how the micro preset's map is made at load
time and how the SD 1.5 numbers below can be re-fitted for another checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

PREVIEW_MODES = ("auto", "decode", "fast")
FAST_PREVIEW_MAX_SIDE = 256
AUTO_FAST_MIN_SIDE = 128

#: Stable Diffusion 1.x latents (as sampled, i.e. already multiplied by the VAE's scaling factor 0.18215) → RGB in
#: [−1, 1]: the widely used approximation first published by Keturn (2022) for SD 1.x front ends; no bias. To re-fit
#: for another SD 1.x VAE: `fit_from_vae(vae, images)` on a few hundred real photos (512², in [0, 1]).
SD15_LATENT_RGB_WEIGHT = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
SD15_LATENT_RGB_BIAS = (0.0, 0.0, 0.0)


@dataclass
class LatentRGB:
    """`rgb = (z·W + b) / 2 + 0.5` per latent pixel; z are the sampler's (scaled) latents."""

    weight: torch.Tensor  # (c, 3)
    bias: torch.Tensor  # (3,)

    @classmethod
    def sd15(cls) -> "LatentRGB":
        return cls(torch.tensor(SD15_LATENT_RGB_WEIGHT), torch.tensor(SD15_LATENT_RGB_BIAS))

    def __call__(self, latents: torch.Tensor, max_side: Optional[int] = FAST_PREVIEW_MAX_SIDE,
                 out_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Latents (1, c, f, h, w) or (f, c, h, w) → frames (f, 3, h', w') in [0, 1].

        The frames are upscaled (bilinear) towards `out_size` (the decoded size), but no larger than `max_side`.
        """
        z = latents[0].transpose(0, 1) if latents.ndim == 5 else latents  # (f, c, h, w)
        if z.shape[1] != self.weight.shape[0]:
            raise ValueError(f"latent→RGB map has {self.weight.shape[0]} channels, latents have {z.shape[1]}")
        w = self.weight.to(z.device, torch.float32)
        b = self.bias.to(z.device, torch.float32)
        rgb = torch.einsum("fchw,cr->frhw", z.float(), w) + b[None, :, None, None]
        rgb = (rgb / 2 + 0.5).clamp(0, 1)
        if out_size is not None:
            h, w_ = out_size
            if max_side is not None and max(h, w_) > max_side:
                s = max_side / max(h, w_)
                h, w_ = max(1, round(h * s)), max(1, round(w_ * s))
            if (h, w_) != tuple(rgb.shape[-2:]):
                rgb = F.interpolate(rgb, size=(h, w_), mode="bilinear", align_corners=False).clamp(0, 1)
        return rgb


def fit_latent_rgb(latents: torch.Tensor, rgb: torch.Tensor) -> LatentRGB:
    """Least squares `rgb·2 − 1 ≈ z·W + b` over latent pixels. latents (n, c, h, w); rgb (n, 3, h, w) in [0, 1]."""
    if latents.shape[0] != rgb.shape[0] or latents.shape[-2:] != rgb.shape[-2:]:
        raise ValueError(f"latents {tuple(latents.shape)} and colours {tuple(rgb.shape)} must share n, h, w")
    c = latents.shape[1]
    z = latents.detach().double().permute(0, 2, 3, 1).reshape(-1, c)
    y = (rgb.detach().double() * 2 - 1).permute(0, 2, 3, 1).reshape(-1, 3)
    a = torch.cat([z, torch.ones(z.shape[0], 1, dtype=z.dtype)], dim=1)
    sol = torch.linalg.lstsq(a, y).solution  # (c+1, 3)
    return LatentRGB(sol[:c].float(), sol[c].float())


@torch.no_grad()
def fit_from_vae(vae, images: torch.Tensor, chunk: int = 16) -> LatentRGB:
    """Fit the map of a VAE: encode `images` (n, 3, H, W) in [0, 1], decode, pool the decode over each latent pixel."""
    zs, pooled = [], []
    dtype = next(vae.parameters()).dtype
    device = next(vae.parameters()).device
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].to(device, dtype) * 2 - 1
        z = vae.encode(x).latent_dist.mode()
        dec = vae.decode(z).sample.float() / 2 + 0.5
        pooled.append(F.adaptive_avg_pool2d(dec.clamp(0, 1), z.shape[-2:]).cpu())
        zs.append((z.float() * vae.config.scaling_factor).cpu())
    return fit_latent_rgb(torch.cat(zs), torch.cat(pooled))


def micro_latent_rgb(vae, clips: int = 24, seed: int = 0) -> LatentRGB:
    """The micro VAE's map, fitted on rendered micro-world frames (every colour, shape and background)."""
    import numpy as np

    from .micro import world

    rng = np.random.default_rng(seed)
    attrs = [world.sample_attributes(rng, "train") for _ in range(clips)]
    frames, _, _ = world.render_batch(attrs, num_frames=4, rng=rng)
    return fit_from_vae(vae, frames.flatten(0, 1))


def resolve_preview(mode: str, height: int, width: int) -> str:
    """'auto' → 'fast' at ≥ 128 px frames, else 'decode'; 'decode' and 'fast' as given."""
    if mode not in PREVIEW_MODES:
        raise ValueError(f"preview must be one of {', '.join(PREVIEW_MODES)}, got {mode!r}")
    if mode == "auto":
        return "fast" if min(height, width) >= AUTO_FAST_MIN_SIDE else "decode"
    return mode


def latent_rgb_for(pipe) -> LatentRGB:
    """The pipeline's map: `pipe.latent_rgb` when a preset set one (a `LatentRGB`, or a zero-argument factory called
    on first use), else the SD 1.x approximation (4-channel VAEs)."""
    m = getattr(pipe, "latent_rgb", None)
    if callable(m) and not isinstance(m, LatentRGB):  # a factory (e.g. the micro fit): build once, keep
        m = m()
        pipe.latent_rgb = m
    if m is not None:
        return m
    c = pipe.vae.config.latent_channels
    if c != 4:
        raise ValueError(f"no latent→RGB map for a VAE with {c} latent channels; use preview='decode'")
    return LatentRGB.sd15()


@torch.no_grad()
def fit_wan_latent_rgb(vae, images: torch.Tensor) -> LatentRGB:
    """Fit the map of Wan's video VAE (`AutoencoderKLWan`, 16 channels) on still images (n, 3, H, W) in [0, 1]:
    each image is encoded as a one-frame video (latent frame 0, which the causal encoder computes from that frame
    alone), normalised as `WanPipeline` normalises its latents ((μ − latents_mean) / latents_std: the sampler's
    x̂0), decoded, and the decode pooled over each latent pixel's patch. Run it against the real VAE
    (`bench/fit_wan_latent_rgb.py`); a preview then shows one image per latent frame."""
    cfg = vae.config
    dtype, device = next(vae.parameters()).dtype, next(vae.parameters()).device
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(device, torch.float32)
    std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(device, torch.float32)
    zs, pooled = [], []
    for img in images:
        x = (img.to(device, dtype) * 2 - 1)[None, :, None]
        mu = vae.encode(x).latent_dist.mode()
        dec = vae.decode(mu).sample[:, :, 0].float() / 2 + 0.5  # (1, 3, H, W)
        zs.append(((mu.float() - mean) / std)[:, :, 0].cpu())
        pooled.append(F.adaptive_avg_pool2d(dec.clamp(0, 1), mu.shape[-2:]).cpu())
    return fit_latent_rgb(torch.cat(zs), torch.cat(pooled))


def save_latent_rgb(m: LatentRGB, path) -> None:
    """Write a map as JSON ({"weight": c×3, "bias": 3})."""
    import json

    with open(path, "w") as f:
        json.dump({"weight": m.weight.tolist(), "bias": m.bias.tolist()}, f)


def load_latent_rgb(path) -> LatentRGB:
    """Read a map written by `save_latent_rgb` (a ValueError naming the file when it is not one)."""
    import json

    try:
        with open(path) as f:
            data = json.load(f)
        w, b = torch.tensor(data["weight"], dtype=torch.float32), torch.tensor(data["bias"], dtype=torch.float32)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"latent→RGB map {str(path)!r} could not be read: {e}") from None
    if w.ndim != 2 or w.shape[1] != 3 or b.shape != (3,):
        raise ValueError(f"latent→RGB map {str(path)!r}: weight must be c×3 and bias 3, got {tuple(w.shape)}, "
                         f"{tuple(b.shape)}")
    return LatentRGB(w, b)
