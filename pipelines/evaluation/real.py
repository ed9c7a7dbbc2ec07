"""Real-weight suites of `python -m pipelines evaluate` (every preset but micro): prompts, references, metrics.
Side by side with the micro suites of `micro.py`; the grid (`grid.py`) runs both.

    python -m pipelines evaluate --preset animatediff --suite t2v,style,audio --methods none,titan,free2guide \\
        --seeds 2 --out runs/eval-real

The micro suites (`micro.py`) are read by the micro world's exact detector; real videos have no such detector, so
here every video is measured by `rewards.metrics.real_metrics` with evaluators that differ from the guiding models:

- `t2v`    VBench-like text prompts: CLIP-SIM (prompt–frame cosine) and frame consistency with the metric CLIP
           (default ViT-L/14; the animatediff preset guides with ViT-B/16).
- `style`  prompts with a procedural reference (diagonal stripes, checkerboard, colour gradient, dots; no image
           files are shipped) or the user's `--style-image`: the style score (Gram distance to the reference, lower
           is closer) with a second CLIP (default ViT-B/32), plus CLIP-SIM and frame consistency.
- `audio`  prompts of impact sounds with synthesised impacts (decaying noise bursts over a low thump at known
           times) or the user's `--audio`: AV-Align (audio onsets against Farnebäck optical-flow peaks, OpenCV),
           the ImageBind score when `--imagebind` gives a checkpoint, plus CLIP-SIM and frame consistency.
           ImageBind is also the animatediff preset's audio *reward*, so its score there is not an independent
           judge of the guided methods; AV-Align is.
- `interpolate` is skipped (with a message): its micro metric reads object positions, and a real-video measure of
  key-frame fidelity is not implemented.

Every generated video is written to `DIR/videos/<row key>.mp4` (with its audio); FVD, a set metric, is computed in
the summary once per (suite, method) over those videos against `--reference-videos DIR` with the I3D weights of
`--i3d`, or left out with the reason written under the suite's table. With the standard set-up (I3D weights from a
file, 224² input, 400 logits) it is `rewards.i3d.fvd_from_features(strict=True)`: sets of 400 videos or fewer are
refused (`fvd_check: refused: ...`, no value); any other set-up (a random/test I3D object, another input size) gives
a value marked `fvd_check: not the standard FVD: <why>`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .cases import Case

REAL_SUITES = ("t2v", "style", "audio")
#: Suites a real preset does not run, with the reason printed instead.
SKIPPED_SUITES = {
    "interpolate": "skipped for real presets: its metric (key-frame distance of the object) reads the micro "
                   "world's detector, and no real-video measure of it is implemented",
}
#: The metric each real suite is judged by, and whether higher is better (the first column of the summary).
REAL_PRIMARY = {"t2v": ("clip_sim", True), "style": ("style_score", False), "audio": ("av_align", True)}

T2V_PROMPTS = [
    "a panda playing an acoustic guitar in a bamboo forest",
    "a red sports car driving along a coastal road at sunset",
    "a golden retriever running on a sandy beach, waves in the background",
    "time-lapse of white clouds drifting over snowy mountains",
]
STYLE_CASES = [  # (prompt, procedural reference)
    ("a lighthouse on a rocky cliff by the sea", "stripes"),
    ("a cat sitting on a windowsill", "checker"),
    ("a city street at night with passing cars", "gradient"),
    ("a sailing boat on a calm lake", "dots"),
]
STYLE_PATTERNS = ("stripes", "checker", "gradient", "dots")
AUDIO_CASES = [  # (prompt, impact times as fractions of the video's duration)
    ("a drummer hitting a snare drum", (0.15, 0.55)),
    ("a hammer striking a metal plate", (0.25, 0.65)),
    ("a basketball bouncing on a wooden floor", (0.35, 0.75)),
    ("a person clapping their hands", (0.2, 0.45, 0.7)),
]
AUDIO_SAMPLE_RATE = 16_000


# ------------------------------------------------------------------------------------------------- inputs
def style_reference(pattern: str, size: int = 256):
    """A procedural style reference (PIL RGB): `stripes` (diagonal orange / navy), `checker` (teal / cream
    squares), `gradient` (a horizontal hue sweep) or `dots` (magenta dots on yellow)."""
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if pattern == "stripes":
        band = (np.floor((x + y) * 8) % 2)[..., None]
        img = band * np.array([0.95, 0.55, 0.1]) + (1 - band) * np.array([0.08, 0.12, 0.4])
    elif pattern == "checker":
        cell = ((np.floor(x * 8) + np.floor(y * 8)) % 2)[..., None]
        img = cell * np.array([0.1, 0.55, 0.55]) + (1 - cell) * np.array([0.96, 0.92, 0.8])
    elif pattern == "gradient":
        h = x * 6.0  # hue in sextants, full saturation and value
        img = np.stack([np.clip(np.abs(h - 3) - 1, 0, 1), np.clip(2 - np.abs(h - 2), 0, 1),
                        np.clip(2 - np.abs(h - 4), 0, 1)], -1)
    elif pattern == "dots":
        fx, fy = (x * 6) % 1 - 0.5, (y * 6) % 1 - 0.5
        dot = ((fx ** 2 + fy ** 2) < 0.3 ** 2)[..., None].astype(np.float32)
        img = dot * np.array([0.85, 0.1, 0.6]) + (1 - dot) * np.array([0.98, 0.9, 0.3])
    else:
        raise ValueError(f"style pattern must be one of {', '.join(STYLE_PATTERNS)}, got {pattern!r}")
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))


def impact_audio(times, seconds: float, sample_rate: int = AUDIO_SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Mono float32 impacts at `times` (s): a decaying noise burst (~30 ms) over a decaying 110 Hz thump."""
    rng = np.random.RandomState(seed)
    n = int(round(seconds * sample_rate))
    wave = np.zeros(n, np.float32)
    k = int(0.25 * sample_rate)
    t = np.arange(k) / sample_rate
    for when in times:
        s = int(round(when * sample_rate))
        if not 0 <= s < n:
            continue
        hit = 0.6 * rng.randn(k) * np.exp(-t / 0.03) + 0.5 * np.sin(2 * np.pi * 110 * t) * np.exp(-t / 0.08)
        m = min(k, n - s)
        wave[s: s + m] += hit[:m].astype(np.float32)
    return np.clip(wave, -1, 1).astype(np.float32)


