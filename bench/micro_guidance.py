"""Guidance on the micro preset, measured with the exact detector and the task rewards.

    python bench/micro_guidance.py --tasks t2v,style,interpolate,audio --methods none,titan,free2guide --seeds 2

For every (task, method): mean task reward of the final video over cases × seeds, its gain over `none` at the same
seeds, a task metric read by the exact detector, and seconds per video. Prints a Markdown table (and JSON lines
with --json). Method parameters: METHODS.md defaults with the micro preset's `method_defaults` on top.

Metrics (read by the evaluation package's readers, `pipelines.evaluation.readers`, as every score of a micro video):
- t2v (held-out prompts, CLIP text reward): attribute accuracy, mean of colour / shape / direction correct (each
  of the three in the JSON lines' "attributes"; `content_kept`).
- style (reference: a striped background image; prompts ask for a black background): share of videos whose
  detected background is the reference's pattern.
- interpolate (first/last frames of a rendered clip of another motion): mean squared error of the endpoints
  (`endpoint_mse`).
- audio (bouncing prompts, two impacts at 0.5 s and 1.5 s): share of impacts matched one-to-one by a detected floor
  contact within one frame (`impacts_met`, as the `audio` suite of `python -m pipelines evaluate`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.guidance import METHODS, make_guidance  # noqa: E402
from pipelines.keyvalue import parse_method_pairs, read_value  # noqa: E402
from pipelines.evaluation.readers import content_kept, detect, endpoint_mse, impacts_met  # noqa: E402
from pipelines.micro import world  # noqa: E402
from pipelines.presets import load_preset  # noqa: E402
from pipelines.tasks import TaskInputs, build_task  # noqa: E402

IMPACT_TIMES = (0.5, 1.5)


def cases(task: str, n: int):
    held = list(world.HELD_OUT)
    out = []
    for i in range(n):
        c, s, m = held[i % len(held)]
        if task == "t2v":
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append(dict(prompt=world.caption(c, s, m, bg), target=dict(colour=c, shape=s, motion=m)))
        elif task == "style":
            ref = torch.from_numpy(np.repeat(world.background_image("striped")[None], 3, 0)).float()
            out.append(dict(prompt=world.caption(c, s, m, "black"), inputs=dict(style_image=ref)))
        elif task == "interpolate":
            motion = world.MOTIONS[(world.MOTIONS.index(m) + 1) % 4]
            clip, _ = world.render_clip(c, s, motion, "gray", seed=i)
            out.append(dict(prompt=world.caption(c, s, motion, "gray"),
                            inputs=dict(first_frame=clip[0], last_frame=clip[-1], interpolation_mode="reward"),
                            known=clip[[0, -1]]))
        elif task == "audio":
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            wave = world.synth_impacts_audio(IMPACT_TIMES, 2.0)
            out.append(dict(prompt=world.caption(c, s, "bouncing", bg), inputs=dict(audio=(wave, world.SAMPLE_RATE))))
    return out


T2V_ATTRIBUTES = ("colour", "shape", "motion")


def attributes(d: dict, target: dict) -> dict:
    """Per attribute of the t2v target, 1.0 when the detector read it (`content_kept`)."""
    ok = content_kept(d, target, T2V_ATTRIBUTES)
    return {k: ok[f"{k}_ok"] for k in T2V_ATTRIBUTES}


def metric(task: str, case: dict, frames: torch.Tensor, fps: int) -> float:
    if task == "interpolate":
        return endpoint_mse(frames, case["known"])
    d = detect(frames)
    if task == "t2v":
        return float(np.mean(list(attributes(d, case["target"]).values())))
    if task == "style":
        return float(d["background"] == "striped")
    impacts = [round(s * fps) for s in IMPACT_TIMES]
    return impacts_met(impacts, list(d.get("bounce_frames") or []), tol=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="t2v,style,interpolate,audio")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--mg-scale", type=float, default=0.0)
    ap.add_argument("--cfg", type=float, default=7.5, help="classifier-free guidance scale")
    ap.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE", help="repeatable")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    preset = load_preset("micro", device="cpu")
    try:
        extra = {m: {n: read_value(v) for n, v in given.items()} for m, given in parse_method_pairs(a.param).items()}
    except ValueError as e:
        ap.error(f"--param: {e}")
    rows, base = [], {}
    print("| task | method | reward | gain vs none | metric | s/video |\n|---|---|---|---|---|---|", flush=True)
    for task in a.tasks.split(","):
        cs = cases(task, a.cases)
        for method in a.methods.split(","):
            rewards, metrics, secs, gains, parts = [], [], [], [], []
            for ci, case in enumerate(cs):
                setup = build_task(preset, task, TaskInputs(prompt=case["prompt"], **case.get("inputs", {})),
                                   8, 32, 32)
                for seed in range(a.seeds):
                    params = {**preset.guidance_defaults(method), **extra.get(method, {})}
                    t0 = time.perf_counter()
                    events = list(preset.pipe.stream(
                        case["prompt"], num_frames=8, height=32, width=32, num_inference_steps=a.steps,
                        guidance_scale=a.cfg, generator=torch.Generator().manual_seed(seed), guidance=make_guidance(method, **params),
                        reward=setup.reward, hooks=setup.hooks, mg_scale=a.mg_scale, eta=1.0, preview_every=0))
                    secs.append(time.perf_counter() - t0)
                    final = events[-1]
                    rewards.append(final.reward)
                    metrics.append(metric(task, case, final.frames, preset.fps))
                    if task == "t2v":  # per attribute, for the JSON lines
                        parts.append(attributes(detect(final.frames), case["target"]))
                    if method == "none":
                        base[(task, ci, seed)] = final.reward
                    elif (task, ci, seed) in base:
                        gains.append(final.reward - base[(task, ci, seed)])
            row = dict(task=task, method=method, reward=statistics.mean(rewards),
                       gain=statistics.mean(gains) if gains else None,
                       gain_positive=(sum(g > 0 for g in gains) / len(gains)) if gains else None,
                       metric=statistics.mean(metrics), seconds=statistics.mean(secs), n=len(rewards))
            if parts:
                row["attributes"] = {k: statistics.mean(q[k] for q in parts) for k in parts[0]}
            rows.append(row)
            gain = "–" if row["gain"] is None else f"{row['gain']:+.4f} ({row['gain_positive']:.0%} of runs up)"
            print(f"| {task} | {method} | {row['reward']:.4f} | {gain} | {row['metric']:.3f} | {row['seconds']:.1f} |",
                  flush=True)
    if a.json:
        Path(a.json).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
