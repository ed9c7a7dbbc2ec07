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

For real weights (`evaluate --preset animatediff`), `real_metrics(frames, prompt=, style_image=, audio=,
reference_videos=, config=MetricsConfig(...))` computes every metric its inputs allow with evaluators that differ
from the guiding models: CLIP-SIM and frame consistency with CLIP ViT-L/14, the style score with ViT-B/32, AV-Align
on Farnebäck optical flow (OpenCV, the optional extra `metrics`), ImageBind where a checkpoint is given, and FVD
with a user-supplied I3D state dict (`rewards.i3d`). Whatever cannot be computed is listed under "skipped" with
the reason, never silently missing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .base import RewardError, check_frames
from .clip import CLIP_B16, CLIP_B32, CLIP_L14, ClipModel, load_clip, to_image_tensor


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


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise RewardError(
            "av_align: optical flow needs OpenCV; install the optional extra: pip install 'guided-video-studio[metrics]' "
            "(or pip install opencv-python-headless)"
        ) from exc
    return cv2


def flow_magnitudes(frames: torch.Tensor) -> np.ndarray:
    """Mean Farnebäck optical-flow magnitude (pixels per frame) of each transition k -> k+1, (f − 1,).

    Frames (f, 3, H, W) in [0, 1] -> 8-bit grey; OpenCV's Farnebäck with its documented example parameters
    (pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2)."""
    cv2 = _cv2()
    check_frames(frames, "optical flow")
    rgb = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in rgb]
    mags = []
    for a, b in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(float(np.sqrt((flow.astype(np.float64) ** 2).sum(-1)).mean()))
    return np.asarray(mags, dtype=np.float64)


def motion_peak_times(curve: np.ndarray, fps: float) -> np.ndarray:
    """Times of the peaks of a per-transition motion curve (f − 1,): local maxima above the curve's mean; the
    peak of transition k -> k+1 is placed at frame k+1's time."""
    from scipy.signal import find_peaks

    m = np.asarray(curve, dtype=np.float64)
    if m.size == 0 or m.max() <= 0:
        return np.zeros(0)
    # pad with zeros so a maximum on the first / last transition counts; threshold: above the mean
    idx, _ = find_peaks(np.concatenate([[0.0], m, [0.0]]), height=float(m.mean()))
    return idx / float(fps)  # padded index i is transition i-1, placed at frame i's time


def video_peak_times(frames: torch.Tensor, fps: float, motion: str = "diff") -> np.ndarray:
    """Peak times of the video's motion: `motion="diff"` (mean absolute frame difference, weight-free, no extra
    dependency) or `"flow"` (mean Farnebäck optical-flow magnitude, as AV-Align defines it)."""
    from .audio import motion_energy

    if motion == "flow":
        curve = flow_magnitudes(frames)
    elif motion == "diff":
        curve = motion_energy(frames.detach().float()).cpu().numpy()
    else:
        raise RewardError(f"av_align: motion must be 'diff' or 'flow', got {motion!r}")
    return motion_peak_times(curve, fps)


def av_align_iou(audio_times: Sequence[float], video_times: Sequence[float], fps: float) -> float:
    a, v = np.asarray(audio_times, float), np.asarray(video_times, float)
    if a.size == 0 and v.size == 0:
        return 0.0
    tol = 1.0 / fps + 1e-9
    hits = int(sum(np.any(np.abs(v - t) <= tol) for t in a)) if v.size else 0
    return hits / (a.size + v.size - hits)


@torch.no_grad()
def av_align(frames: torch.Tensor, waveform, sr: int, fps: float, motion: str = "diff") -> float:
    """AV-Align IoU; `motion="flow"` uses optical flow (the metric's definition), "diff" the weight-free stand-in."""
    check_frames(frames, "av_align")
    if fps <= 0:
        raise RewardError(f"av_align: fps must be positive, got {fps}")
    duration = frames.shape[0] / fps
    onsets = audio_onset_times(waveform, sr)
    onsets = onsets[onsets < duration]
    return av_align_iou(onsets, video_peak_times(frames, fps, motion), fps)


