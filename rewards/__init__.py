"""Reward models behind one protocol (see `rewards.base.Reward`), ensembles and evaluation metrics."""
from .base import Reward, RewardError, broadcast_video_reward, check_frames

__all__ = ["Reward", "RewardError", "broadcast_video_reward", "check_frames"]
