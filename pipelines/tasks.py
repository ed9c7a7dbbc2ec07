"""Tasks turn user inputs into rewards and constraints for the guided sampler.

- `t2v`: CLIP text alignment with the prompt.
- `style`: CLIP Gram-matrix style distance to the style image.
- `audio`: audio–video alignment: AV-sync (weight-free onset/motion correlation) or ImageBind, per preset.
- `interpolate`: distance to the given first and last frames (reward), and/or replacement of those latent frames
  by their forward-noised encodings at every step (exact endpoints).
Bad inputs raise `ValueError` with a message naming the input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .sampler import StepHook
from .task_options import DEFAULT_INTERPOLATION_MODE, INTERPOLATION_MODES, T2V_REWARDS, TASKS


@dataclass
class TaskInputs:
    prompt: str = ""
    style_image: Any = None  # PIL image or (3, H, W) tensor in [0, 1]
    audio: Optional[tuple] = None  # (mono float32 waveform, sample rate)
    first_frame: Any = None
    last_frame: Any = None
    interpolation_mode: str = DEFAULT_INTERPOLATION_MODE
    t2v_reward: str = "clip"
    lvlm_policy: Optional[str] = None  # the LVLM judge's policy; None: GVS_LVLM_POLICY, else "score"


@dataclass
class TaskSetup:
    task: str
    reward: Any
    hooks: list = field(default_factory=list)
    notices: list = field(default_factory=list)


def image_tensor(image, size: tuple[int, int], who: str) -> torch.Tensor:
    """PIL image or tensor → (3, H, W) float in [0, 1] at `size` (H, W)."""
    from rewards.clip import to_image_tensor

    try:
        t = to_image_tensor(image, who=who).float()
    except ValueError as e:
        raise ValueError(str(e)) from e
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0]
    return t.clamp(0, 1)


class LatentReplacement(StepHook):
    """Overwrite known latent frames with √ᾱ E(y) + √(1−ᾱ) z after each step (E(y) exactly at the end)."""

    def __init__(self, images: torch.Tensor, indices: list[int]):
        self.images = images  # (k, 3, H, W) in [0, 1]
        self.indices = list(indices)

    def start(self, ctx) -> None:
        vae = ctx.vae
        with torch.no_grad():
            x = (self.images.to(ctx.device, vae.dtype) * 2 - 1)
            enc = vae.encode(x).latent_dist.mean * vae.config.scaling_factor  # (k, c, h, w)
        self.latents = enc.transpose(0, 1)[None].float()  # (1, c, k, h, w)

    def after_step(self, ctx, x_prev, t_prev, i):
        known = self.latents.to(x_prev)
        if t_prev >= 0:
            a = ctx.alpha_bar(t_prev)
            known = a.sqrt() * known + (1 - a).sqrt() * ctx.randn_like(known)
        x_prev = x_prev.clone()
        x_prev[:, :, self.indices] = known
        return x_prev

    def fixed_frames(self, num_frames: int) -> list[int]:
        return [k + num_frames if k < 0 else k for k in self.indices]


class WanKeyReplacement(LatentReplacement):
    """`LatentReplacement` on Wan's latents: each key image is encoded alone, as a one-frame video, by the causal VAE
    (the latent of video frame 0 is exactly that: the encoder sees frame 0 alone), normalised as `WanPipeline`
    normalises its latents; `indices` are latent frames. Noising after each step is the parent's formula in the
    variance-preserving coordinates the hooks see (flow's x_t = (1 − σ)·x0 + σ·ε scaled by
    1/√((1 − σ)² + σ²))."""

    def start(self, ctx) -> None:
        vae = ctx.vae
        cfg = vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1)
        std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1)
        with torch.no_grad():
            encs = []
            for img in self.images:
                x = (img.to(ctx.device, vae.dtype) * 2 - 1)[None, :, None]  # (1, 3, 1, H, W)
                mu = vae.encode(x).latent_dist.mean.float()
                encs.append((mu - mean.to(mu)) / std.to(mu))
        self.latents = torch.cat(encs, dim=2)  # (1, c, k, h, w)


#: Why `replacement` alone cannot run on Wan (the field is `interpolation_mode`).
WAN_REPLACEMENT_REFUSED = (
    "replacement is not available on a Wan preset: Wan's causal VAE puts video frame 0 alone in latent frame 0, "
    "but the last key (video frame n−1 = 4K) shares latent frame K with the 3 video frames before it, so no latent "
    "can be set to the last key alone; use 'both' (latent frame 0 replaced by the first key, the reward guiding "
    "towards both keys) or 'reward'")


def is_wan_preset(preset) -> bool:
    """Whether a preset's pipeline is Wan's (flow matching, causal video VAE)."""
    pipe = getattr(preset, "pipe", None)
    return type(pipe).__name__ == "GuidedWanPipeline" or hasattr(pipe, "transformer") and not hasattr(pipe, "unet")


def text_reward(preset, prompt: str, kind: str = "clip", policy: Optional[str] = None):
    """The t2v task's reward: CLIP, the LVLM judge (configured by GVS_LVLM_* variables), or their ensemble."""
    from rewards.text import TextAlignmentReward

    if kind not in T2V_REWARDS:
        raise ValueError(f"t2v_reward must be one of {', '.join(T2V_REWARDS)}, got {kind!r}")
    device, dtype = _placement(preset)
    if kind == "clip":
        return TextAlignmentReward(prompt, clip=preset.clip, device=device, dtype=dtype)
    from rewards.lvlm import LVLMJudge

    import os

    if not (os.environ.get("GVS_LVLM_URL") or os.environ.get("GVS_LVLM_LOCAL_MODEL")):
        raise ValueError(
            "t2v_reward: the LVLM judge is not configured; set GVS_LVLM_URL (and GVS_LVLM_MODEL, GVS_LVLM_API_KEY) "
            "for an OpenAI-compatible endpoint, or GVS_LVLM_LOCAL_MODEL to a local transformers vision-language model"
        )
    if os.environ.get("GVS_LVLM_URL"):
        judge = LVLMJudge(prompt, backend="openai", policy=policy)
    else:
        judge = LVLMJudge(prompt, backend="transformers", model=os.environ["GVS_LVLM_LOCAL_MODEL"], policy=policy)
    judge.to(device=device)  # a local judge runs on the pipeline's device (it keeps its own dtype)
    if kind == "lvlm":
        return judge
    from rewards.ensemble import EnsembleReward

    mode = kind.split()[-1]
    weights = [0.75, 0.25] if mode == "weighted" else None
    return EnsembleReward([judge, TextAlignmentReward(prompt, clip=preset.clip, device=device, dtype=dtype)],
                          mode=mode, weights=weights)


