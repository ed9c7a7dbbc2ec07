"""TITAN's objective depth k costs time, not memory; DOODL's backprop through the chain costs memory.

    python bench/depth_memory.py [--preset micro] [--size 16x32] [--steps 10] [--out bench/depth_memory.jsonl]

One fresh process per row (so each peak is that row's own): TITAN with k = 0 (Tweedie at t−1), k = 3 and k = −1
(the whole remaining chain to t = 0, in forward mode), FreeDoM (backprop through one UNet pass) and DOODL (backprop
through the whole checkpointed chain), with `pipelines.bench.run_bench` (memory added by the generation on top of
what the process held when it started: CUDA allocator or CPU resident set).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROWS = [("titan", {"depth": 0}), ("titan", {"depth": 3}), ("titan", {"depth": -1}), ("freedom", {}), ("doodl", {})]


def one(preset: str, size: str, steps: int, method: str, params: dict) -> dict:
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from pipelines.bench import run_bench\n"
        f"r = next(run_bench(preset={preset!r}, methods=[{method!r}], sizes=[{size!r}], steps={steps}, "
        f"params={{{method!r}: {params!r}}}, warmup=True))\n"
        "print(json.dumps(r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["params"] = params
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="micro")
    ap.add_argument("--size", default="16x32")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rows = []
    print("| method | params | seconds | memory added (MiB) |\n|---|---|---|---|")
    for method, params in ROWS:
        r = one(a.preset, a.size, a.steps, method, params)
        rows.append(r)
        print(f"| {method} | {json.dumps(params)} | {r['seconds']:.1f} | {r['extra_memory_bytes'] / 2**20:.0f} |",
              flush=True)
    if a.out:
        Path(a.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
