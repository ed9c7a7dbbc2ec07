"""Few-step guided sampling on the micro world (issue 17): the exact suites under another scheduler.

    python bench/few_step.py --scheduler dpmsolver++ --steps 8 --suite style --methods none,titan --seeds 2 --out DIR

Loads the micro preset, swaps its DDIM scheduler for the named one (same betas, prediction type), and runs
`pipelines.evaluation.grid.evaluate` (the same cells, exact metrics and summary as `python -m pipelines evaluate`).
`--scheduler ddim` keeps the preset's own scheduler (the 20-step reference).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCHEDULERS = {
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


def main(argv=None) -> None:
    import diffusers

    from pipelines.evaluation.grid import evaluate
    from pipelines.evaluation.specs import split_specs
    from pipelines.presets import load_preset

    p = argparse.ArgumentParser()
    p.add_argument("--scheduler", default="dpmsolver++", choices=["ddim", *SCHEDULERS])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--suite", default="style")
    p.add_argument("--methods", default="none,titan")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--max-cases", type=int, default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    preset = load_preset("micro", device="cpu")
    if a.scheduler != "ddim":
        cls, extra = SCHEDULERS[a.scheduler]
        preset.pipe.scheduler = getattr(diffusers, cls).from_config(preset.pipe.scheduler.config, **extra)
    evaluate(a.suite.split(","), split_specs(a.methods), list(range(a.seeds)), a.out, preset_name="micro",
             steps=a.steps, max_cases=a.max_cases)
    print((Path(a.out) / "summary.md").read_text())


if __name__ == "__main__":
    main()
