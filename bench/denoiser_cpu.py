"""CPU seconds of one unguided and one TITAN micro run through the CLI (docs/denoiser.md, "Size of the interface").

Runs `python -m pipelines generate --preset micro --task t2v --steps 8` for each method `--repeats` times, in the
directory given (a checkout: compare two commits by running this from each), and prints each run's user + system
CPU seconds of the whole command (read from the child's rusage) with the best and the median, plus the run's
final reward (equal rewards: the same video). `--calls` instead counts the Python calls (cProfile) of one TITAN
micro run in this process (8 steps, 8 frames, after one warm-up run): a figure of the work done that the machine's
load does not move. Usage (from the checkout to measure, for `--calls`):

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/denoiser_cpu.py [--root .] [--repeats 3]
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=. python bench/denoiser_cpu.py --calls
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

PROMPT = "a red circle moving left to right on a black background"


def one_run(root: str, method: str, out_dir: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = os.path.join(out_dir, f"{method}.json")
    cmd = [sys.executable, "-m", "pipelines", "generate", "--preset", "micro", "--task", "t2v", "--prompt", PROMPT,
           "--method", method, "--steps", "8", "--seed", "1", "--out", os.path.join(out_dir, f"{method}.mp4"),
           "--report", report, "--quiet"]
    subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(report) as f:
        reward = json.load(f).get("final_reward")
    return cpu, reward


def count_calls() -> None:
    import cProfile
    import pstats

    import torch

    from pipelines.guidance import make_guidance
    from pipelines.presets import load_preset

    torch.set_num_threads(1)
    pipe = load_preset("micro").pipe
    pipe.set_progress_bar_config(disable=True)

    from rewards.base import Reward

    class Target(Reward):  # −mean((frame − 0.5)²), differentiable
        name = "target"

        def __call__(self, frames, frame_indices=None, num_frames=None):
            return -((frames - 0.5) ** 2).mean(dim=(1, 2, 3))

    def run():
        return pipe(prompt=PROMPT, num_frames=8, num_inference_steps=8, output_type="pt", reward=Target(),
                    generator=torch.Generator().manual_seed(1), guidance=make_guidance("titan")).final_reward

    run()
    prof = cProfile.Profile()
    prof.enable()
    reward = run()
    prof.disable()
    stats = pstats.Stats(prof)
    print(f"titan micro run: {stats.total_calls} Python calls ({stats.prim_calls} primitive), final reward {reward}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="the checkout to run (default: here)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", action="store_true", help="count the Python calls of one TITAN run instead")
    a = ap.parse_args()
    if a.calls:
        count_calls()
        return
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("none", "titan"):
            runs = [one_run(a.root, method, tmp) for _ in range(a.repeats)]
            cpus = [c for c, _ in runs]
            rewards = sorted({r for _, r in runs})
            print(f"{method:6s} cpu_s best={min(cpus):.2f} median={statistics.median(cpus):.2f} "
                  f"runs={' '.join(f'{c:.2f}' for c in cpus)} final_reward={rewards}")


if __name__ == "__main__":
    main()
