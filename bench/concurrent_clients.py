"""Concurrent clients: N gradio_client jobs submitted at once to one `python app.py` (micro preset, t2v, `none`,
20 steps, distinct seeds). The app runs one generation at a time (its queue); every job must be served.

    python bench/concurrent_clients.py [--clients 4] [--steps 20] [--method none]

Per job: the queue wait (submit → the job's first PROCESSING/ITERATING status, polled every 50 ms), the total time
(submit → result) and whether it finished with a video. One JSON line with the figures, then a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = "a red circle moving left to right on a black background"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--method", default="none")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gradio_client import Client
    from gradio_client.utils import Status

    from tests.conftest import free_port, start_app

    d = Path(tempfile.mkdtemp(prefix="gvs-bench-"))
    proc, url = start_app(free_port(), d / "app.log", extra=("--preset", "micro", "--cache-examples", "off"))
    try:
        Client(url, verbose=False).predict(request={"prompt": PROMPT, "method": a.method, "steps": a.steps, "seed": 0},
                                           api_name="/text_to_video")  # warm-up
        t0 = time.perf_counter()
        started, done, ok = {}, {}, {}

        def one(k: int) -> None:
            client = Client(url, verbose=False)
            job = client.submit(request={"prompt": PROMPT, "method": a.method, "steps": a.steps, "seed": 100 + k},
                                api_name="/text_to_video")
            while not job.done():
                if k not in started and job.status().code in (Status.PROCESSING, Status.ITERATING, Status.PROGRESS):
                    started[k] = time.perf_counter() - t0
                time.sleep(0.05)
            out = job.result()
            done[k] = time.perf_counter() - t0
            started.setdefault(k, done[k])
            ok[k] = bool(out and out[0])

        threads = [threading.Thread(target=one, args=(k,)) for k in range(a.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        waits = [started[k] for k in range(a.clients)]
        totals = [done[k] for k in range(a.clients)]
        res = {"clients": a.clients, "served": sum(ok.values()), "method": a.method, "steps": a.steps,
               "queue_wait_s": [round(w, 2) for w in sorted(waits)], "total_s": [round(t, 2) for t in sorted(totals)],
               "median_wait_s": round(statistics.median(waits), 2), "max_wait_s": round(max(waits), 2),
               "all_done_s": round(max(totals), 2)}
        print(json.dumps(res))
        print("| job | queue wait s | total s | video |\n|---|---|---|---|")
        for k in sorted(range(a.clients), key=lambda k: started[k]):
            print(f"| {k} | {started[k]:.2f} | {done[k]:.2f} | {'yes' if ok[k] else 'no'} |")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
