"""Style reward: Gram matrices of CLIP ViT tokens (METHODS.md "Rewards / Style")."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import Reward, RewardError, check_frames
from .clip import CLIP_B16, load_clip, to_image_tensor


def gram(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens (f, N, d) -> Gram matrices `FᵀF / N` (f, d, d)."""
    return tokens.transpose(1, 2) @ tokens / tokens.shape[1]


class StyleReward(Reward):
    """`−‖G(frame) − G(reference)‖_F` with `G` the Gram of the hidden tokens after vision block `layer` (CLS dropped).

    `mode="embedding"`: cosine of CLIP image embeddings instead. Frames and reference get the same preprocessing
    (resize to the CLIP image size, bicubic, CLIP mean/std). The reference itself scores the maximum, 0 (gram mode)
    or 1 (embedding mode).
    """

    name = "style"
    differentiable = True
    frame_local = True

    def __init__(self, reference, clip=CLIP_B16, layer: int = 2, mode: str = "gram", device=None, dtype=None):
        if mode not in ("gram", "embedding"):
            raise RewardError(f"style: mode must be 'gram' or 'embedding', got {mode!r}")
        self.clip = load_clip(clip, device=device, dtype=dtype)
        self.mode = mode
        self.layer = int(layer)
        if mode == "gram" and not 0 <= self.layer <= self.clip.num_vision_layers:
            raise RewardError(f"style: layer must be in [0, {self.clip.num_vision_layers}], got {layer}")
        if reference is None:
            raise RewardError("style: a reference style image is required")
        self.reference = to_image_tensor(reference, who="style reference").float().clamp(0, 1)
        self._target = None

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        acc = torch.promote_types(self.clip.dtype, torch.float32)  # fp16 CLIP: fp32 Grams; fp64 CLIP: fp64
        if self.mode == "gram":
            return gram(self.clip.hidden_tokens(frames, self.layer).to(acc))
        return self.clip.encode_images(frames).to(acc)

    @property
    def target(self) -> torch.Tensor:
        acc = torch.promote_types(self.clip.dtype, torch.float32)
        if self._target is None or self._target.device != self.clip.device or self._target.dtype != acc:
            with torch.no_grad():
                self._target = self._features(self.reference[None].to(self.clip.device))[0]
        return self._target

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "style")
        feats = self._features(frames)
        if self.mode == "gram":
            diff = (feats - self.target[None]).flatten(1)
            # sqrt(Σd² + ε) − sqrt(ε): finite gradient at the reference itself (‖·‖ has none at 0), and exactly 0 there
            eps = 1e-12
            return -(torch.sqrt((diff * diff).sum(-1) + eps) - eps ** 0.5).to(frames.dtype)
        return (feats * self.target[None]).sum(-1).to(frames.dtype)

    def to(self, device=None, dtype=None):
        self.clip.to(device=device, dtype=dtype)
        self.reference = self.reference.to(device=device, dtype=dtype)
        self._target = None
        _ = self.target  # computed once on the new device (not on the first guided step)
        return self

    def __repr__(self):
        return f"StyleReward(mode={self.mode!r}, layer={self.layer}, clip={self.clip.name!r})"