def _placement(preset):
    """(device, dtype) of the preset's pipeline: every reward model is built there (rewards.base.Reward.to)."""
    if hasattr(preset, "reward_placement"):
        return preset.reward_placement()
    return getattr(preset, "device", None), None


def build_task(preset, task: str, inputs: TaskInputs, num_frames: int, height: int, width: int) -> TaskSetup:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not isinstance(inputs.prompt, str) or not inputs.prompt.strip():
        raise ValueError("prompt: please describe the video (the prompt is empty)")
    notices: list[str] = []
    if task == "t2v":
        return TaskSetup(task, text_reward(preset, inputs.prompt, inputs.t2v_reward, inputs.lvlm_policy))
    if task == "style":
        from rewards.style import StyleReward

        if inputs.style_image is None:
            raise ValueError("style_image: the style reference task needs a style image")
        ref = image_tensor(inputs.style_image, (height, width), "style_image")
        device, dtype = _placement(preset)
        if getattr(preset, "style_reward", "clip-gram") == "patch":  # the micro looks' patch statistics
            from rewards.style import PatchStyleReward

            return TaskSetup(task, PatchStyleReward(ref).to(device, dtype))
        return TaskSetup(task, StyleReward(ref, clip=preset.clip, layer=2, device=device, dtype=dtype).to(device, dtype))
    if task == "audio":
        if inputs.audio is None:
            raise ValueError("audio: the audio alignment task needs an audio clip")
        wave, sr = inputs.audio
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if wave.size == 0 or not np.isfinite(wave).all():
            raise ValueError("audio: the audio clip is empty or contains invalid samples")
        if float(np.abs(wave).max()) < 1e-4:
            raise ValueError("audio: the audio clip is silent; nothing to align the motion to")
        seconds = num_frames / preset.fps
        if wave.size > int(round(seconds * sr)):
            notices.append(f"audio cropped to the video's {seconds:g} s (it was {wave.size / sr:.1f} s)")
            wave = wave[: int(round(seconds * sr))]
        reward = None
        if preset.audio_reward == "imagebind":
            from rewards.audio import ImageBindReward
            from rewards.base import RewardError

            device, dtype = _placement(preset)
            try:  # IMAGEBIND_CKPT, the cached download, or the official download on first use
                reward = ImageBindReward(wave, sr, model=getattr(preset, "imagebind", None), download=True,
                                         device=device, dtype=dtype)
            except RewardError as e:
                notices.append(f"ImageBind is unavailable ({str(e).splitlines()[0][:200]}), so the audio reward is "
                               "AV-sync (the weight-free onset/motion correlation) instead")
        if reward is None:
            from rewards.audio import AVSyncReward

            reward = AVSyncReward(wave, sr, fps=preset.fps)
        return TaskSetup(task, reward, notices=notices)
    # interpolate
    from rewards.interpolation import InterpolationReward

    if inputs.first_frame is None or inputs.last_frame is None:
        missing = "first_frame" if inputs.first_frame is None else "last_frame"
        raise ValueError(f"{missing}: frame interpolation needs both a first and a last frame")
    if inputs.interpolation_mode not in INTERPOLATION_MODES:
        raise ValueError(f"interpolation_mode: must be one of {', '.join(INTERPOLATION_MODES)}")
    if num_frames < 2:
        raise ValueError("frames: interpolation needs at least 2 frames")
    first = image_tensor(inputs.first_frame, (height, width), "first_frame")
    last = image_tensor(inputs.last_frame, (height, width), "last_frame")
    known = torch.stack([first, last])
    indices = [0, num_frames - 1]
    device, dtype = _placement(preset)
    reward = InterpolationReward(known, indices=indices).to(device, dtype)
    if is_wan_preset(preset):  # latent frame 0 = video frame 0; latent k ≥ 1 = video frames 4k−3..4k (docs/wan.md)
        if inputs.interpolation_mode == "replacement":  # the request layer reads the field from the prefix
            raise ValueError(f"interpolation_mode: {WAN_REPLACEMENT_REFUSED}")
        hooks = []
        if inputs.interpolation_mode == "both":
            hooks = [WanKeyReplacement(first[None], [0])]
            notices.append("interpolation on Wan: latent frame 0 (video frame 0) is replaced by the first key after "
                           "every step; the last key shares its latent frame with 3 other video frames, so the "
                           "reward alone guides the video towards it")
        return TaskSetup(task, reward, hooks=hooks, notices=notices)
    hooks = [LatentReplacement(known, indices)] if inputs.interpolation_mode in ("both", "replacement") else []
    return TaskSetup(task, reward, hooks=hooks, notices=notices)
