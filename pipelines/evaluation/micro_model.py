"""Evaluate the unguided micro T2V model with the exact detector (`readers.py`), on `micro.prompt_set`.

    python -m pipelines.evaluation.micro_model [--model assets/micro | --preset micro-harivo] [--video-parts DIR] \\
        [--steps 20] [--cfg 7.5] [--seeds 4] [--json out.json]

`--preset` evaluates a micro-world preset (`micro`, `micro-harivo`: the micro image model with HARIVO-trained video
parts) as `load_preset` builds it, the same way; `--video-parts DIR` puts a training run's `final/` folder under
the preset's (default micro's) image model, so a run can be evaluated before it is shipped.

Prompts: a fixed set of seen (training) combinations and every held-out combination, each with a background
from a fixed cycle; `--seeds` videos per prompt (one batched call per prompt, seed = prompt index). Reports per
split the accuracy of colour / shape / direction / background, the mean fraction of frames whose colour is the
prompt's ("colour kept"), and the time of one unguided single-video generation.

`--world 2` evaluates a model trained on micro world 2 (`train-micro --world 2`) on `world.prompt_set2`: full prompts
(seen, held-out combinations on held-out looks) and partial ones; each video is read with `detect(..., world=2)` and
scored on what its prompt names only (colour, shape, direction, look: pattern, angle, width, colours as named),
with `honoured` = every named attribute shown.
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

from ..micro import world
from .micro import prompt_set
from .readers import colour_kept, content_kept, detect

#: The attributes a video of the micro model is read for.
ATTRIBUTES = ("colour", "shape", "motion", "background")


def generate(pipe, prompt: str, n: int, seed: int, steps: int, cfg: float, num_frames: int = 8) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(1000 * seed + i) for i in range(n)]
    out = pipe([prompt] * n, num_frames=num_frames, num_inference_steps=steps, guidance_scale=cfg,
               generator=gens, output_type="pt")
    return out.frames  # (n, f, 3, H, W) in [0, 1]


def preset_pipeline(name: str, video_parts: str | None = None, device: str = "cpu"):
    """The pipeline of a micro-world preset (`load_preset`), with optional trained video parts; ValueError for a
    preset whose videos the micro detector cannot read."""
    from ..presets import MICRO_WORLD_PRESETS, is_micro_world, load_preset

    if not is_micro_world(name):
        raise ValueError(f"--preset: {name!r} does not generate micro-world videos; choose one of "
                         f"{', '.join(MICRO_WORLD_PRESETS)}")
    return load_preset(name, device=device, video_parts=video_parts).pipe


def evaluate(model: str | Path | None = None, steps: int = 20, cfg: float = 7.5, seeds: int = 4, n_seen: int = 12,
             pipe=None, verbose: bool = True, preset: str | None = None, video_parts: str | None = None) -> dict:
    from ..micro.loading import load_micro_pipeline

    if pipe is None and (preset is not None or video_parts):
        pipe = preset_pipeline(preset or "micro", video_parts)
    if pipe is None:  # GuidedAnimateDiffPipeline: unguided it is AnimateDiff's, plus the shipped frame-wise tokens
        pipe = load_micro_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    t0 = time.time()
    for pi, p in enumerate(prompt_set(n_seen)):
        vids = generate(pipe, p["prompt"], seeds, pi, steps, cfg)
        for v in vids:
            d = detect(v)
            ok = content_kept(d, p, ATTRIBUTES)
            rows.append({
                **p,
                **{f"{k}_ok": ok[f"{k}_ok"] == 1.0 for k in ATTRIBUTES},
                "colour_kept": colour_kept(d, p["colour"]),
                "detected": {k: d[k] for k in ("colour", "shape", "motion", "background")},
            })
        if verbose:
            ok = rows[-seeds:]
            print(f"  {p['split']:8s} {p['prompt']:70s} colour {sum(r['colour_ok'] for r in ok)}/{seeds} "
                  f"shape {sum(r['shape_ok'] for r in ok)}/{seeds} motion {sum(r['motion_ok'] for r in ok)}/{seeds}",
                  file=sys.stderr, flush=True)
    eval_s = time.time() - t0
    # speed: one unguided single video (CFG on), median of 3 after a warm-up
    generate(pipe, "a red square moving up on a black background", 1, 0, steps, cfg)
    times = []
    for s in range(3):
        t = time.time()
        generate(pipe, "a red square moving up on a black background", 1, s, steps, cfg)
        times.append(time.time() - t)
    summary = {}
    for split in ("seen", "held-out"):
        rs = [r for r in rows if r["split"] == split]
        summary[split] = {
            "videos": len(rs),
            "colour": float(np.mean([r["colour_ok"] for r in rs])),
            "shape": float(np.mean([r["shape_ok"] for r in rs])),
            "direction": float(np.mean([r["motion_ok"] for r in rs])),
            "background": float(np.mean([r["background_ok"] for r in rs])),
            "colour_kept_frames": float(np.mean([r["colour_kept"] for r in rs])),
        }
    what = preset or (str(model) if model else "micro")
    if video_parts:
        what += f" + video parts {video_parts}"
    return {"model": what, "steps": steps, "cfg": cfg, "seeds": seeds, "threads": torch.get_num_threads(),
            "seconds_per_video": statistics.median(times), "eval_seconds": eval_s, "summary": summary, "rows": rows}


def evaluate_world2(pipe, steps: int = 20, cfg: float = 7.5, seeds: int = 4, n_seen: int = 12,
                    verbose: bool = True, what: str = "micro (world 2)") -> dict:
    """`evaluate` for a world-2 model: `world.prompt_set2`, each attribute scored where the prompt names it."""
    pipe.set_progress_bar_config(disable=True)
    rows = []
    t0 = time.time()
    for pi, p in enumerate(world.prompt_set2(n_seen)):
        vids = generate(pipe, p["prompt"], seeds, pi, steps, cfg)
        for v in vids:
            d = detect(v, world=2)
            ok = world.honoured(d, p["target"])
            rows.append({**p, "ok": ok, "honoured": all(ok.values()),
                         "detected": {k: d[k] for k in ("colour", "shape", "motion", "background")}})
        if verbose:
            ok = rows[-seeds:]
            print(f"  {p['split']:8s} {p['prompt']:90s} honoured {sum(r['honoured'] for r in ok)}/{seeds}",
                  file=sys.stderr, flush=True)
    summary = {}
    for split in ("seen", "held-out", "partial"):
        rs = [r for r in rows if r["split"] == split]
        summary[split] = {"videos": len(rs), "honoured": float(np.mean([r["honoured"] for r in rs]))}
        for k in ("colour", "shape", "motion", "look"):
            named = [r["ok"][k] for r in rs if k in r["ok"]]
            summary[split][k] = float(np.mean(named)) if named else None
    return {"model": what, "world": 2, "steps": steps, "cfg": cfg, "seeds": seeds, "threads": torch.get_num_threads(),
            "eval_seconds": time.time() - t0, "summary": summary, "rows": rows}


def table_world2(res: dict) -> str:
    lines = [f"{res['model']}: DDIM {res['steps']} steps, CFG {res['cfg']}, {res['seeds']} seeds/prompt, "
             f"{res['threads']} threads; each attribute scored where the prompt names it", "",
             "| split | videos | honoured | colour | shape | direction | look |", "|---|---|---|---|---|---|---|"]
    for split, s in res["summary"].items():
        cells = ["—" if s[k] is None else f"{s[k]:.0%}" for k in ("colour", "shape", "motion", "look")]
        lines.append(f"| {split} | {s['videos']} | {s['honoured']:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(res: dict) -> str:
    lines = [
        (f"{res['model']}: " if res.get("model") else "")
        + f"DDIM {res['steps']} steps, CFG {res['cfg']}, {res['seeds']} seeds/prompt, {res['threads']} threads; "
        f"one 8-frame video: {res['seconds_per_video']:.2f} s",
        "",
        "| split | videos | colour | shape | direction | background | colour kept (frames) |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, s in res["summary"].items():
        lines.append(f"| {split} | {s['videos']} | {s['colour']:.0%} | {s['shape']:.0%} | {s['direction']:.0%} | "
                     f"{s['background']:.0%} | {s['colour_kept_frames']:.0%} |")
    lines += ["", "Direction (rows: prompt, columns: detected, all prompts):", "",
              "| prompt \\ detected | " + " | ".join(world.MOTIONS) + " | none |",
              "|---" * (len(world.MOTIONS) + 2) + "|"]
    for m in world.MOTIONS:
        got = [r["detected"]["motion"] for r in res["rows"] if r["motion"] == m]
        counts = [sum(g == d for g in got) for d in world.MOTIONS] + [sum(g not in world.MOTIONS for g in got)]
        lines.append(f"| {m} | " + " | ".join(str(c) for c in counts) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.evaluation.micro_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default=None, help="folder of the micro weights (default assets/micro)")
    g.add_argument("--preset", default=None, help="a micro-world preset: micro or micro-harivo (as load_preset "
                                                  "builds it)")
    p.add_argument("--video-parts", default=None, metavar="DIR",
                   help="a training run's final/ folder under the preset's (default micro's) image model")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=7.5)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--seen", type=int, default=12, help="number of seen prompts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="write the full results here")
    p.add_argument("--world", type=int, default=None, choices=[1, 2],
                   help="the micro world the model was trained on (default: its training.json, else 1); 2 scores "
                        "world 2's prompt set (full and partial prompts, looks)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.video_parts and args.model:
        print("error: --video-parts goes with --preset (or the default micro preset), not --model", file=sys.stderr)
        return 2
    from ..model_options import ModelOptionError

    try:
        pipe = preset_pipeline(args.preset or "micro", args.video_parts) if (args.preset or args.video_parts) else None
    except ModelOptionError as e:
        print(f"error: --video-parts: {e.message}", file=sys.stderr)
        return 2
    except ValueError as e:  # unknown / non-micro preset, micro-harivo not shipped, parts of another family
        msg = str(e)
        print(f"error: {msg if msg.startswith('--') else '--preset: ' + msg}", file=sys.stderr)
        return 2
    from ..micro.loading import load_micro_pipeline, world_of

    from ..presets import micro_world

    # the world of the weights: --world, else the model folder's training.json, else the preset's (micro2: 2)
    version = args.world or (world_of(args.model) if args.model and not pipe
                             else micro_world(args.preset or "micro") or 1)
    if version == 2:
        if pipe is None:
            pipe = load_micro_pipeline(args.model)
        res = evaluate_world2(pipe, args.steps, args.cfg, args.seeds, args.seen,
                              what=(args.preset or args.model or "micro") + " (world 2)")
        print(table_world2(res))
    else:
        res = evaluate(args.model, args.steps, args.cfg, args.seeds, args.seen, pipe=pipe, preset=args.preset,
                       video_parts=args.video_parts)
        print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
