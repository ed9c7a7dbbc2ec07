"""Text alignment reward: cosine of CLIP image and text embeddings, per frame."""
from __future__ import annotations

from typing import Optional, Sequence


from .base import Reward, RewardError, check_frames
from .clip import CLIP_B16, load_clip


class TextAlignmentReward(Reward):
    name = "text"
    differentiable = True
    frame_local = True

    def __init__(self, prompt: str, clip=CLIP_B16, device=None, dtype=None):
        if not isinstance(prompt, str) or not prompt.strip():
            raise RewardError("text: prompt must be a non-empty string")
        self.prompt = prompt
        self.clip = load_clip(clip, device=device, dtype=dtype)
        if self.clip.tokenizer is None:
            raise RewardError(f"text: CLIP {self.clip.name!r} has no tokenizer")

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "text")
        img = self.clip.encode_images(frames).float()
        txt = self.clip.encode_text([self.prompt]).float()
        return (img @ txt[0]).to(frames.dtype)

    def to(self, device=None, dtype=None):
        self.clip.to(device=device, dtype=dtype)
        return self

    def __repr__(self):
        return f"TextAlignmentReward(prompt={self.prompt!r}, clip={self.clip.name!r})"
