"""`python -m pipelines evaluate`: the command line of the evaluation package.

    python -m pipelines evaluate --suite style,interpolate --methods none,titan,mpgd --seeds 2 --out runs/eval
    python -m pipelines evaluate --preset animatediff --suite t2v,style,audio --methods none,titan --out runs/eval-real

Micro suites (`micro.py`) on the micro preset, real suites (`real.py`) on the others, run by the grid (`grid.py`):
one JSON line per generation in `DIR/rows.jsonl`, `summary.md` / `summary.csv`, `plots/` and (micro) `sheets/`;
resumable; under `accelerate launch` each process takes its share of the cells and the main one merges.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..presets import is_micro_world
from . import real as er
from .grid import evaluate, plot, read_rows, write_summary
from .micro import SUITES
from ..keyvalue import read_value
from .specs import split_specs


def build_parser(p: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m pipelines evaluate")
    from ..presets import presets_help

    REAL_SUITES = er.REAL_SUITES

    p.description = ("Guidance suites × methods × seeds: exact suites on the micro preset, real-weight metrics on "
                     "the others (see pipelines/evaluation/micro.py and pipelines/evaluation/real.py).")
    p.add_argument("--suite", required=True,
                   help=f"comma list, or all. micro: {', '.join(SUITES)}; other presets: {', '.join(REAL_SUITES)} "
                        "(interpolate is skipped there with a message)")
    p.add_argument("--methods", default="none,titan", help="comma list of method specs, e.g. none,titan[update=rms]")
    p.add_argument("--seeds", default="2", help="N (seeds 0..N-1) or a comma list")
    p.add_argument("--cases", default=None, metavar="N|IDS",
                   help="at most N cases per suite, or (micro suites) these case ids, e.g. `example`: the "
                        "tab's example as a case of its suite (t2v → mg, style, audio, interpolation → "
                        "interpolate-agree)")
    p.add_argument("--eta", type=float, default=None, help="DDIM η for every cell (default: the request default)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--preset", default="micro", help=presets_help("micro"))
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a parameter for every spec of that method (a spec's own settings win)")
    from ..model_options import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--out", required=True, help="output folder (rows.jsonl, summary.md/.csv, plots/)")
    p.add_argument("--summarize", action="store_true",
                   help="run nothing: rebuild summary.md/.csv and the plots from every row in --out")
    g = p.add_argument_group("real presets (not micro): metric models and inputs")
    g.add_argument("--metric-clip", default=None, metavar="ID|DIR",
                   help="CLIP for CLIP-SIM and frame consistency (default openai/clip-vit-large-patch14; the "
                        "animatediff presets guide with openai/clip-vit-base-patch16, which is refused here)")
    g.add_argument("--style-clip", default=None, metavar="ID|DIR",
                   help="CLIP for the style score (default openai/clip-vit-base-patch32)")
    g.add_argument("--imagebind", default=None, metavar="PATH",
                   help="imagebind_huge.pth for the ImageBind score of the audio suite (default: env "
                        "IMAGEBIND_CKPT, else skipped with the reason in each row); on animatediff ImageBind is "
                        "also the audio reward, so AV-Align is the independent audio metric")
    g.add_argument("--motion", choices=("flow", "diff"), default=None,
                   help="AV-Align motion: flow (Farnebäck optical flow, OpenCV; default) or diff (frame differences)")
    g.add_argument("--i3d", default=None, metavar="PATH",
                   help="Kinetics-400 RGB I3D state dict for FVD (default: env GVS_I3D_WEIGHTS)")
    g.add_argument("--i3d-size", type=int, default=None, help="I3D input size (default 224)")
    g.add_argument("--reference-videos", default=None, metavar="DIR",
                   help="real videos (mp4, webm, ...) for FVD, computed in the summary per suite and method over "
                        "DIR/videos of --out; without it FVD is left out with the reason")
    g.add_argument("--style-image", default=None, metavar="PATH",
                   help="style suite: this reference for every prompt (default: procedural stripes, checker, "
                        "gradient, dots)")
    g.add_argument("--audio", default=None, metavar="PATH",
                   help="audio suite: this clip for every prompt (default: synthesised impacts at known times)")
    return p


def main(argv=None, args=None) -> int:
    a = args if args is not None else build_parser().parse_args(argv)
    if a.summarize:
        out = Path(a.out)
        rows = read_rows(out)
        if not rows:
            print(f"error: --out: no rows in {out}", file=sys.stderr)
            return 2
        def fvd(summary):
            import torch

            device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
            return er.add_fvd(summary, rows, out, a.reference_videos, a.i3d, a.i3d_size or 224, device)

        real_rows = any(r.get("preset") is not None and not is_micro_world(r.get("preset")) for r in rows)
        try:
            plot(write_summary(rows, out, fvd if real_rows else None), out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print((out / "summary.md").read_text())
        return 0
    suites = ["all"] if a.suite == "all" else [s.strip() for s in a.suite.split(",") if s.strip()]
    if is_micro_world(a.preset):
        for s in suites:
            if s not in SUITES and s != "all":
                print(f"error: --suite: {s!r} is not one of {', '.join(SUITES)}", file=sys.stderr)
                return 2
    seeds = list(range(int(a.seeds))) if a.seeds.strip().isdigit() else [int(s) for s in a.seeds.split(",")]
    from ..request import RequestError, parse_method_param_strings

    try:
        override = {m: {n: read_value(v) for n, v in given.items()}
                    for m, given in parse_method_param_strings(a.param).items()}
    except RequestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from ..model_options import ModelOptionError, model_options_of

    try:
        model_options = model_options_of(a)
    except ModelOptionError as e:
        print(f"error: --{e.field.replace('_', '-')}: {e.message}", file=sys.stderr)
        return 2
    try:
        summary = evaluate(suites, split_specs(a.methods), seeds, a.out, preset_name=a.preset, eta=a.eta,
                           steps=a.steps, frames=a.frames, max_cases=a.cases, params_override=override,
                           device=a.device, threads=a.threads, log=lambda s: print(s, file=sys.stderr, flush=True),
                           metric_options=dict(clip=a.metric_clip, style_clip=a.style_clip, imagebind=a.imagebind,
                                               motion=a.motion, i3d=a.i3d, i3d_size=a.i3d_size),
                           style_image=a.style_image, audio=a.audio, reference_videos=a.reference_videos,
                           model_options=model_options)
    except ModelOptionError as e:
        print(f"error: --{e.field.replace('_', '-')}: {e.message}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary:
        print((Path(a.out) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
