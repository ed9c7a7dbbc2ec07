"""HARIVO's frame-wise token generators: text tokens `(M, D)` → per-frame tokens `(F, K, D)`.

HARIVO (seed 002) appends `K = 3` generated tokens to the text tokens of every frame, so the image model's
cross-attention, which sees one frame at a time and has no notion of time, receives a frame-specific condition.
That is what a prompt like "moving left to right" needs: the object's place in frame `k` depends on both the
motion words and `k`, and in AnimateDiff only the temporal layers know `k`.

`FrameTokens` is the one type `GuidedAnimateDiffPipeline` accepts (its `frame_tokens` component). Two generators
share it:

- `HarivoFrameTokens`, the paper's generator t_θ (Linear+SiLU → a 1-D convolution over the M token positions to
  F·K outputs → 3 × (Linear+SiLU)). `pipelines/training/` trains this one, and its `final/frame_tokens/` folders load
  into any pipeline (`load_video_parts`, `--video-parts`).
- `FrameTokenGenerator`, the generator of the shipped micro model (`assets/micro/frame_tokens`, trained by
  `pipelines/micro/train.py` before the training package existed). It cannot become a `HarivoFrameTokens`: its
  weights are another architecture (standardised tokens projected in order, time features, an MLP whose last layer
  starts at zero) with no equivalent in the paper's layers, so converting would mean retraining the shipped model.
  It stays, as a `FrameTokens`: a regression into `HarivoFrameTokens` (`scripts/convert_micro_frame_tokens.py`) kept
  the unguided videos but cost guided ones quality, and `micro-harivo` is worse on two tabs' guided defaults
  (`bench/MICRO.md`, `bench/EVALUATE.md`, session 9).

`load_frame_tokens(folder)` reads either from its `config.json` (`_class_name`). Real AnimateDiff weights have no
generator and are unaffected.
"""
from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class FrameTokens(ModelMixin, ConfigMixin):
    """What the pipeline needs of a frame-token generator: config `dim`, `text_length`, `num_tokens`, `max_frames`;
    `forward(text_tokens (B, M, D), num_frames) -> (B, F, K, D)`; `expand` → the UNet's `(B·F, M + K, D)`."""

    def forward(self, text_tokens: torch.Tensor, num_frames: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_fits(self, text_encoder, tokenizer) -> None:
        """ValueError naming the mismatch when these tokens were made for another text encoder or prompt length."""
        cfg = self.config
        hidden = text_encoder.config.hidden_size
        if cfg.dim != hidden:
            raise ValueError(f"frame_tokens dim {cfg.dim} != text encoder hidden size {hidden} "
                             f"(a {type(self).__name__} made for another text encoder)")
        length = getattr(tokenizer, "model_max_length", None)
        if length != cfg.text_length:
            raise ValueError(f"frame_tokens was built for prompts of {cfg.text_length} tokens, the tokenizer pads "
                             f"to {length}")

    def expand(self, text_tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Per-frame encoder states: the text tokens repeated per frame with that frame's tokens appended."""
        b, m, d = text_tokens.shape
        extra = self(text_tokens, num_frames)  # (B, F, K, D)
        rep = text_tokens[:, None].expand(b, num_frames, m, d)
        return torch.cat([rep, extra], dim=2).reshape(b * num_frames, m + self.config.num_tokens, d)


class HarivoFrameTokens(FrameTokens):
    """The paper's frame-wise token generator t_θ: text tokens `(B, M, D)` → `(B, F, K, D)`.

    Deliberate difference from the paper's listing: it makes tokens for up to `max_frames` frames and uses the first
    F (the listing is tied to one F)."""

    @register_to_config
    def __init__(self, dim: int = 768, text_length: int = 77, num_tokens: int = 3, max_frames: int = 24):
        super().__init__()
        lin = lambda: nn.Sequential(nn.Linear(dim, dim), nn.SiLU())  # noqa: E731
        self.layers = nn.Sequential(
            lin(), nn.SiLU(),
            nn.Conv1d(text_length, num_tokens * max_frames, kernel_size=1, bias=False), nn.SiLU(),
            lin(), lin(), lin(),
        )

    def forward(self, text_tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        cfg = self.config
        if text_tokens.ndim != 3 or tuple(text_tokens.shape[1:]) != (cfg.text_length, cfg.dim):
            raise ValueError(f"text tokens must be (batch, {cfg.text_length}, {cfg.dim}), got {tuple(text_tokens.shape)}")
        if not 1 <= num_frames <= cfg.max_frames:
            raise ValueError(f"num_frames must be in 1..{cfg.max_frames} (max_frames of this generator), got {num_frames}")
        dtype = self.layers[0][0].weight.dtype
        out = self.layers(text_tokens.to(dtype))  # (B, max_frames*K, D), row f*K + k
        b = out.shape[0]
        return out[:, : num_frames * cfg.num_tokens].reshape(b, num_frames, cfg.num_tokens, cfg.dim).to(text_tokens.dtype)


class FrameTokenGenerator(FrameTokens):
    """The shipped micro model's generator. `(B, M, D)` text tokens → `(B, F, K, D)` frame tokens.

    Standardises the text tokens per position and feature, projects each token to a few features, keeps them in order
    (word order matters: "left to right" and "right to left" have the same words), adds features of the frame's
    normalised time `u = k / (F − 1)` and of its index, and maps all of it through an MLP whose last layer starts at
    zero. The standardisation statistics are buffers set once from the frozen text encoder before training."""

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


GENERATORS = {c.__name__: c for c in (HarivoFrameTokens, FrameTokenGenerator)}


def load_frame_tokens(folder) -> FrameTokens:
    """A saved generator of either kind (its `config.json` names the class)."""
    import json
    from pathlib import Path

    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{folder} has no frame-token generator (config.json)")
    name = json.loads(cfg.read_text()).get("_class_name")
    if name not in GENERATORS:
        raise ValueError(f"{folder}: unknown frame-token generator {name!r}; expected one of {sorted(GENERATORS)}")
    return GENERATORS[name].from_pretrained(str(folder))


__all__ = ["FrameTokens", "HarivoFrameTokens", "FrameTokenGenerator", "GENERATORS", "load_frame_tokens"]
