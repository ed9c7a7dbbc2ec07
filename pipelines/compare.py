"""Guided against unguided: the same request with method `none` (same seed, η, steps, CFG, MG, inputs) and a metric.

    base = unguided(request)            # method none, everything else equal
    m = task_metric(prepared, frames)   # Metric(name, value, text): a check the reward does not read

The metric is read independently of the guidance reward where that is cheap and weight-free, through the evaluation
package's readers (`pipelines.evaluation.readers`, the same readers as `python -m pipelines evaluate`):
- t2v on the micro preset: the exact detector's attributes against the parsed prompt (share correct, `content_kept`);
- style on the micro preset: the background class the detector reads (the micro references are backgrounds);
- audio: AV-Align (audio onsets against motion peaks, IoU within one frame; weight-free); on the micro preset the
  exact-frame sync instead (floor contacts the detector reads against the onset frames, one to one, the audio
  table's figure), with AV-Align beside it;
- interpolate: mean squared error of the first and last frames against the key frames (`endpoint_mse`, lower is
  better).
Elsewhere (t2v / style on animatediff) there is no second model to ask without downloading one: no metric.
On the micro preset every text also says whether the video is still a clean video of its prompt (`fidelity`: the
prompt's content read, one object in every frame, no artefact), as the exact tables judge it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .presets import is_micro_world, micro_world


@dataclass
class Metric:
    name: str
    value: Optional[float]  # a number (None when the metric is a label or not available)
    text: str  # what the user reads, e.g. "attributes 3/4 (motion wrong)"
    higher_is_better: bool = True


def unguided(request):
    """The same request without guidance: method `none`, no method parameters, every other field equal."""
    return dataclasses.replace(request, method="none", params={})


def task_metric(prepared, frames: torch.Tensor) -> Optional[Metric]:
    """The task's metric of a finished video `frames` (f, 3, H, W) in [0, 1]; None where none is available."""
    frames = frames.detach().float().cpu().clamp(0, 1)
    m = _task_metric(prepared, frames)
    if m is not None and is_micro_world(getattr(prepared, "preset_name", None)):
        m = dataclasses.replace(m, text=m.text + _fidelity_text(prepared, frames))
    return m


def _world(prepared) -> int:
    """The micro world of a prepared request's preset (`Prepared.world`, else from the preset's name); 1 if none."""
    return getattr(prepared, "world", None) or micro_world(getattr(prepared, "preset_name", None)) or 1


def _fidelity_text(prepared, frames: torch.Tensor) -> str:
    """'; a clean video of the prompt' or what is wrong with it (micro preset; empty when the prompt is not a world
    caption)."""
    from .evaluation.readers import HALO_MAX_PX, RESIDUAL_MAX, fidelity, target_of

    r = prepared.request
    w = _world(prepared)
    target = target_of(r.prompt or r.reward_prompt or "", world=w)
    if not target:
        return ""
    keys = ("colour", "shape") if r.task == "interpolate" else ("colour", "shape", "motion")
    f = fidelity(frames.numpy(), target, keys, world=w)
    if f["fidelity"] == 1.0:
        return "; a clean video of the prompt"
    why = []
    if f["content"] != 1.0:
        why.append("the prompt's " + "/".join(k for k in keys if f.get(f"{k}_ok") != 1.0) + " not read")
    if f["one_object"] != 1.0:
        why.append(f"one object in {f['one_object']:.0%} of frames")
    if f["residual"] > RESIDUAL_MAX:
        why.append(f"artefacts (residual {f['residual']:.3f})")
    if f["halo_px"] > HALO_MAX_PX:
        why.append(f"a halo of another colour ({f['halo_px']:.0f} px in a frame)")
    return "; not a clean video of the prompt (" + ", ".join(why or ["unclean"]) + ")"


def _task_metric(prepared, frames: torch.Tensor) -> Optional[Metric]:
    r = prepared.request
    if r.task == "audio" and prepared.audio is not None and is_micro_world(prepared.preset_name):
        from rewards.metrics import audio_onset_times, av_align

        from .evaluation.readers import detect, sync_iou

        fps = float(prepared.fps)
        onsets = audio_onset_times(prepared.audio.wave, prepared.audio.sample_rate)
        impacts = sorted({int(round(t * fps)) for t in onsets if t * fps < frames.shape[0] - 0.5})
        contacts = list(detect(frames, world=_world(prepared)).get("bounce_frames") or [])
        v = sync_iou(impacts, contacts, 0)
        aa = float(av_align(frames, prepared.audio.wave, prepared.audio.sample_rate, fps))
        return Metric("exact-frame sync", v, f"contacts on the exact thump frames: IoU {v:.3g} (thumps at frames "
                      f"{impacts}, contacts at {contacts}; AV-Align within ±1 frame {aa:.3g})")
    if r.task == "audio" and prepared.audio is not None:
        from rewards.metrics import av_align

        v = float(av_align(frames, prepared.audio.wave, prepared.audio.sample_rate, float(prepared.fps)))
        return Metric("AV-Align", v, f"AV-Align {v:.3g} (audio onsets vs motion peaks, IoU)")
    if r.task == "interpolate":
        from . import media
        from .evaluation.readers import endpoint_mse

        first = media.fit_square(media.load_image(r.first_frame, "first_frame"), prepared.size)
        last = media.fit_square(media.load_image(r.last_frame, "last_frame"), prepared.size)
        keys = np.stack([np.asarray(first), np.asarray(last)]).astype(np.float32).transpose(0, 3, 1, 2) / 255
        v = endpoint_mse(frames, keys)
        return Metric("endpoint MSE", v, f"endpoint MSE {v:.3g} (lower is better)", higher_is_better=False)
    if not is_micro_world(prepared.preset_name):
        return None
    from .evaluation.readers import content_kept, detect, target_of

    w = _world(prepared)
    d = detect(frames, world=w)
    if r.task == "style":
        if w == 2 and r.style_image is not None:  # the reference's look and the video's, side by side
            from .evaluation.readers import style_reading

            try:
                reading = style_reading(r.style_image, frames)
            except ValueError:
                reading = None
            if reading is not None:
                return Metric("background look", float(reading["same"]), reading["sentence"])
        return Metric("detected background", None, f"detected background: {d['background']}")
    target = target_of(r.reward_prompt or r.prompt, world=w)
    if not target:
        return None
    keys = ("colour", "shape", "motion", "background") if w == 1 else \
        tuple(k for k in ("colour", "shape", "motion") if k in target)
    ok = content_kept(d, target, keys)
    wrong = [k for k in keys if ok.get(f"{k}_ok") != 1.0]
    v = (len(keys) - len(wrong)) / len(keys)
    found = [f"{k} {d.get(k) or 'not found'}" for k in wrong]
    why = f" (read: {', '.join(found)})" if wrong else ""
    return Metric("attributes", v, f"attributes {len(keys) - len(wrong)}/{len(keys)} right{why}")
