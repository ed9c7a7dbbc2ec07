"""HARIVO's frame-wise token generator: text tokens `(M, D)` → per-frame tokens `(F, K, D)`.

HARIVO (seed 002) appends `K = 3` generated tokens to the text tokens of every frame, so the image model's
cross-attention, which sees one frame at a time and has no notion of time, receives a frame-specific condition.
That is what a prompt like "moving left to right" needs: the object's place in frame `k` depends on both the
motion words and `k`, and in AnimateDiff only the temporal layers know `k`.

Our generator standardises the text tokens per position and feature, projects each token to a few features,
keeps them in order (word order matters: "left to right" and "right to left" have the same words), adds features of
the frame's normalised time `u = k / (F − 1)` and of its index, and maps all of it through an MLP whose last layer
starts at zero. The standardisation statistics are buffers set once from the frozen text encoder before training, so
small differences between prompts (the micro text encoder's motion words) are not drowned by the part every prompt
shares.

`GuidedAnimateDiffPipeline` uses it when the pipeline has a `frame_tokens` component (the micro preset ships one);
real AnimateDiff weights have none and are unaffected.
"""
from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class FrameTokenGenerator(ModelMixin, ConfigMixin):
    """`(B, M, D)` text tokens → `(B, F, K, D)` frame tokens; `expand` gives the UNet's `(B·F, M + K, D)`."""

    @register_to_config
    def __init__(self, dim: int = 768, num_tokens: int = 3, hidden: int = 256, time_freqs: int = 6,
                 max_frames: int = 32, text_length: int = 77, token_features: int = 16):
        super().__init__()
        self.register_buffer("text_mean", torch.zeros(text_length, dim))
        self.register_buffer("text_scale", torch.ones(text_length, dim))
        n_time = 4 * time_freqs + 2
        self.token_proj = nn.Linear(dim, token_features)
        self.net = nn.Sequential(
            nn.Linear(text_length * token_features + n_time, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, num_tokens * dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    @torch.no_grad()
    def set_text_statistics(self, text_tokens: torch.Tensor) -> None:
        """Per-position, per-feature standardisation from a sample of prompts' text tokens `(N, M, D)`."""
        t = text_tokens.float()
        self.text_mean.copy_(t.mean(0))
        self.text_scale.copy_(t.std(0).clamp(min=1e-3))

    def text_features(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """`(B, M, D)` → `(B, M · token_features)`: standardised tokens, projected, in order."""
        dtype = self.token_proj.weight.dtype
        z = (text_tokens.to(dtype) - self.text_mean.to(dtype)) / self.text_scale.to(dtype)
        return self.token_proj(z).flatten(1)

    def time_features(self, num_frames: int, device, dtype) -> torch.Tensor:
        k = torch.arange(num_frames, device=device, dtype=torch.float32)
        u = k / max(num_frames - 1, 1)
        j = torch.arange(1, self.config.time_freqs + 1, device=device, dtype=torch.float32)
        a = math.pi * u[:, None] * j  # normalised time, periods 2/j of the clip
        b = math.pi * (k[:, None] / self.config.max_frames) * j  # absolute frame index
        feats = [a.sin(), a.cos(), b.sin(), b.cos(), u[:, None], (k / self.config.max_frames)[:, None]]
        return torch.cat(feats, dim=1).to(dtype)  # (F, n_time)

    def forward(self, text_tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        want = (self.config.text_length, self.config.dim)
        if text_tokens.ndim != 3 or tuple(text_tokens.shape[1:]) != want:
            raise ValueError(f"text tokens must be (batch, {want[0]}, {want[1]}), got {tuple(text_tokens.shape)}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
        b = text_tokens.shape[0]
        dtype = self.net[0].weight.dtype
        pooled = self.text_features(text_tokens)
        tf = self.time_features(num_frames, text_tokens.device, dtype)
        x = torch.cat([pooled[:, None].expand(b, num_frames, -1), tf[None].expand(b, -1, -1)], dim=-1)
        out = self.net(x)  # (B, F, K*D)
        return out.view(b, num_frames, self.config.num_tokens, self.config.dim).to(text_tokens.dtype)

    def expand(self, text_tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Per-frame encoder states: the text tokens repeated per frame with that frame's tokens appended."""
        b, m, d = text_tokens.shape
        extra = self(text_tokens, num_frames)  # (B, F, K, D)
        rep = text_tokens[:, None].expand(b, num_frames, m, d)
        return torch.cat([rep, extra], dim=2).reshape(b * num_frames, m + self.config.num_tokens, d)
