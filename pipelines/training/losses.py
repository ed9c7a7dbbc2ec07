"""HARIVO's losses (seed 002, Eqs. 1–5) and the objective that computes them in one forward pass.

`L_all = L_simple + λ_TRS L_TRS + λ_reg L_reg + λ_DC L_DC`, every λ 0.1 by default, 0 switches a term off.

- `simple_loss`: the denoising loss on the scheduler's target (ε, or v for v-prediction models).
- `trs_loss`: L1 between the self-attention maps of consecutive frames in the decoder layers, layer `i` of `N`
  weighted `i/N` (later layers count more). Per layer the L1 distance of each query's attention distribution
  (summed over keys, so in [0, 2] whatever the resolution) is averaged over queries, heads, frame pairs and videos.
- `reg_loss`: `λ_t ‖f_video(x_t) − f_image(x_t)‖²`, `λ_t = 1 − t/T`, both with the mapping network; the image model
  is the same UNet with its temporal layers bypassed and without frame tokens. Mean over elements, then videos.
- `dc_loss`: decoupled contrastive loss on projected, L2-normalised bottleneck features of two random frames of a
  video: `−⟨z1, z2⟩/τ + log Σ_{q∈Q} exp(⟨z1, z_q⟩/τ)`, τ = 0.1, negatives from a queue of earlier steps' pairs
  (no negatives on the very first step: only the positive term).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .modules import AttentionMapRecorder, BottleneckRecorder, bypass_temporal


@dataclass
class LossWeights:
    trs: float = 0.1
    reg: float = 0.1
    dc: float = 0.1

    def __post_init__(self):
        for k in ("trs", "reg", "dc"):
            if getattr(self, k) < 0:
                raise ValueError(f"loss weight {k} must be ≥ 0, got {getattr(self, k)}")


def noised(z0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str):
    """(z_t, target) for clean latents `z0` of any rank, ᾱ_t per sample: ε or v = √ᾱ ε − √(1−ᾱ) z0."""
    ab = alpha_bar.view(-1, *[1] * (z0.ndim - 1)).to(z0.dtype)
    zt = ab.sqrt() * z0 + (1 - ab).sqrt() * noise
    target = noise if prediction_type == "epsilon" else ab.sqrt() * noise - (1 - ab).sqrt() * z0
    return zt, target


def simple_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), target.float())


def trs_loss(layers: list[torch.Tensor]) -> torch.Tensor:
    """`layers`: decoder self-attention maps `(b, f, heads, N, N)` in forward order (layer i = 1..N)."""
    if not layers:
        raise ValueError("L_TRS needs at least one decoder self-attention map")
    n = len(layers)
    total = layers[0].new_zeros((), dtype=torch.float32)
    for i, a in enumerate(layers, start=1):
        if a.shape[1] < 2:
            continue
        d = (a[:, 1:].float() - a[:, :-1].float()).abs().sum(-1)  # (b, f-1, heads, N): per-query L1
        total = total + (i / n) * d.mean()
    return total


def reg_lambda(t: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    return 1.0 - t.float() / num_train_timesteps


def reg_loss(video_out: torch.Tensor, image_out: torch.Tensor, t: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    per = ((video_out.float() - image_out.float()) ** 2).flatten(1).mean(1)  # (b,)
    return (reg_lambda(t, num_train_timesteps).to(per.device) * per).mean()


def dc_loss(z1: torch.Tensor, z2: torch.Tensor, queue: torch.Tensor | None, tau: float = 0.1) -> torch.Tensor:
    """`z1`, `z2`: `(b, d)` projected features of two frames of each video; `queue`: `(q, d)` negatives or None.
    Inputs are L2-normalised here."""
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    loss = -(z1 * z2).sum(-1) / tau
    if queue is not None and len(queue):
        loss = loss + torch.logsumexp(z1 @ F.normalize(queue.float(), dim=-1).t() / tau, dim=-1)
    return loss.mean()


class HarivoObjective(nn.Module):
    """The trained video model and its losses; `forward` returns a dict of loss terms and `total`.

    Holds the UNet (`UNetMotionModel`, image part frozen), the optional mapping network, frame-token generator and
    contrastive projection (with its negative queue, a buffer so it is checkpointed). One forward = one training
    step's graph, so DDP sees one forward per backward.
    """

    def __init__(self, unet, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon", mapping=None,
                 frame_tokens=None, projection=None, weights: LossWeights | None = None, tau: float = 0.1,
                 queue_size: int = 256, trs_max_tokens: int | None = None):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
        self.weights = weights or LossWeights()
        if self.weights.dc > 0 and projection is None:
            raise ValueError("L_DC (weight > 0) needs a contrastive projection")
        self.unet, self.mapping, self.frame_tokens, self.projection = unet, mapping, frame_tokens, projection
        self.prediction_type, self.tau = prediction_type, tau
        self.num_train_timesteps = len(alphas_cumprod)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float().clone(), persistent=False)
        self.attn = AttentionMapRecorder(unet, trs_max_tokens) if self.weights.trs > 0 else None
        self.bottleneck = BottleneckRecorder(unet) if self.weights.dc > 0 else None
        dim = projection.layers[-1].out_features if projection is not None else 1
        self.register_buffer("queue", torch.zeros(queue_size if projection is not None else 0, dim))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def encoder_states(self, text: torch.Tensor, num_frames: int, frame_tokens: bool = True) -> torch.Tensor:
        if frame_tokens and self.frame_tokens is not None:
            return self.frame_tokens.expand(text, num_frames)
        return text.repeat_interleave(num_frames, dim=0)

    def noisy(self, z0, noise, t):
        return noised(z0, noise, self.alphas_cumprod[t], self.prediction_type)

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        q = self.queue.shape[0]
        z = F.normalize(z.detach().float(), dim=-1)[-q:]
        idx = (self.queue_ptr + torch.arange(len(z), device=z.device)) % q
        self.queue[idx] = z.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(z)) % q)
        self.queue_len.copy_(torch.clamp(self.queue_len + len(z), max=q))

    def forward(self, z0: torch.Tensor, text: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                pair: torch.Tensor | None = None) -> dict:
        """`z0` `(b, c, f, h, w)` clean latents, `text` `(b, M, D)` text tokens, `noise` like z0, `t` `(b,)`,
        `pair` `(b, 2)` two distinct frame indices per video (L_DC)."""
        b, c, f = z0.shape[:3]
        zt, target = self.noisy(z0, noise, t)
        x = self.mapping(zt) if self.mapping is not None else zt
        rec = self.attn.record() if self.attn is not None else contextlib.nullcontext()
        with rec:
            pred = self.unet(x, t, encoder_hidden_states=self.encoder_states(text, f)).sample
        out = {"simple": simple_loss(pred, target)}
        total = out["simple"]
        w = self.weights
        if self.attn is not None:
            out["trs"] = trs_loss(self.attn.layers(f))
            total = total + w.trs * out["trs"]
        if self.bottleneck is not None:
            if pair is None:
                raise ValueError("L_DC needs `pair`, two frame indices per video")
            h = self.bottleneck.h.unflatten(0, (b, f))
            ar = torch.arange(b, device=h.device)
            z1 = self.projection(h[ar, pair[:, 0]].to(self.projection.layers[0].weight.dtype))
            z2 = self.projection(h[ar, pair[:, 1]].to(self.projection.layers[0].weight.dtype))
            n = int(self.queue_len)
            out["dc"] = dc_loss(z1, z2, self.queue[:n].clone() if n else None, self.tau)
            total = total + w.dc * out["dc"]
            self._enqueue(torch.cat([z1, z2]))
        if w.reg > 0:
            with bypass_temporal(self.unet):
                img = self.unet(x, t, encoder_hidden_states=self.encoder_states(text, f, frame_tokens=False)).sample
            out["reg"] = reg_loss(pred, img, t, self.num_train_timesteps)
            total = total + w.reg * out["reg"]
        out["total"] = total
        return out
