"""Reports: the run's report dict, the mp4 and JSON written atomically, and the one-paragraph summary."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import media
from .validation import TASK_NAMES

if TYPE_CHECKING:
    from .running import Generation


def build_report(gen: Generation) -> dict:
    from ..guidance.paper import paper_settings

    p, r = gen.prepared, gen.prepared.request
    rewards = [x for x in gen.reward_per_step if x is not None]
    final = gen.final_reward()
    report = {
        "method": r.method,
        "task": r.task,
        "preset": p.preset_name,
        "device": p.device,
        "seconds": round(gen.seconds, 4),
        "peak_memory_bytes": int(gen.peak_memory_bytes),
        "reward_per_step": gen.reward_per_step,
        "final_reward": final,
        "reward_before": rewards[0] if rewards else None,
        "reward_after": final if final is not None else (rewards[-1] if rewards else None),
        "frames": p.frames,
        "fps": p.fps,
        "height": p.height or p.size,
        "width": p.width or p.size,
        "steps": p.steps,
        "cfg": p.cfg,
        "cfg_schedule": bool(r.cfg_schedule),  # HARIVO's CFG schedule on or off
        "mg_scale": r.mg_scale,
        "mg_normalized": bool(r.mg_normalized),
        "mg_alpha": gen.mg_alpha(),  # the raw α applied (differs from mg_scale when mg_normalized)
        "seed": p.seed,
        "eta": p.eta,
        "params": p.params,
        "paper": bool(r.paper),  # the method ran with its paper's settings (`guidance.paper`)
        **({"paper_settings": {k: p.params[k] for k in paper_settings(r.method) if k in p.params}}
           if r.paper else {}),
        "prompt": r.prompt,
        **({"reward_prompt": r.reward_prompt} if r.reward_prompt else {}),
        "negative_prompt": r.negative_prompt,
        "reward_name": getattr(p.setup.reward, "name", None),
        "phases": gen.phases,
        "audio_muxed": p.audio is not None,
        "notices": p.notices,
    }
    options = getattr(gen.preset, "model_options", None)  # `--video-parts` / `--lora` (pipelines.model_options)
    if options is not None and not options.is_default:
        report["model"] = options.report()  # the app's: names inside its model folder, never a server path
    if r.task == "interpolate":
        report["interpolation_mode"] = r.interpolation_mode
    if r.task == "t2v":
        report["t2v_reward"] = r.t2v_reward
    # guidance diagnostics, only for the steps that have any (1-based step numbers, as in the app's plot)
    extra = [{"step": i + 1, **d} for i, d in enumerate(gen.rewards_per_step) if d]
    if extra:
        report["rewards_per_step"] = extra
    capped = trust_region_counts(gen.rewards_per_step)
    if capped is not None:
        report["trust_region"] = capped
    reading = _style_look_reading(gen)
    if reading:
        report["style_reading"] = reading
    return report


def _style_look_reading(gen: Generation) -> str | None:
    """World 2's style runs: what the reference and the video's background read as (`detector.style_reading`:
    "your reference reads as …; the video's background reads as …"); None for other runs, or no final frames."""
    p = gen.prepared
    if p.request.task != "style" or getattr(p, "world", None) != 2 or p.request.style_image is None:
        return None
    frames = getattr(gen.final_event, "frames", None)
    if frames is None:
        return None
    from ..micro.detector import style_reading

    try:
        return style_reading(p.request.style_image, frames)["sentence"]
    except ValueError:  # validation read the image already; a reader that cannot is no reason to fail the run
        return None


def trust_region_counts(rewards_per_step: list[dict]) -> dict | None:
    """How many guided moves the trust region cut down (`guidance.base.bound_shift`: the step asked for more than
    `trust` times the noise left), of how many it bounded: {"capped": k, "bounded": n}; None when no step went
    through it (unguided, Free²Guide). Where it caps, the method's step size and update form did not set the step."""
    bounded = [d for d in rewards_per_step if "shift_ratio_raw" in d and "shift_ratio" in d]
    if not bounded:
        return None
    capped = sum(d["shift_ratio_raw"] > d["shift_ratio"] * (1 + 1e-6) for d in bounded)
    return {"capped": int(capped), "bounded": len(bounded)}


def finalize(gen: Generation, out, report_path=None, min_side: int = 0, x264_preset: str = "medium") -> dict:
    """Write the mp4 (with the task's audio muxed) and the JSON report atomically; returns the report.
    `min_side` and `x264_preset`: as `media.write_mp4`'s (the app's display copy is upscaled and encoded faster).

    Both files are written to temporary siblings first and renamed into place only when both succeeded, so an
    error never leaves a half-written output behind.
    """
    if gen.final_event is None or gen.final_event.frames is None:
        raise RuntimeError("the generation has not finished: no final frames to write")
    report = build_report(gen)
    targets = [Path(out)] + ([Path(report_path)] if report_path else [])
    temps = media.atomic_targets(targets)
    try:
        media.write_mp4(temps[0], gen.final_event.frames, gen.prepared.fps, audio=gen.prepared.audio,
                        min_side=min_side, x264_preset=x264_preset)
        if report_path:
            temps[1].write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
        for tmp, dst in zip(temps, targets):
            os.replace(tmp, dst)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()
    return report


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def summary_text(report: dict) -> str:
    def f(x):
        return "n/a" if x is None else f"{x:.4f}"

    lines = [
        f"{TASK_NAMES.get(report['task'], report['task'])} · method {report['method']} · preset {report['preset']} "
        f"({report['device']})",
        f"time {report['seconds']:.2f} s · peak memory {report['peak_memory_bytes'] / 2**20:.1f} MiB",
        f"reward ({report.get('reward_name') or 'task'}) before: {f(report.get('reward_before'))} → "
        f"after: {f(report.get('reward_after'))}",
        f"{report['frames']} frames at {report['fps']} fps, {report['width']}x{report['height']}, "
        f"{report['steps']} steps, seed {report['seed']}",
    ]
    tr = report.get("trust_region")
    if tr:
        lines.append(f"trust region capped {tr['capped']}/{tr['bounded']} guided steps"
                     + (" (the step size did not set those steps; trust 0 lifts the cap)" if tr["capped"] else ""))
    if report.get("paper"):
        lines.append("paper settings: " + ", ".join(f"{k} {v}" for k, v in (report.get("paper_settings") or {}).items()))
    if report.get("style_reading"):
        lines.append(f"style: {report['style_reading']}")
    lines += [f"note: {n}" for n in report.get("notices", [])]
    return "\n".join(lines)
