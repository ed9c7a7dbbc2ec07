"""HARIVO's frame-wise token generator: text tokens `(M, D)` → per-frame tokens `(F, K, D)`.

HARIVO (seed 002) appends `K = 3` generated tokens to the text tokens of every frame, so the image model's
cross-attention, which sees one frame at a time and has no notion of time, receives a frame-specific condition.
That is what a prompt like "moving left to right" needs: the object's place in frame `k` depends on both the
motion words and `k`, and in AnimateDiff only the temporal layers know `k`.

`FrameTokens` is the one type `GuidedAnimateDiffPipeline` accepts (its `frame_tokens` component), and
`HarivoFrameTokens`, the paper's generator t_θ (Linear+SiLU → a 1-D convolution over the M token positions to F·K
outputs → 3 × (Linear+SiLU)), is the one frame-token class: `pipelines/training/` trains it (its
`final/frame_tokens/` folders load into any pipeline: `load_video_parts`, `--video-parts`), the micro stages' joint
stage trains it (`--frame-tokens 3`, `pipelines/training/micro_stages.py`), and the shipped micro model carries one
(`assets/micro/frame_tokens`).

History (issue #18): the micro model used to ship a `FrameTokenGenerator`, another architecture (standardised tokens
projected in order, time features, an MLP). `scripts/convert_micro_frame_tokens.py` fitted a `HarivoFrameTokens` to
its outputs on every world caption at 8, 12 and 16 frames; the fit is loose (relative error 0.49: the paper's last
SiLU cannot go below −0.28, where 29 % of the old values lie) but the videos stay the same (bench/MICRO.md, "One
frame-token class"). `load_frame_tokens` (and the micro loader) reject a folder of the old format with an error that
names that script.

`load_frame_tokens(folder)` reads a saved generator from its `config.json` (`_class_name`). Real AnimateDiff weights
have no generator and are unaffected.
"""
from __future__ import annotations

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


GENERATORS = {c.__name__: c for c in (HarivoFrameTokens,)}

#: The class of the micro model's frame tokens before issue #18 (another architecture, no longer loadable).
OLD_GENERATOR = "FrameTokenGenerator"
CONVERSION_SCRIPT = "scripts/convert_micro_frame_tokens.py"


def old_format_error(folder) -> str | None:
    """The error for a frame-token folder saved in the old micro `FrameTokenGenerator` format; None otherwise."""
    import json
    from pathlib import Path

    cfg = Path(folder) / "config.json"
    try:
        name = json.loads(cfg.read_text()).get("_class_name") if cfg.is_file() else None
    except (OSError, ValueError):
        return None
    if name != OLD_GENERATOR:
        return None
    return (f"{folder}: frame tokens of the old {OLD_GENERATOR} format, which pipelines/ no longer reads (the one "
            f"frame-token class is HarivoFrameTokens); convert them with `python {CONVERSION_SCRIPT} --old-folder "
            f"{folder} --out NEW_FOLDER`")


def load_frame_tokens(folder) -> FrameTokens:
    """A saved `HarivoFrameTokens` (its `config.json` names the class); a clear ValueError for the old micro
    `FrameTokenGenerator` format, naming the script that converts it."""
    import json
    from pathlib import Path

    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{folder} has no frame-token generator (config.json)")
    old = old_format_error(folder)
    if old:
        raise ValueError(old)
    name = json.loads(cfg.read_text()).get("_class_name")
    if name not in GENERATORS:
        raise ValueError(f"{folder}: unknown frame-token generator {name!r}; expected one of {sorted(GENERATORS)}")
    return GENERATORS[name].from_pretrained(str(folder))


__all__ = ["FrameTokens", "HarivoFrameTokens", "GENERATORS", "load_frame_tokens", "old_format_error"]
