"""One 20-step micro `none` run timed on the main thread, on a second thread, and on the app's one torch thread;
or (`--burners`) with 1 thread, 2 threads and the app's per-run choice beside 0-3 CPU-burning processes.

    python bench/torch_threads.py [--steps 20] [--repeats 3]
    python bench/torch_threads.py --burners 0,1,2,3 [--steps 10] [--repeats 2]

Prints one JSON line per case (median seconds). With GNU OpenMP (PyTorch's CPU wheels), once two threads have run
parallel regions every kernel slows down on a machine with few cores; `pipelines.studio.compute.TorchThread` keeps
all of the app's torch work on one thread. Each case runs in a fresh process, so one case cannot slow the next.

`--burners`: for each count, that many `while True: pass` processes run beside one process that times the run with
`torch.set_num_threads(1)`, `(2)` and `auto` (`pipelines.studio.threads.ThreadPolicy`: chosen before each run from
the cores free, as the app does; the threads it chose are printed). OMP_NUM_THREADS is removed from the timing
process's environment.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle moving left to right on a black background"
CASES = {
    "main thread (loaded there too)": "main",
    "a second thread (model loaded on the main thread)": "worker",
    "main thread, after a second thread ran once": "main_after_worker",
    "TorchThread (loaded and run there)": "torch_thread",
}


def _case(kind: str, steps: int, repeats: int) -> list[float]:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.presets import load_preset
    from pipelines.request import GenerationRequest, finalize, run, validate
    from pipelines.studio.compute import TorchThread
    from pipelines.ui import configure_torch_threads

    configure_torch_threads()
    out = Path(tempfile.mkdtemp(prefix="gvs-threads-"))
    tt = TorchThread() if kind == "torch_thread" else None
    preset = tt.call(load_preset, "micro", device="cpu") if tt else load_preset("micro", device="cpu")

    def once():
        prep = validate(GenerationRequest(task="t2v", prompt=PROMPT, method="none", seed=0, steps=steps), preset)
        gen = run(prep, preset)
        for _ in gen:
            pass
        finalize(gen, out / "o.mp4", out / "o.json")

    other = ThreadPoolExecutor(1)
    call = {"main": once, "main_after_worker": once, "worker": lambda: other.submit(once).result(),
            "torch_thread": lambda: tt.call(once)}[kind]
    if kind == "main_after_worker":
        other.submit(once).result()
    call()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def _threads_case(steps: int, repeats: int) -> dict:
    """In the child: {mode: {"times": [...], "threads": [...]}} for modes 1, 2 and auto, one process, main thread."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from pipelines.presets import load_preset
    from pipelines.request import GenerationRequest, run, validate
    from pipelines.studio.threads import FreeCores, ThreadPolicy

    preset = load_preset("micro", device="cpu")
    policy = ThreadPolicy(None, "", FreeCores())

    def once():
        prep = validate(GenerationRequest(task="t2v", prompt=PROMPT, method="none", seed=0, steps=steps), preset)
        for _ in run(prep, preset):
            pass

    out = {}
    for mode in ("1", "2", "auto"):
        times, chosen = [], []
        for k in range(repeats + 1):  # the first is a warm-up
            n = policy.apply()[0] if mode == "auto" else int(mode)
            torch.set_num_threads(n)
            t = time.perf_counter()
            once()
            if k:
                times.append(time.perf_counter() - t)
                chosen.append(n)
        out[mode] = {"times": times, "threads": chosen}
    return out


def _burners_bench(counts, steps: int, repeats: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    for count in counts:
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
        try:
            res = subprocess.run([sys.executable, __file__, "--case", "threads", "--steps", str(steps), "--repeats",
                                  str(repeats)], capture_output=True, text=True, check=True, env=env)
        finally:
            for b in burners:
                b.kill()
                b.wait()
        got = json.loads(res.stdout.strip().splitlines()[-1])
        for mode, r in got.items():
            print(json.dumps({"burners": count, "threads": mode, "chosen": r["threads"], "steps": steps,
                              "median_s": round(statistics.median(r["times"]), 2),
                              "load": round(os.getloadavg()[0], 2)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--burners", default=None, help="comma-separated counts of CPU burners, e.g. 0,1,2,3")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one case, in the child process
    a = ap.parse_args()
    if a.case == "threads":
        print(json.dumps(_threads_case(a.steps, a.repeats)))
        return
    if a.case:
        print(json.dumps(_case(a.case, a.steps, a.repeats)))
        return
    if a.burners is not None:
        _burners_bench([int(x) for x in a.burners.split(",") if x.strip()], a.steps, a.repeats)
        return
    for label, kind in CASES.items():
        res = subprocess.run([sys.executable, __file__, "--case", kind, "--steps", str(a.steps), "--repeats",
                              str(a.repeats)], capture_output=True, text=True, check=True)
        times = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps({"case": label, "steps": a.steps, "median_s": round(statistics.median(times), 2),
                          "load": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