@torch.no_grad()
def imagebind_score(frames: torch.Tensor, waveform, sr: int, model=None, checkpoint=None) -> float:
    from .audio import ImageBindReward

    return float(ImageBindReward(waveform, sr, model=model, checkpoint=checkpoint)(frames).float().mean())


# ---------------------------------------------------------------------------------------------------------------
# One entry point for real weights
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class MetricsConfig:
    """Evaluators for `real_metrics`. Models are hub ids / paths (loaded once, cached) or objects built in code.

    - `clip`: CLIP for CLIP-SIM and frame consistency (default ViT-L/14, not the guiding ViT-B/16).
    - `style_clip`, `style_layer`: the style score's CLIP (default ViT-B/32) and block.
    - `guiding_clip`: the CLIP the guidance used; refused as an evaluator (None: no check).
    - `fps`: frame rate of the videos (AV-Align's tolerance is ±1/fps).
    - `motion`: "flow" (Farnebäck optical flow, needs OpenCV) or "diff" (frame differences) for AV-Align.
    - `imagebind`: an `ImageBindModel` or the path of imagebind_huge.pth; None -> env IMAGEBIND_CKPT, else skipped.
    - `i3d`: an `InceptionI3d` or the path of an I3D state dict; None -> env GVS_I3D_WEIGHTS, else FVD skipped.
    - `i3d_size`: I3D input size (224 for the Kinetics weights).
    """

    clip: Any = CLIP_L14
    style_clip: Any = CLIP_B32
    style_layer: int = 2
    guiding_clip: Any = CLIP_B16
    fps: float = 8.0
    motion: str = "flow"
    imagebind: Any = None
    i3d: Any = None
    i3d_size: int = 224
    device: Any = None
    dtype: Any = None


def _clip_name(c) -> Optional[str]:
    if isinstance(c, (str, os.PathLike)):
        return str(c)
    return None


def _same_clip(a, b) -> bool:
    """True when `a` and `b` name or are the same CLIP (compared by name for ids, never loading one to compare)."""
    if a is None or b is None:
        return False
    na, nb = _clip_name(a), _clip_name(b)
    if na is not None and nb is not None:
        return na.rstrip("/") == nb.rstrip("/")
    if na is None and nb is None:
        return load_clip(a).model is load_clip(b).model
    obj, name = (a, nb) if na is None else (b, na)
    return isinstance(obj, ClipModel) and obj.name == name


_MODEL_CACHE: dict = {}


def _cached(kind: str, path, loader):
    key = (kind, str(path))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = loader(path)
    return _MODEL_CACHE[key]


