"""Aesthetic reward: the LAION "improved aesthetic predictor" MLP on normalised CLIP ViT-L/14 embeddings.

The head (768 → 1024 → 128 → 64 → 16 → 1, dropouts between, no activations, as the public
`christophschuhmann/improved-aesthetic-predictor` `MLP`; state-dict keys `layers.{0,2,4,6,7}.{weight,bias}`)
predicts a 1–10 score. Its weights (`sac+logos+ava1-l14-linearMSE.pth`) are not downloaded by this project:
pass a local `.pth`/`.safetensors` path as `head=` or set `GVS_AESTHETIC_HEAD`. `head=None` with
`allow_random_head=True` gives a random head (tests only).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from .base import Reward, RewardError, check_frames
from .clip import CLIP_L14, load_clip


class AestheticHead(nn.Module):
    """LAION improved-aesthetic-predictor MLP (keys match its published state dict)."""

    def __init__(self, input_size: int = 768):
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_state_dict_file(path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise RewardError(f"aesthetic: head weights not found at {str(path)!r} (a .pth or .safetensors state dict)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RewardError(f"aesthetic: cannot read head weights {str(path)!r}: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise RewardError(f"aesthetic: {str(path)!r} does not hold a state dict")
    return sd


def load_aesthetic_head(path, input_size: Optional[int] = None) -> AestheticHead:
    sd = load_state_dict_file(path)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    w0 = sd.get("layers.0.weight")
    if w0 is None:
        raise RewardError(f"aesthetic: {str(path)!r} is not an aesthetic-predictor state dict (no 'layers.0.weight')")
    head = AestheticHead(int(w0.shape[1]) if input_size is None else input_size)
    try:
        head.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise RewardError(f"aesthetic: head weights {str(path)!r} do not match the MLP: {exc}") from exc
    return head


class AestheticReward(Reward):
    """Predicted aesthetic score (about 1–10) of each frame; higher is better."""

    name = "aesthetic"
    differentiable = True
    frame_local = True

    def __init__(self, clip=CLIP_L14, head=None, device=None, dtype=None, allow_random_head: bool = False):
        self.clip = load_clip(clip, device=device, dtype=dtype)
        head = head if head is not None else os.environ.get("GVS_AESTHETIC_HEAD")
        if isinstance(head, nn.Module):
            self.head = head
        elif head is not None:
            self.head = load_aesthetic_head(head)
        elif allow_random_head:
            proj = int(self.clip.model.config.projection_dim)
            self.head = AestheticHead(proj)
        else:
            raise RewardError(
                "aesthetic: no head weights: pass head=<path to sac+logos+ava1-l14-linearMSE.pth or .safetensors> "
                "or set GVS_AESTHETIC_HEAD"
            )
        self.head.eval().to(self.clip.device)
        for p in self.head.parameters():
            p.requires_grad_(False)
        in_size = getattr(self.head, "input_size", None)
        proj = int(self.clip.model.config.projection_dim)
        if in_size is not None and in_size != proj:
            raise RewardError(f"aesthetic: head expects {in_size}-d embeddings, CLIP {self.clip.name!r} gives {proj}")

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "aesthetic")
        emb = self.clip.encode_images(frames)
        head_dtype = next(self.head.parameters()).dtype
        return self.head(emb.to(head_dtype))[:, 0].to(frames.dtype)

    def to(self, device=None, dtype=None):
        self.clip.to(device=device, dtype=dtype)
        self.head.to(device=device, dtype=dtype)
        return self