def _file_tag(path) -> str:
    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise ValueError(f"file not found: {p}")
    return hashlib.sha1(p.read_bytes()).hexdigest()[:8]


def check_suites(suites) -> tuple[list[str], list[str]]:
    """(suites to run, messages for the skipped ones); a suite no real preset knows is a ValueError."""
    run, notes = [], []
    for s in suites:
        if s in REAL_SUITES:
            run.append(s)
        elif s in SKIPPED_SUITES:
            notes.append(f"evaluate: suite {s!r} {SKIPPED_SUITES[s]}")
        else:
            raise ValueError(f"--suite: {s!r} is not a real-preset suite: choose from {', '.join(REAL_SUITES)} "
                             "(t2v-hard and mg are micro-only: their metrics read the micro world's detector)")
    return run, notes


def real_cases(suite: str, num_frames: int, fps: float, style_image=None, audio=None) -> list[Case]:
    """The cases of a real suite. `style_image` / `audio`: a user file used by every case of that suite instead of
    the built-in references (its content hash is part of the case id, so a changed file is not taken as done)."""
    if suite == "t2v":
        return [Case(f"p{i}", "t2v", p) for i, p in enumerate(T2V_PROMPTS)]
    if suite == "style":
        if style_image is not None:
            from ..media import load_image

            tag = _file_tag(style_image)
            img = load_image(style_image, "style_image")
            return [Case(f"user{tag}-{i}", "style", p, inputs=dict(style_image=img), target=dict(reference="user"))
                    for i, (p, _) in enumerate(STYLE_CASES)]
        return [Case(f"{pat}-{i}", "style", p, inputs=dict(style_image=style_reference(pat)),
                     target=dict(reference=pat)) for i, (p, pat) in enumerate(STYLE_CASES)]
    if suite == "audio":
        seconds = num_frames / float(fps)
        if audio is not None:
            from ..media import load_audio

            tag = _file_tag(audio)
            a = load_audio(audio, "audio")
            return [Case(f"user{tag}-{i}", "audio", p, inputs=dict(audio=(a.wave, a.sample_rate)),
                         target=dict(audio="user")) for i, (p, _) in enumerate(AUDIO_CASES)]
        out = []
        for i, (p, fracs) in enumerate(AUDIO_CASES):
            times = [round(f * seconds, 4) for f in fracs]
            out.append(Case(f"impacts{i}", "audio", p,
                            inputs=dict(audio=(impact_audio(times, seconds, seed=i), AUDIO_SAMPLE_RATE)),
                            target=dict(impacts_s=times)))
        return out
    raise ValueError(f"suite must be one of {', '.join(REAL_SUITES)}, got {suite!r}")


