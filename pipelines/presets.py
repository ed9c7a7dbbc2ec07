"""Named model sets: `micro` (embedded, offline, CPU), `animatediff` (SD 1.5 + motion adapter), `auto`, `tiny`.

`load_preset(name)` builds a preset once per process and keeps it (models are loaded once, reused by every tab and
request). A preset carries the pipeline, the reward models its tasks use, the choices the UI may offer (frames,
sizes) and a `reason` the app shows in its banner (which preset is live and why).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

PRESETS = ("auto", "micro", "animatediff", "tiny")

ANIMATEDIFF_BASE = "emilianJR/epiCRealism"
ANIMATEDIFF_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
CLIP_B16 = "openai/clip-vit-base-patch16"


@dataclass
class Preset:
    name: str
    reason: str
    pipe: Any  # GuidedAnimateDiffPipeline
    device: torch.device
    fps: int
    frame_choices: list
    size_choices: list
    default_frames: int
    default_size: int
    default_steps: int
    default_cfg: float = 7.5
    clip: Any = CLIP_B16  # text-alignment and style rewards (an id, a folder or a loaded ClipModel)
    audio_reward: str = "avsync"  # "avsync" (weight-free) or "imagebind"
    #: Per-method parameter defaults that differ from METHODS.md for this preset's reward scales.
    method_defaults: dict = field(default_factory=dict)
    max_frames: int = 16

    def guidance_defaults(self, method: str) -> dict:
        return dict(self.method_defaults.get(method, {}))


#: Where the micro preset departs from METHODS.md's defaults (tuned for real CLIP / SD scales), and why:
#: - free2guide: the micro CLIP's per-frame scores vary a lot from frame to frame, so 4 key frames are a noisy
#:   proxy and 10 % of the steps is too little selection; decoding all 8 frames of 8 candidates at every step costs
#:   little at 32×32 (bench/RESULTS.md has the comparison).
#: - tfg: raw gradients of the micro rewards are far smaller than the real ones TFG's ρ̄/μ̄ were tuned for;
#:   unit-rms gradients with a small μ̄ keep the update in a useful range.
MICRO_METHOD_DEFAULTS = {
    "free2guide": {"key_frames": 8, "num_candidates": 8, "guided_fraction": 1.0},
    "tfg": {"normalize": "rms", "mu": 0.05},
}

#: The method each app tab opens on, with the reason its help text shows (bench/RESULTS.md, micro weights of
#: round 7, 2 prompts x 2 seeds, METHODS.md defaults). One place: the app reads it, and the figures change here when
#: the methods are re-measured. Values: (method, reason).
TASK_DEFAULT_METHODS = {
    "t2v": ("titan", "TITAN raised the text reward in 4/4 runs (0.714 -> 0.794) and the detected attribute "
                     "accuracy from 0.917 to 1.000 (bench/RESULTS.md)"),
    "style": ("mpgd", "MPGD was the only method that turned the background into the reference's stripes "
                      "(4/4 videos, style reward -204 -> -83; bench/RESULTS.md)"),
    "audio": ("titan", "TITAN met 100 % of the impacts with a floor contact (unguided 62.5 %) and raised the "
                       "AV-sync reward in 4/4 runs (bench/RESULTS.md)"),
    "interpolate": ("titan", "TITAN lowered the endpoint error in 4/4 runs (MSE 0.022 -> 0.015; bench/RESULTS.md)"),
}


def task_default_method(task: str) -> tuple[str, str]:
    """(method, reason) a tab opens on; `none` with no reason for an unknown task."""
    return TASK_DEFAULT_METHODS.get(task, ("none", ""))


_CACHE: dict = {}
_LOCK = threading.Lock()


def _device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _micro(device: torch.device, reason: str) -> Preset:
    from .micro import MICRO_DIR, check_micro_dir
    from .pipeline import GuidedAnimateDiffPipeline

    folder = check_micro_dir(MICRO_DIR)
    try:
        pipe = GuidedAnimateDiffPipeline.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the folder named
        raise ValueError(f"micro weights folder {folder} could not be loaded: {e}") from e
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    return Preset(
        name="micro", reason=reason, pipe=pipe, device=device, fps=4, frame_choices=[8, 12, 16], size_choices=[32],
        default_frames=8, default_size=32, default_steps=20, default_cfg=7.5, clip=str(folder / "clip"),
        audio_reward="avsync", max_frames=16, method_defaults=MICRO_METHOD_DEFAULTS,
    )


def _animatediff(device: torch.device, reason: str, dtype=torch.float32) -> Preset:
    from diffusers import DDIMScheduler, MotionAdapter

    from .pipeline import GuidedAnimateDiffPipeline

    try:
        adapter = MotionAdapter.from_pretrained(ANIMATEDIFF_ADAPTER, torch_dtype=dtype)
        pipe = GuidedAnimateDiffPipeline.from_pretrained(ANIMATEDIFF_BASE, motion_adapter=adapter, torch_dtype=dtype)
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(
            f"could not load the animatediff preset ({ANIMATEDIFF_BASE} + {ANIMATEDIFF_ADAPTER}): {e}. "
            "It downloads about 5 GB on first use (internet needed once), then runs from the cache."
        ) from e
    pipe.scheduler = DDIMScheduler.from_pretrained(
        ANIMATEDIFF_BASE, subfolder="scheduler", beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
        clip_sample=False, timestep_spacing="linspace", steps_offset=1,
    )
    pipe.vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    return Preset(
        name="animatediff", reason=reason, pipe=pipe, device=device, fps=8, frame_choices=[8, 16],
        size_choices=[256, 384, 512], default_frames=16, default_size=512, default_steps=25, default_cfg=7.5,
        clip=CLIP_B16, audio_reward="imagebind", max_frames=16,
    )


def _tiny(device: torch.device, reason: str) -> Preset:
    """Tiny random components (tests only): fast, meaningless videos."""
    from rewards.testing import tiny_clip

    from .pipeline import GuidedAnimateDiffPipeline
    from .testing import tiny_components

    pipe = GuidedAnimateDiffPipeline(**tiny_components())
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    return Preset(
        name="tiny", reason=reason, pipe=pipe, device=device, fps=4, frame_choices=[4, 8], size_choices=[16],
        default_frames=8, default_size=16, default_steps=4, clip=tiny_clip(), audio_reward="avsync", max_frames=8,
        method_defaults={"tfg": {"normalize": "rms", "mu": 0.05}},
    )


def _animatediff_available() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "no CUDA GPU found"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(ANIMATEDIFF_BASE, local_files_only=True)
            snapshot_download(ANIMATEDIFF_ADAPTER, local_files_only=True)
        except Exception:  # noqa: BLE001
            return False, "offline (HF_HUB_OFFLINE=1) and the AnimateDiff weights are not cached"
    return True, "CUDA GPU found"


def load_preset(name: str = "auto", device=None) -> Preset:
    """Build (once) and return a preset. `auto`: animatediff on a CUDA machine that can get its weights, else micro."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    dev = _device(device)
    key = (name, str(dev))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if name == "micro":
            preset = _micro(dev, "micro preset requested: built-in models, offline, CPU-friendly")
        elif name == "tiny":
            preset = _tiny(dev, "tiny random components (tests)")
        elif name == "animatediff":
            preset = _animatediff(dev, "animatediff preset requested: Stable Diffusion 1.5 + AnimateDiff motion adapter")
        else:
            ok, why = _animatediff_available()
            preset = None
            if ok:
                try:
                    preset = _animatediff(dev, f"auto: {why}, running AnimateDiff (SD 1.5)")
                except RuntimeError as e:
                    why = f"AnimateDiff could not be loaded ({str(e).splitlines()[0][:160]})"
            if preset is None:
                preset = _micro(torch.device("cpu") if not torch.cuda.is_available() else dev,
                                f"auto: {why}, so the built-in micro models are live (offline, CPU)")
        _CACHE[key] = preset
        return preset
