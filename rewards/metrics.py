"""Evaluation metrics (METHODS.md "Metrics"); plain floats, computed without gradients.

- `clip_sim`: mean CLIP cosine between the prompt and each frame.
- `frame_consistency`: mean CLIP cosine between consecutive frames.
- `style_score`: mean Gram distance (lower is closer) to the reference, measured with a *different* CLIP
  (ViT-B/32 by default) than the guiding one (ViT-B/16), so a method cannot score well by overfitting its reward.
- `av_align`: AV-Align IoU between audio onsets and video motion peaks. Stand-in for optical flow: the motion
  magnitude of transition k is `mean |frame_{k+1} − frame_k|` (no flow network here); peaks of that curve are
  placed at frame k+1's time. A match is an audio onset with a video peak within ±1/fps.
  IoU = matches / (onsets + peaks − matches); no onsets and no peaks -> 0.
- `imagebind_score`: the ImageBind audio–video cosine.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .base import RewardError, check_frames
from .clip import CLIP_B16, CLIP_B32, load_clip, to_image_tensor


@torch.no_grad()
def clip_sim(frames: torch.Tensor, prompt: str, clip=CLIP_B16) -> float:
    from .text import TextAlignmentReward

    return float(TextAlignmentReward(prompt, clip=clip)(frames).float().mean())


@torch.no_grad()
def frame_consistency(frames: torch.Tensor, clip=CLIP_B16) -> float:
    check_frames(frames, "frame_consistency")
    if frames.shape[0] < 2:
        raise RewardError("frame_consistency: needs at least 2 frames")
    e = load_clip(clip).encode_images(frames).float()
    return float((e[1:] * e[:-1]).sum(-1).mean())


@torch.no_grad()
def style_score(frames: torch.Tensor, reference, clip=CLIP_B32, layer: int = 2, guiding_clip=None) -> float:
    """Mean `‖G(frame) − G(ref)‖_F` (lower is better) with `clip` (refuses the guiding CLIP itself)."""
    from .style import StyleReward

    c = load_clip(clip)
    if guiding_clip is not None and load_clip(guiding_clip) is c:
        raise RewardError("style_score: evaluate with a different CLIP than the guiding one (default ViT-B/32)")
    return float(-StyleReward(to_image_tensor(reference, "style reference"), clip=c, layer=layer)(frames).float().mean())


def peak_pick(x: np.ndarray, pre_max: int = 3, post_max: int = 1, pre_avg: int = 10, post_avg: int = 10,
              delta: float = 0.07, wait: int = 3) -> np.ndarray:
    """librosa-style peak picking on a curve normalised to [0, 1] (defaults: librosa onset_detect at 100 Hz)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or x.max() <= 0:
        return np.zeros(0, dtype=int)
    x = x / x.max()
    peaks, last = [], -np.inf
    n = x.size
    for i in range(n):
        lo, hi = max(0, i - pre_max), min(n, i + post_max + 1)
        if x[i] < x[lo:hi].max():
            continue
        alo, ahi = max(0, i - pre_avg), min(n, i + post_avg + 1)
        if x[i] < x[alo:ahi].mean() + delta:
            continue
        if i - last <= wait:
            continue
        peaks.append(i)
        last = i
    return np.asarray(peaks, dtype=int)


def audio_onset_times(waveform, sr: int) -> np.ndarray:
    from .audio import SAMPLE_RATE, onset_envelope

    env = onset_envelope(waveform, sr)
    return (peak_pick(env) * 160 + 200) / SAMPLE_RATE


def video_peak_times(frames: torch.Tensor, fps: float) -> np.ndarray:
    from scipy.signal import find_peaks

    from .audio import motion_energy

    m = motion_energy(frames.detach().float()).cpu().numpy()
    if m.size == 0 or m.max() <= 0:
        return np.zeros(0)
    # pad with zeros so a maximum on the first / last transition counts; threshold: above the mean
    idx, _ = find_peaks(np.concatenate([[0.0], m, [0.0]]), height=float(m.mean()))
    return idx / float(fps)  # padded index i is transition i-1, placed at frame i's time


def av_align_iou(audio_times: Sequence[float], video_times: Sequence[float], fps: float) -> float:
    a, v = np.asarray(audio_times, float), np.asarray(video_times, float)
    if a.size == 0 and v.size == 0:
        return 0.0
    tol = 1.0 / fps + 1e-9
    hits = int(sum(np.any(np.abs(v - t) <= tol) for t in a)) if v.size else 0
    return hits / (a.size + v.size - hits)


@torch.no_grad()
def av_align(frames: torch.Tensor, waveform, sr: int, fps: float) -> float:
    check_frames(frames, "av_align")
    if fps <= 0:
        raise RewardError(f"av_align: fps must be positive, got {fps}")
    duration = frames.shape[0] / fps
    onsets = audio_onset_times(waveform, sr)
    onsets = onsets[onsets < duration]
    return av_align_iou(onsets, video_peak_times(frames, fps), fps)


@torch.no_grad()
def imagebind_score(frames: torch.Tensor, waveform, sr: int, model=None, checkpoint=None) -> float:
    from .audio import ImageBindReward

    return float(ImageBindReward(waveform, sr, model=model, checkpoint=checkpoint)(frames).float().mean())