# ------------------------------------------------------------------------------------------------ metric models
def metrics_config_for(preset, base=None, *, clip=None, style_clip=None, imagebind=None, i3d=None,
                       i3d_size=None, motion=None):
    """The `MetricsConfig` of a run: `base` (tests inject one) or the defaults (animatediff: CLIP ViT-L/14 and
    ViT-B/32; tiny: two tiny random CLIPs other than its guiding one), then the given overrides. The guiding CLIP,
    the frame rate and the device always come from the preset. A metric CLIP equal to the guiding one is refused."""
    from rewards.metrics import MetricsConfig, _same_clip

    if base is None:
        if preset.name == "tiny":
            from rewards.testing import tiny_clip

            base = MetricsConfig(clip=tiny_clip(seed=1), style_clip=tiny_clip(seed=2), motion="flow")
        else:
            base = MetricsConfig()
    over = {k: v for k, v in dict(clip=clip, style_clip=style_clip, imagebind=imagebind, i3d=i3d,
                                  i3d_size=i3d_size, motion=motion).items() if v is not None}
    cfg = dataclasses.replace(base, guiding_clip=preset.clip, fps=float(preset.fps),
                              device=base.device if base.device is not None else preset.device, **over)
    for name, c in (("metric CLIP (--metric-clip)", cfg.clip), ("style CLIP (--style-clip)", cfg.style_clip)):
        if _same_clip(c, cfg.guiding_clip):
            raise ValueError(f"the {name} must differ from the CLIP that guides ({_describe(preset.clip)}): a method "
                             "could score well by overfitting its own reward")
    if cfg.motion not in ("flow", "diff"):
        raise ValueError(f"--motion must be flow or diff, got {cfg.motion!r}")
    return cfg


def _describe(c) -> str:
    return str(c) if isinstance(c, (str, os.PathLike)) else getattr(c, "name", type(c).__name__)


def check_ready(cfg, suites, reference_videos=None) -> None:
    """Fail before any generation when a metric the suites need cannot run, or a metric input is missing."""
    if reference_videos is not None and not Path(reference_videos).expanduser().is_dir():
        raise ValueError(f"--reference-videos: not a folder: {reference_videos}")
    for name, path in (("--i3d", cfg.i3d), ("--imagebind", cfg.imagebind)):
        if isinstance(path, (str, os.PathLike)) and not Path(path).expanduser().is_file():
            raise ValueError(f"{name}: file not found: {path}")
    if "audio" in suites and cfg.motion == "flow":
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise ValueError("the audio suite's AV-Align uses optical flow, which needs OpenCV: pip install "
                             "'guided-video-studio[metrics]' (or pass --motion diff)") from None


def describe_config(cfg, preset=None) -> str:
    ib = cfg.imagebind if cfg.imagebind is not None else os.environ.get("IMAGEBIND_CKPT")
    return (f"metrics: CLIP-SIM / frame consistency with {_describe(cfg.clip)}, style score with "
            f"{_describe(cfg.style_clip)} (guiding CLIP: {_describe(cfg.guiding_clip)}), AV-Align on "
            f"{'optical flow' if cfg.motion == 'flow' else 'frame differences'}, ImageBind "
            f"{'from ' + _describe(ib) if ib is not None else 'skipped (no checkpoint)'}"
            + (" (also the guiding audio reward: not an independent judge)"
               if ib is not None and getattr(preset, "audio_reward", None) == "imagebind" else ""))


# ------------------------------------------------------------------------------------------------------- a video
def measure(cell, frames, gen, cfg, out: Path) -> dict:
    """`real_metrics` of one generated video, and the video written to `out/videos/<key>.mp4` (for FVD and for
    looking at). FVD is a set metric: the row says where it is."""
    import torch

    from rewards.metrics import real_metrics

    from ..media import write_mp4

    frames = torch.as_tensor(frames).detach().float().clamp(0, 1).cpu()
    p = gen.prepared
    audio = (p.audio.wave, p.audio.sample_rate) if p.audio is not None else None
    m = real_metrics(frames, prompt=cell.case.prompt, style_image=cell.case.inputs.get("style_image"),
                     audio=audio, config=cfg)
    m["skipped"]["fvd"] = "a set metric: per suite and method in summary.md (needs --reference-videos and --i3d)"
    folder = out / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    write_mp4(folder / f"{cell.key}.mp4", frames, p.fps, audio=p.audio)
    return m


# -------------------------------------------------------------------------------------------------------- FVD
#: The standard FVD set-up (`add_fvd`): Kinetics-400 I3D logits of 224² input; anything else is marked `fvd_check`.
STANDARD_I3D_SIZE, STANDARD_I3D_DIM = 224, 400
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")


def read_video(path, max_frames: Optional[int] = None):
    """Frames (f, 3, H, W) float in [0, 1] of a video file (`media.read_frames`)."""
    import torch

    from ..media import read_frames

    _, frames = read_frames(path, max_frames)
    if not frames:
        raise ValueError(f"{path}: no frames")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


