"""Frame interpolation reward: match the known frames (first and last by default)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .base import Reward, RewardError, check_frames


class InterpolationReward(Reward):
    """`−mean((frame − known)²)` on the known frames, 0 on every other frame.

    `known`: (k, 3, H, W) in [0, 1]; `indices`: the video frame index of each known frame (negative counts from the
    end, so the default `[0, -1]` is first and last). Known frames of another resolution are resized (bilinear) to
    the frames' resolution. Works on any decoded subset: `frame_indices` maps the given frames to video indices.
    """

    name = "interpolation"
    differentiable = True
    frame_local = True

    def __init__(self, known: torch.Tensor, indices: Optional[Sequence[int]] = None):
        if not isinstance(known, torch.Tensor):
            raise RewardError(f"interpolation: known frames must be a tensor (k, 3, H, W), got {type(known).__name__}")
        if known.ndim == 3:
            known = known[None]
        if known.ndim != 4 or known.shape[1] != 3 or known.shape[0] == 0:
            raise RewardError(f"interpolation: known frames must have shape (k, 3, H, W), got {tuple(known.shape)}")
        if indices is None:
            indices = [0, -1] if known.shape[0] == 2 else ([0] if known.shape[0] == 1 else None)
            if indices is None:
                raise RewardError(f"interpolation: give indices for {known.shape[0]} known frames")
        indices = [int(i) for i in indices]
        if len(indices) != known.shape[0]:
            raise RewardError(f"interpolation: {len(indices)} indices for {known.shape[0]} known frames")
        self.known = known.detach().float() if not known.is_floating_point() else known.detach()
        self.indices = indices

    def resolve(self, num_frames: int) -> list[int]:
        out = []
        for i in self.indices:
            j = i + num_frames if i < 0 else i
            if not 0 <= j < num_frames:
                raise RewardError(f"interpolation: known frame index {i} is outside a {num_frames}-frame video")
            out.append(j)
        if len(set(out)) != len(out):
            raise RewardError(f"interpolation: known frame indices {self.indices} collide for {num_frames} frames")
        return out

    def required_frames(self, num_frames: int) -> Optional[list[int]]:
        return sorted(self.resolve(num_frames))

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "interpolation")
        f = frames.shape[0]
        idx = list(range(f)) if frame_indices is None else [int(i) for i in frame_indices]
        if len(idx) != f:
            raise RewardError(f"interpolation: frame_indices has {len(idx)} entries for {f} frames")
        n = num_frames if num_frames is not None else (f if frame_indices is None else max(idx) + 1)
        pos = {j: k for k, j in enumerate(self.resolve(n))}
        known = self.known.to(frames.device, frames.dtype)
        if known.shape[-2:] != frames.shape[-2:]:
            known = F.interpolate(known, size=frames.shape[-2:], mode="bilinear", align_corners=False, antialias=False)
        out = []
        for p, j in enumerate(idx):
            if j in pos:
                d = frames[p] - known[pos[j]]
                out.append(-(d * d).mean())
            else:
                out.append((frames[p] * 0).sum())  # a zero that stays in the graph
        return torch.stack(out)

    def __repr__(self):
        return f"InterpolationReward(indices={self.indices}, known={tuple(self.known.shape)})"