def _as_videos(frames, who: str) -> torch.Tensor:
    if isinstance(frames, (list, tuple)):
        frames = torch.stack([torch.as_tensor(f) for f in frames])
    if not isinstance(frames, torch.Tensor):
        raise RewardError(f"{who}: expected a tensor (f, 3, H, W) or (b, f, 3, H, W), got {type(frames).__name__}")
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[1] == 0:
        raise RewardError(f"{who}: expected shape (f, 3, H, W) or (b, f, 3, H, W), got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise RewardError(f"{who}: frames must be floating point in [0, 1], got {frames.dtype}")
    return frames


@torch.no_grad()
def real_metrics(frames, *, prompt: Optional[str] = None, style_image=None, audio=None, reference_videos=None,
                 config: Optional[MetricsConfig] = None) -> dict:
    """Every metric of METHODS.md "Metrics" that the inputs allow, as plain floats.

    `frames`: one video (f, 3, H, W) or a set (b, f, 3, H, W), values in [0, 1]; per-video metrics are averaged
    over the set. `prompt` -> "clip_sim"; always (f >= 2) "frame_consistency"; `style_image` -> "style_score"
    (Gram distance, lower is closer); `audio=(waveform, sample_rate)` -> "av_align" and "imagebind";
    `reference_videos` (a set, >= 2 videos, any frame size) -> "fvd" of the set `frames` against them (needs >= 2
    generated videos too). Returns ``{metric: value, ..., "skipped": {metric: reason}}``.
    """
    cfg = config or MetricsConfig()
    videos = _as_videos(frames, "real_metrics")
    out: dict = {}
    skipped: dict = {}
    f = videos.shape[1]

    def clip_model(c, role):
        if _same_clip(c, cfg.guiding_clip):
            raise RewardError(f"real_metrics: the {role} must use a different CLIP than the guiding one "
                              f"({_clip_name(cfg.guiding_clip) or 'the same model object'})")
        return load_clip(c, device=cfg.device, dtype=cfg.dtype)

    if prompt is not None or f >= 2:
        clip = clip_model(cfg.clip, "CLIP-SIM / frame consistency")
        if prompt is not None:
            if not isinstance(prompt, str) or not prompt.strip():
                raise RewardError("real_metrics: prompt must be a non-empty string")
            out["clip_sim"] = float(np.mean([clip_sim(v, prompt, clip=clip) for v in videos]))
        else:
            skipped["clip_sim"] = "no prompt"
        if f >= 2:
            out["frame_consistency"] = float(np.mean([frame_consistency(v, clip=clip) for v in videos]))
    if f < 2:
        skipped["frame_consistency"] = "needs at least 2 frames"

    if style_image is not None:
        sclip = clip_model(cfg.style_clip, "style score")
        out["style_score"] = float(np.mean([style_score(v, style_image, clip=sclip, layer=cfg.style_layer)
                                            for v in videos]))
    else:
        skipped["style_score"] = "no style image"

    if audio is not None:
        if not (isinstance(audio, (tuple, list)) and len(audio) == 2):
            raise RewardError("real_metrics: audio must be a (waveform, sample_rate) pair")
        wav, sr = audio
        out["av_align"] = float(np.mean([av_align(v, wav, int(sr), cfg.fps, motion=cfg.motion) for v in videos]))
        ib = cfg.imagebind if cfg.imagebind is not None else os.environ.get("IMAGEBIND_CKPT")
        if ib is None:
            skipped["imagebind"] = "no ImageBind checkpoint (MetricsConfig.imagebind or IMAGEBIND_CKPT)"
        else:
            if isinstance(ib, (str, os.PathLike)):
                from .imagebind import load_imagebind

                ib = _cached("imagebind", ib, lambda p: load_imagebind(p, device=cfg.device, dtype=cfg.dtype))
            out["imagebind"] = float(np.mean([imagebind_score(v, wav, int(sr), model=ib) for v in videos]))
    else:
        skipped["av_align"] = skipped["imagebind"] = "no audio"

    if reference_videos is not None:
        i3d = cfg.i3d if cfg.i3d is not None else os.environ.get("GVS_I3D_WEIGHTS")
        if i3d is None:
            skipped["fvd"] = "no I3D weights (MetricsConfig.i3d or GVS_I3D_WEIGHTS)"
        elif videos.shape[0] < 2:
            skipped["fvd"] = "needs at least 2 generated videos"
        else:
            from .i3d import fvd_from_features, i3d_features, load_i3d

            if isinstance(i3d, (str, os.PathLike)):
                i3d = _cached("i3d", i3d, lambda p: load_i3d(p, device=cfg.device))
            refs = reference_videos
            if isinstance(refs, torch.Tensor) and refs.ndim == 4:
                refs = refs[None]
            from .i3d import fvd_check

            fa, fb = i3d_features(i3d, videos, cfg.i3d_size), i3d_features(i3d, list(refs), cfg.i3d_size)
            out["fvd"] = fvd_from_features(fa, fb)
            out["fvd_reliable"], out["fvd_note"] = fvd_check(fa.shape[0], fb.shape[0], fa.shape[1])
    else:
        skipped["fvd"] = "no reference videos"
    out["skipped"] = skipped
    return out