def _square(video, size: int):
    import torch.nn.functional as F

    h, w = video.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    v = video[..., top: top + s, left: left + s]
    return F.interpolate(v, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def add_fvd(summary: list[dict], rows: list[dict], out: Path, reference_videos=None, i3d=None, i3d_size: int = 224,
            device=None) -> dict:
    """Add "fvd" to each (suite, method) entry of `summary` (real rows only): the method's videos in `out/videos`
    against the reference videos (first f frames of each, f = the generated length; centre square). Standard
    set-up (I3D from a weights file, `i3d_size` 224, 400 logits): `fvd_from_features(strict=True)`, and a set it
    refuses gets no "fvd" but "fvd_check" ("refused: ..."); otherwise (e.g. a random/test I3D object) "fvd" is
    computed and "fvd_check" says why it is not the standard FVD. Returns {suite: [note, ...]} saying what was left
    out and why."""
    notes: dict[str, list[str]] = {}
    real = [s for s in summary if s.get("primary") in {p for p, _ in REAL_PRIMARY.values()}]
    if not real:
        return notes

    def note(suite, text):
        notes.setdefault(suite, [])
        if text not in notes[suite]:
            notes[suite].append(text)

    i3d = i3d if i3d is not None else os.environ.get("GVS_I3D_WEIGHTS")
    why = None
    if reference_videos is None:
        why = "FVD: not computed: no --reference-videos DIR (real videos to compare with)"
    elif i3d is None:
        why = "FVD: not computed: no I3D weights (--i3d PATH of a Kinetics-400 RGB I3D state dict, or GVS_I3D_WEIGHTS)"
    if why:
        for s in real:
            note(s["suite"], why)
        return notes
    import torch

    import rewards.i3d as ri3d
    from rewards.base import RewardError
    from rewards.i3d import i3d_features, load_i3d

    from_file = isinstance(i3d, (str, os.PathLike))
    model = load_i3d(i3d, device=device) if from_file else i3d
    # what keeps this from the standard FVD set-up (I3D weights from a file, 224² input, 400 logits)
    setup = [] if from_file else [f"I3D given as a {type(model).__name__} object, not weights from a file "
                                  "(random/test I3D?)"]
    if i3d_size != STANDARD_I3D_SIZE:
        setup.append(f"{i3d_size}² I3D input (standard {STANDARD_I3D_SIZE}²)")
    folder = Path(reference_videos).expanduser()
    if not folder.is_dir():
        raise ValueError(f"--reference-videos: not a folder: {folder}")
    ref_paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    by_group: dict[tuple, list[dict]] = {}
    for r in rows:
        by_group.setdefault((r["suite"], r["method"]), []).append(r)
    ref_cache: dict[int, Any] = {}
    for s in real:
        vids = []
        for r in by_group.get((s["suite"], s["method"]), []):
            path = out / "videos" / f"{r['key']}.mp4"
            if path.is_file():
                vids.append(read_video(path))
        if len(vids) < 2:
            note(s["suite"], f"FVD: {s['method']}: needs at least 2 videos in {out / 'videos'}, found {len(vids)}")
            continue
        f = min(v.shape[0] for v in vids)
        if f not in ref_cache:
            refs = [read_video(p, f) for p in ref_paths]
            refs = [_square(v, i3d_size) for v in refs if v.shape[0] >= f]
            ref_cache[f] = (i3d_features(model, torch.stack(refs), i3d_size), len(refs)) if len(refs) >= 2 else None
        if ref_cache[f] is None:
            note(s["suite"], f"FVD: needs at least 2 reference videos of >= {f} frames in {folder}")
            continue
        gen = torch.stack([_square(v[:f], i3d_size) for v in vids])
        feats, n_refs = ref_cache[f]
        gen_feats = i3d_features(model, gen, i3d_size)
        why_not = setup + ([] if feats.shape[1] == STANDARD_I3D_DIM else
                           [f"{feats.shape[1]} I3D features (standard {STANDARD_I3D_DIM} logits)"])
        if not why_not:  # the standard set-up: the standard FVD, or none
            try:
                s["fvd"] = ri3d.fvd_from_features(gen_feats, feats, strict=True)
            except RewardError as e:
                s["fvd_check"] = f"refused: {str(e).removeprefix('fvd: ')}"
                note(s["suite"], f"FVD: {s['method']}: not computed: {s['fvd_check']}")
                continue
        else:
            s["fvd"] = ri3d.fvd_from_features(gen_feats, feats)
            ok, size_note = ri3d.fvd_check(gen_feats.shape[0], feats.shape[0], feats.shape[1])
            s["fvd_check"] = "not the standard FVD: " + "; ".join(why_not + ([] if ok else [size_note]))
            note(s["suite"], f"FVD: {s['method']}: {s['fvd_check']}")
        note(s["suite"], f"FVD: I3D logits, {n_refs} reference videos from {folder}, first {f} frames, "
                         f"{i3d_size}² centre squares (lower is better)")
    return notes
