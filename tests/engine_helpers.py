"""Shared helpers for the engine tests: tiny pipelines and a simple differentiable reward."""
from __future__ import annotations

import functools

import torch

from rewards.base import Reward


@functools.lru_cache(maxsize=None)
def tiny_pipe(dtype: str = "float32"):
    from pipelines import GuidedAnimateDiffPipeline
    from pipelines.testing import tiny_components

    pipe = GuidedAnimateDiffPipeline(**tiny_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(getattr(torch, dtype))


class TargetReward(Reward):
    """R(frame k) = −mean((frame − target_k)²): differentiable, frame-local."""

    name = "target"

    def __init__(self, target: torch.Tensor):
        self.target = target

    def __call__(self, frames, frame_indices=None, num_frames=None):
        t = self.target if frame_indices is None else self.target[list(frame_indices)]
        return -((frames - t.to(frames)) ** 2).mean(dim=(1, 2, 3))


def make_denoiser(pipe, num_frames=8, steps=10, reward=None, prompt="a red circle", cfg=7.5, mg_scale=0.0, seed=0):
    from pipelines.sampler import Denoiser

    cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, cfg > 1, None)
    cond = cond.repeat_interleave(num_frames, 0)
    uncond = uncond.repeat_interleave(num_frames, 0) if uncond is not None else None
    pipe.scheduler.set_timesteps(steps)
    return Denoiser(pipe, cond, uncond, num_frames, cfg, 1.0, torch.Generator().manual_seed(seed),
                    pipe.scheduler.timesteps, mg_scale=mg_scale, reward=reward)
