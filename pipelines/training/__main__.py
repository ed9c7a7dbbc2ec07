"""Training entry: `python -m pipelines.training --config NAME|FILE [--set key=value ...] [--steps N] [--out DIR]
[--resume]` (HARIVO), `python -m pipelines.training micro-models --stages ... [...]` (the micro models' stages,
`micro_stages`; `--help` for its flags)."""
from __future__ import annotations

import argparse
import json
import sys

from .config import load_config, parse_override


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["micro-models"]:
        from .micro_stages import main as micro_main

        return micro_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m pipelines.training", description=__doc__)
    p.add_argument("--config", default="micro", help="a named config (micro, tiny, sd15) or a JSON file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (JSON value), e.g. --set w_dc=0 --set frame_tokens=none")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", default=None, help="output folder (log, checkpoints, final/)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step (checkpoint written)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        over = dict(parse_override(s) for s in args.set)
        if args.steps is not None:
            over["steps"] = args.steps
        if args.out is not None:
            over["out"] = args.out
        cfg = load_config(args.config, over)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .loop import train

    res = train(cfg, resume=args.resume, stop_at=args.stop_at, quiet=args.quiet)
    if res["log"]:
        last = {k: round(v, 5) for k, v in res["log"][-1].items() if k not in ("lr",)}
        line = json.dumps({"processes": res["processes"], "steps_run": res["steps"],
                           "seconds": round(res["seconds"], 2), "last": last, "final": res["final"]})
        # one write of the whole line: under `accelerate launch` every process reports on the same (often
        # unbuffered) stdout, and print's separate write of the newline let two reports run together
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
