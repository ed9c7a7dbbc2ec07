"""HARIVO's ablation (Table 1 / A2) in miniature on the micro world, scored by the exact detector.

Each configuration adds one component to the previous one and is trained from the same start (the shipped micro
model's image part, frozen, with fresh zero-initialised temporal layers) for the same steps, seed and data; each
is then sampled on the fixed prompt set of `pipelines.evaluation.micro.prompt_set` with MG sampling off and on.

    python -m pipelines.training.ablation --steps 300 --seeds 1 --out runs/harivo-ablation
    python -m pipelines.training.ablation --seeds 1 --out runs/harivo-ablation --reference micro-harivo \
        --references-only     # only the row of a shipped preset, scored the same way (no training)

Per video (the evaluation package's readers, `pipelines.evaluation.readers`): content = colour and shape right;
action = direction right; smooth = the object's centroid never jumps more than the largest jump in rendered training
clips (and it is seen in every frame); non-weird = one object (`count_objects`, ≥ 4 px) in every frame and the
prompt's colour in every frame. `Δframe` = mean absolute change between consecutive frames (lower is smoother).
Held-out = colour, shape and direction all right on held-out prompts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

CONFIGS = [
    ("baseline: temporal layers, L_simple", dict(w_trs=0.0, w_dc=0.0, w_reg=0.0, mapping=False, frame_tokens="none")),
    ("+ L_TRS", dict(w_trs=0.1, w_dc=0.0, w_reg=0.0, mapping=False, frame_tokens="none")),
    ("+ L_DC", dict(w_trs=0.1, w_dc=0.1, w_reg=0.0, mapping=False, frame_tokens="none")),
    ("+ mapping network, L_reg", dict(w_trs=0.1, w_dc=0.1, w_reg=0.1, mapping=True, frame_tokens="none")),
    ("+ frame-wise tokens (full recipe)", dict(w_trs=0.1, w_dc=0.1, w_reg=0.1, mapping=True, frame_tokens="paper")),
]
#: Follow-ups to the cumulative table (not part of it; run with --only 5,6): is L_DC what the later rows carry?
EXTRA_CONFIGS = [
    ("full recipe without L_DC", dict(w_trs=0.1, w_dc=0.0, w_reg=0.1, mapping=True, frame_tokens="paper")),
    ("+ L_TRS, + L_DC at weight 0.01", dict(w_trs=0.1, w_dc=0.01, w_reg=0.0, mapping=False, frame_tokens="none")),
]


def score_videos(pipe, seeds: int, mg_scale: float, jump_limit: float, steps: int = 20, cfg: float = 7.5) -> dict:
    """Sample `seeds` videos of every prompt of `prompt_set(12)` and read each with `readers.harivo_reading`."""
    from ..evaluation.micro import prompt_set
    from ..evaluation.readers import harivo_reading

    rows = []
    for pi, p in enumerate(prompt_set(12)):
        gens = [torch.Generator().manual_seed(1000 * pi + i) for i in range(seeds)]
        vids = pipe([p["prompt"]] * seeds, num_frames=8, num_inference_steps=steps, guidance_scale=cfg,
                    generator=gens, output_type="pt", mg_scale=mg_scale).frames
        rows += [{"split": p["split"], **harivo_reading(v, p, jump_limit)} for v in vids]
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("content", "action", "smooth", "non_weird", "dframe")}
    out["held_out"] = float(np.mean([r["all_right"] for r in rows if r["split"] == "held-out"]))
    out["videos"] = len(rows)
    return out


def selected(only: list[int] | None) -> list[tuple[int, str, dict]]:
    """(index, name, overrides) to train: the cumulative table by default, else exactly the indices in `only`."""
    every = list(enumerate(CONFIGS + EXTRA_CONFIGS))
    if only is not None:
        unknown = sorted(set(only) - {i for i, _ in every})
        if unknown:
            raise ValueError(f"--only: no configuration {unknown}; there are 0..{len(every) - 1}")
    return [(i, n, o) for i, (n, o) in every if (i < len(CONFIGS) if only is None else i in only)]


#: `--reference` rows: a shipped micro-world preset scored the same way (not part of the ablation). The micro row
#: keeps the name and file (`config_-1.json`) it always had.
REFERENCE_NAME = "shipped micro model (reference, not part of the ablation)"


def reference_rows(references) -> list[tuple]:
    """`(index, name, None, preset)` per reference preset: `True` (the old flag) is micro; no duplicates."""
    if references is True:
        references = ["micro"]
    out = []
    for name in dict.fromkeys(references or ()):
        if name == "micro":
            out.append((-1, REFERENCE_NAME, None, "micro"))
        else:
            out.append((f"ref-{name}", f"shipped {name} preset (reference, not part of the ablation)", None, name))
    return out


def _reference_pipe(name: str):
    from ..presets import MICRO_WORLD_PRESETS, is_micro_world, load_preset

    if not is_micro_world(name):
        raise ValueError(f"--reference: {name!r} does not generate micro-world videos; choose one of "
                         f"{', '.join(MICRO_WORLD_PRESETS)}")
    from ..presets import micro_world

    if micro_world(name) != 1:
        raise ValueError(f"--reference: {name!r} generates world-2 videos; the ablation's prompts and scores are "
                         "world 1's")
    if name == "micro":  # exactly what the micro row always scored: a fresh pipeline of assets/micro
        from ..micro.loading import load_micro_pipeline

        return load_micro_pipeline()
    return load_preset(name, device="cpu").pipe


def run(steps: int, seeds: int, out: Path, only: list[int] | None, threads: int, reference=False,
        train_configs: bool = True) -> list[dict]:
    """Train and score the selected configurations (none with `train_configs=False`), after the `reference`
    presets (a list of names, or True for micro) scored the same way."""
    from ..evaluation.readers import rendered_max_jump
    from ..micro.loading import load_micro_pipeline
    from .config import load_config
    from .loop import load_video_parts, train

    torch.set_num_threads(threads)
    refs = reference_rows(reference)
    for _, _, _, preset in refs:  # a missing or non-micro preset fails before any work
        if preset != "micro":
            _reference_pipe(preset)
    out.mkdir(parents=True, exist_ok=True)
    jump = rendered_max_jump()
    results = []
    todo = refs + [(i, n, o, None) for i, n, o in (selected(only) if train_configs else [])]
    for i, name, over, preset in todo:
        path = out / f"config_{i}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
            continue
        pipe = _reference_pipe(preset) if preset else load_micro_pipeline()
        pipe.set_progress_bar_config(disable=True)
        rec = {"index": i, "name": name, "steps": 0, "train_seconds": 0.0}
        if preset:
            rec["preset"] = preset
        if over is not None:
            cfg = load_config("micro", {**over, "steps": steps, "out": str(out / f"run_{i}"), "threads": threads,
                                        "ckpt_every": steps, "log_every": 25, "lr_warmup": min(50, steps // 5)})
            res = train(cfg, quiet=True)
            log = res["log"]
            k = max(1, len(log) // 10)
            rec.update(steps=steps, train_seconds=round(res["seconds"], 1), config=over,
                       simple_first=float(np.mean([h["simple"] for h in log[:k]])),
                       simple_last=float(np.mean([h["simple"] for h in log[-k:]])))
            load_video_parts(pipe, res["final"])
        for mg in (0.0, 40.0):
            t0 = time.time()
            rec[f"mg{int(mg)}"] = score_videos(pipe, seeds, mg, jump)
            rec[f"mg{int(mg)}"]["eval_seconds"] = round(time.time() - t0, 1)
        rec["jump_limit_px"] = jump
        path.write_text(json.dumps(rec, indent=1))
        results.append(rec)
        print(json.dumps({"name": name, "train_seconds": rec["train_seconds"]}), file=sys.stderr, flush=True)
    return results


def table(results: list[dict]) -> str:
    lines = ["| configuration | MG | content | action | smooth | non-weird | Δframe | held-out | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for mg in ("mg0", "mg40"):
            m = r[mg]
            lines.append(f"| {r['name'] if mg == 'mg0' else ''} | {'α=40' if mg == 'mg40' else 'off'} | "
                         f"{m['content']:.0%} | {m['action']:.0%} | {m['smooth']:.0%} | {m['non_weird']:.0%} | "
                         f"{m['dframe']:.4f} | {m['held_out']:.0%} | {r['train_seconds'] if mg == 'mg0' else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.training.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=1, help="videos per prompt (21 prompts)")
    p.add_argument("--out", default="runs/harivo-ablation")
    p.add_argument("--only", default=None, help="comma list of configuration indices (0..4: the cumulative table; "
                                                "5, 6: the follow-ups in EXTRA_CONFIGS)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference", action="append", nargs="?", const="micro", default=[], metavar="PRESET",
                   help="also score a shipped micro-world preset the same way (a row that is not part of the "
                        "ablation): alone, micro; --reference micro-harivo for the HARIVO preset; repeatable")
    p.add_argument("--references-only", action="store_true",
                   help="score only the --reference presets (no training), e.g. the row of a newly shipped model")
    args = p.parse_args(argv)
    try:
        only = [int(x) for x in args.only.split(",")] if args.only else None
        selected(only)
    except ValueError as e:
        print(f"error: {e}" if str(e).startswith("--only") else f"error: --only: {e}", file=sys.stderr)
        return 2
    if args.references_only and not args.reference:
        print("error: --references-only: name at least one --reference", file=sys.stderr)
        return 2
    try:
        res = run(args.steps, args.seeds, Path(args.out), only, args.threads, args.reference,
                  train_configs=not args.references_only)
    except ValueError as e:  # a non-micro preset, or micro-harivo not shipped (the message names the command)
        msg = str(e)
        print(f"error: {msg if msg.startswith('--') else '--reference: ' + msg}", file=sys.stderr)
        return 2
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
