"""Ship a training run's video parts as a preset folder (issue #18: `assets/micro-harivo/`).

    python -m pipelines.training.ship RUN_DIR [DEST] [--dtype auto|fp16|bf16|fp32]

`RUN_DIR` is a `python -m pipelines.training` output folder (its `final/` is used) or a `final/` folder itself;
`DEST` defaults to `assets/micro-harivo`. Only what `load_video_parts` reads is copied: `motion_adapter/`,
`mapping/` and `frame_tokens/` (each `config.json` + `diffusion_pytorch_model.safetensors`) and `harivo.json`
(never the checkpoints, the log or the optimiser state). `ship.json` records the source, the dtype and the check.

Weights are stored in the smallest dtype that keeps the preset's output the same: `auto` (the default) tries fp16,
then bf16, and keeps the first whose unguided micro videos (`CHECK_PROMPTS`, DDIM 20 steps, CFG 7.5, 8 frames) stay
within `TOLERANCE` (max absolute pixel difference in [0, 1]) of the fp32 parts' videos, else fp32. Loading casts
them back to the image model's dtype (fp32), so only the rounding of the stored weights differs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

PARTS = ("motion_adapter", "mapping", "frame_tokens")
WEIGHTS = "diffusion_pytorch_model.safetensors"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
#: Max absolute pixel difference (frames in [0, 1]) between videos of the shipped and the fp32 parts: 2/255, below
#: what the detector's colour and position reads can notice.
TOLERANCE = 2 / 255
CHECK_PROMPTS = ("a red circle moving left to right on a black background",
                 "a cyan triangle moving down on a checkered background")


def final_folder(run: str | Path) -> Path:
    """`run/final` for a run folder, `run` for a final folder; ValueError naming the folder otherwise."""
    run = Path(run)
    for cand in (run / "final", run):
        if (cand / "motion_adapter" / "config.json").is_file():
            return cand
    if not run.is_dir():
        raise ValueError(f"run folder not found: {run}")
    raise ValueError(f"{run} is neither a training run with a final/ folder nor a final/ folder (no "
                     f"motion_adapter/config.json; a run writes final/ only when it reaches its last step)")


def write_parts(src: Path, dest: Path, dtype: torch.dtype) -> None:
    """Copy the loadable parts of `src` into `dest` (created, must not exist), floating tensors cast to `dtype`."""
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True)
    for part in PARTS:
        if not (src / part / "config.json").is_file():
            continue
        (dest / part).mkdir()
        shutil.copy2(src / part / "config.json", dest / part / "config.json")
        state = load_file(str(src / part / WEIGHTS))
        state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        save_file(state, str(dest / part / WEIGHTS), metadata={"format": "pt"})
    if (src / "harivo.json").is_file():
        shutil.copy2(src / "harivo.json", dest / "harivo.json")


def _videos(base_pipe, folder: Path, steps: int) -> torch.Tensor:
    from ..model_options import ModelOptions, apply_to_pipe

    pipe = apply_to_pipe(base_pipe, ModelOptions(video_parts=str(folder)))
    out = []
    for i, prompt in enumerate(CHECK_PROMPTS):
        g = torch.Generator().manual_seed(i)
        out.append(pipe(prompt, num_frames=8, num_inference_steps=steps, guidance_scale=7.5, generator=g,
                        output_type="pt").frames)
    return torch.cat(out)


def base_pipeline(src: Path):
    """The image model the parts in `src` were trained on (`harivo.json`: `base`, `base_folder`), as a pipeline for
    the check videos: the micro folder, or the tiny random components; None for another base (no check)."""
    try:
        cfg = json.loads((src / "harivo.json").read_text())
    except (OSError, json.JSONDecodeError):
        cfg = {"base": "micro"}
    if cfg.get("base") == "micro":
        from ..micro.loading import load_micro_pipeline

        pipe = load_micro_pipeline(cfg.get("base_folder"))
    elif cfg.get("base") == "tiny":
        from ..pipeline import GuidedAnimateDiffPipeline
        from ..testing import tiny_components

        pipe = GuidedAnimateDiffPipeline(**tiny_components(seed=cfg.get("seed", 0)))
    else:
        return None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def max_difference(base_pipe, a: Path, b: Path, steps: int = 20) -> float:
    """Max absolute pixel difference between the check videos generated with the parts in `a` and in `b`."""
    with torch.no_grad():
        return float((_videos(base_pipe, a, steps) - _videos(base_pipe, b, steps)).abs().max())


def ship(run: str | Path, dest: str | Path, dtype: str = "auto", base_pipe=None, steps: int = 20,
         force: bool = False, log=print) -> dict:
    """Write `dest` from `run`; returns what `ship.json` records (source, dtype, max_difference, bytes)."""
    src = final_folder(run)
    dest = Path(dest)
    if dtype not in ("auto", *DTYPES):
        raise ValueError(f"--dtype must be auto, fp16, bf16 or fp32, got {dtype!r}")
    if dest.exists():
        if not force:
            raise ValueError(f"{dest} exists; pass --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=".ship-", dir=dest.parent))  # same file system: the final rename is atomic
    try:
        candidates = ["fp16", "bf16", "fp32"] if dtype == "auto" else [dtype]
        chosen, diff = None, None
        for name in candidates:
            folder = tmp_root / name
            write_parts(src, folder, DTYPES[name])
            if name == "fp32" and dtype == "auto":
                chosen, diff = name, 0.0
                break
            if base_pipe is None:
                base_pipe = base_pipeline(src)
            if base_pipe is None:
                if dtype == "auto":
                    raise ValueError(f"{src} was trained on a base this check cannot load; pass --dtype fp16, bf16 "
                                     f"or fp32")
                chosen, diff = name, None
                break
            diff = max_difference(base_pipe, src, folder, steps)
            log(f"ship: {name}: max pixel difference {diff:.5f} from the fp32 parts (tolerance {TOLERANCE:.5f})")
            if diff <= TOLERANCE or dtype != "auto":
                chosen = name
                break
        record = {"source": str(src.resolve()), "dtype": chosen, "max_pixel_difference": diff,
                  "tolerance": TOLERANCE, "check": {"prompts": list(CHECK_PROMPTS), "steps": steps, "cfg": 7.5,
                                                    "frames": 8}}
        folder = tmp_root / chosen
        log_file = src.parent / "log.jsonl"
        if log_file.is_file():
            lines = log_file.read_text().splitlines()
            if lines:
                record["last_log"] = json.loads(lines[-1])
        record["bytes"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        (folder / "ship.json").write_text(json.dumps(record, indent=1) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        folder.rename(dest)
        return record
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from ..micro import MICRO_DIR

    default_dest = MICRO_DIR.parent / "micro-harivo"
    p = argparse.ArgumentParser(prog="python -m pipelines.training.ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a training run folder (its final/ is shipped) or a final/ folder")
    p.add_argument("dest", nargs="?", default=str(default_dest), help=f"destination (default {default_dest})")
    p.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                   help="stored weight dtype; auto: the smallest whose check videos stay within the tolerance")
    p.add_argument("--force", action="store_true", help="replace an existing destination")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        rec = ship(args.run, args.dest, args.dtype, force=args.force,
                   log=lambda s: print(s, file=sys.stderr, flush=True))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"dest": args.dest, "dtype": rec["dtype"], "max_pixel_difference": rec["max_pixel_difference"],
                      "megabytes": round(rec["bytes"] / 1e6, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
