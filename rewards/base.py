"""The one reward protocol every guidance method, metric and ensemble uses.

A reward takes decoded frames `(f, 3, H, W)` with values in [0, 1] and returns one reward per frame `(f,)`,
**higher is better** (a loss is always `-R`). Video-level rewards (audio-video similarity, an LVLM judge, AV-sync)
return their single value repeated on every frame, so the mean over frames is the video's reward and the sum is the
objective `J` the guidance methods maximise (they normalise gradient scale, so the factor f does not matter).

`frame_indices` tells a reward which frames of the full video it is looking at (Free²Guide decodes only key frames,
the TITAN direct guess only a sampled subset); `num_frames` is the full video's length.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch


class RewardError(ValueError):
    """A reward cannot be built or evaluated (bad reference input, missing weights, bad endpoint)."""


class ModelWrapper:
    """A model held by a reward that is not itself an `nn.Module` (e.g. `rewards.clip.ClipModel`): its weights are
    the module `self.model`, and `to(device, dtype)` moves them (and drops whatever it cached for the old placement).
    A reward moves the wrappers it holds with itself and lists their tensors in `placement`."""

    model: torch.nn.Module

    def to(self, device=None, dtype=None) -> "ModelWrapper":
        self.model.to(device=device, dtype=dtype)
        return self


class Reward:
    name: str = "reward"
    #: True when `__call__` is differentiable w.r.t. the frames (gradient methods need it).
    differentiable: bool = True
    #: True when the reward of frame k depends only on frame k (TITAN `per_frame` assumes it).
    frame_local: bool = True

    def __call__(
        self,
        frames: torch.Tensor,
        frame_indices: Optional[Sequence[int]] = None,
        num_frames: Optional[int] = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def required_frames(self, num_frames: int) -> Optional[list[int]]:
        """Frames that must be among any decoded subset for the reward to be informative (None: any subset)."""
        return None

    def score_candidates(
        self,
        candidates: Sequence[torch.Tensor],
        frame_indices: Optional[Sequence[int]] = None,
        num_frames: Optional[int] = None,
    ) -> torch.Tensor:
        """One score per candidate video `(n,)`, higher is better (Free²Guide selection).

        The default is each candidate's mean reward; ensembles override it with rank-based combinations
        (normalised sum, Borda consensus) that only make sense across the candidate set.
        """
        with torch.no_grad():
            return torch.stack([self(c, frame_indices, num_frames).float().mean() for c in candidates])

    def to(self, device=None, dtype=None) -> "Reward":
        """Move the reward's models and reference tensors (floating ones also to `dtype`); returns self.

        The default walks the reward's attributes (modules, `ClipModel`s, tensors, member rewards, lists of them);
        rewards with cached derived tensors override it and reset their caches."""
        for name, value in list(vars(self).items()):
            vars(self)[name] = _move(value, device, dtype)
        return self

    def placement(self) -> list[tuple[str, torch.Tensor]]:
        """Every parameter, buffer and reference tensor the reward computes with, as (name, tensor) pairs (the
        device/dtype checks use it: all of them should sit on the pipeline's device and dtype)."""
        return list(_walk(self, type(self).__name__))

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}(name={self.name!r})"


def _move(value, device, dtype):
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else None)
    if isinstance(value, (torch.nn.Module, ModelWrapper, Reward)):
        value.to(device=device, dtype=dtype)
        return value
    if isinstance(value, list):
        return [_move(v, device, dtype) for v in value]
    if isinstance(value, tuple) and any(isinstance(v, (torch.Tensor, torch.nn.Module, Reward)) for v in value):
        return tuple(_move(v, device, dtype) for v in value)
    return value


def _walk(obj, prefix: str, seen=None):
    """(name, tensor) for every tensor reachable from a reward's attributes (modules, model wrappers such as
    ClipModel, nested rewards)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, torch.nn.Module):
        for n, t in obj.named_parameters():
            yield f"{prefix}.{n}", t
        for n, t in obj.named_buffers():
            yield f"{prefix}.{n}", t
    elif isinstance(obj, ModelWrapper):
        yield from _walk(obj.model, f"{prefix}.model", seen)
    elif isinstance(obj, (list, tuple)):
        for k, v in enumerate(obj):
            yield from _walk(v, f"{prefix}[{k}]", seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}[{k!r}]", seen)
    elif isinstance(obj, Reward):
        for k, v in vars(obj).items():
            yield from _walk(v, f"{prefix}.{k}", seen)


def check_frames(frames: torch.Tensor, who: str = "reward") -> torch.Tensor:
    """Validate the protocol's input: a float tensor (f, 3, H, W)."""
    if not isinstance(frames, torch.Tensor):
        raise RewardError(f"{who}: frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise RewardError(f"{who}: frames must have shape (f, 3, H, W), got {tuple(frames.shape)}")
    if frames.shape[0] == 0:
        raise RewardError(f"{who}: no frames given")
    if not frames.is_floating_point():
        raise RewardError(f"{who}: frames must be floating point in [0, 1], got {frames.dtype}")
    return frames


def broadcast_video_reward(value: torch.Tensor, num: int) -> torch.Tensor:
    """Repeat a scalar video-level reward over `num` frames (keeps the autograd / forward-AD graph)."""
    return value.reshape(1).expand(num)
