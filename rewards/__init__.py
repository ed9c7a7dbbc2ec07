"""Reward models behind one protocol (see `rewards.base.Reward`), ensembles and evaluation metrics.

Importing `rewards` is cheap: the reward classes are imported on first attribute access and no model is loaded
until a reward is built.
"""
from importlib import import_module

from .base import Reward, RewardError, broadcast_video_reward, check_frames

_LAZY = {
    "load_clip": "clip",
    "ClipModel": "clip",
    "StyleReward": "style",
    "TextAlignmentReward": "text",
    "AestheticReward": "aesthetic",
    "kaldi_fbank": "audio",
    "imagebind_audio_clips": "audio",
    "ImageBindReward": "audio",
    "AVSyncReward": "audio",
    "ImageBindModel": "imagebind",
    "load_imagebind": "imagebind",
    "InterpolationReward": "interpolation",
    "LVLMJudge": "lvlm",
    "EnsembleReward": "ensemble",
    "weighted_sum": "ensemble",
    "normalized_sum": "ensemble",
    "borda": "ensemble",
    "clip_sim": "metrics",
    "frame_consistency": "metrics",
    "style_score": "metrics",
    "av_align": "metrics",
    "imagebind_score": "metrics",
}

__all__ = ["Reward", "RewardError", "broadcast_video_reward", "check_frames", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
