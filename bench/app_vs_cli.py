"""The app's time beside the CLI's for the same request (micro preset, t2v, seed 0, 20 steps).

    python bench/app_vs_cli.py [--methods none,titan] [--repeats 3] [--no-download] [--client gradio_client|http]
                               [--no-pause] [--app-env KEY=VALUE ...]

app: wall time of one `/text_to_video` request through gradio_client against `python app.py` on 127.0.0.1 (the
server warmed by one request first): streaming, previews, plot, mp4, and the client's download of the output files
(mp4, report, preview grid; `--no-download`: until the final row with their URLs arrives, about 0.05 s less per file).
`--client http`: the request posted to Gradio's REST API and its event stream read until `complete` (no download,
none of gradio_client's 50 ms message polling).
cli: wall time of what `python -m pipelines generate` does after loading the models (validate, sample, write the
mp4 and report), in a warm process with the same torch threads, while the app's process is paused (SIGSTOP; it is
resumed 0.2 s before each of its own requests): an idle Gradio server polls its queue, which slowed the CLI beside it
(`--no-pause`: the old measure, server left running). Medians; one JSON line per method: `ratio` is the ratio of the
medians, `pair_ratio` the median of each app run over the CLI run right after it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = "a red circle moving left to right on a black background"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="none,titan")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-download", action="store_true",
                    help="the client does not download the output files: the app's time ends when the final row "
                         "(with the files' URLs) arrives, as the CLI's ends when its files are on disk")
    ap.add_argument("--client", choices=("gradio_client", "http"), default="gradio_client",
                    help="http: Gradio's REST API read directly (no download, no gradio_client polling)")
    ap.add_argument("--no-pause", action="store_true",
                    help="leave the app's process running while the CLI runs (its idle queue loop then shares the CPU)")
    ap.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment variable for the app's process only (e.g. OMP_NUM_THREADS=1)")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import httpx
    from gradio_client import Client

    from pipelines.keyvalue import parse_pairs
    from pipelines.presets import load_preset
    from pipelines.request import GenerationRequest, finalize, run, validate
    from pipelines.ui import configure_torch_threads
    from tests.conftest import free_port, start_app

    configure_torch_threads()
    d = Path(tempfile.mkdtemp(prefix="gvs-bench-"))
    app_env = parse_pairs(a.app_env, "--app-env KEY=VALUE")
    proc, url = start_app(free_port(), d / "app.log", extra=("--preset", "micro", "--cache-examples", "off"),
                          env_extra=app_env)
    http = None
    try:
        client = Client(url, verbose=False, **({"download_files": False} if a.no_download else {}))
        preset = load_preset("micro", device="cpu")

        pause = not a.no_pause and hasattr(signal, "SIGSTOP")
        if a.client == "http":
            # the REST API takes one object of named fields (docs/api.md); the server fills the rest with defaults
            http = httpx.Client(timeout=600)

        def http_once(method):
            data = [{"prompt": PROMPT, "method": method, "steps": a.steps, "seed": 0}]
            event = http.post(f"{url}/gradio_api/call/text_to_video", json={"data": data}).json()["event_id"]
            with http.stream("GET", f"{url}/gradio_api/call/text_to_video/{event}") as r:
                for line in r.iter_lines():
                    if line.startswith("event: error"):
                        raise RuntimeError(f"the app answered an error: {line}")
                    if line.startswith("event: complete"):
                        return
            raise RuntimeError("the event stream ended without `complete`")

        def app_once(method):
            if pause:
                os.kill(proc.pid, signal.SIGCONT)
                time.sleep(0.2)  # outside the timing: the server's loops catch up after the pause
            try:
                t = time.perf_counter()
                if a.client == "http":
                    http_once(method)
                else:
                    client.predict(request={"prompt": PROMPT, "method": method, "steps": a.steps, "seed": 0},
                                   api_name="/text_to_video")
                return time.perf_counter() - t
            finally:
                if pause:
                    os.kill(proc.pid, signal.SIGSTOP)

        def cli_once(method):
            t = time.perf_counter()
            prep = validate(GenerationRequest(task="t2v", prompt=PROMPT, method=method, seed=0, steps=a.steps),
                            preset)
            gen = run(prep, preset)
            for _ in gen:
                pass
            finalize(gen, d / "o.mp4", d / "o.json")
            return time.perf_counter() - t

        for method in a.methods.split(","):
            app_once(method), cli_once(method)  # warm-up
            apps, clis = [], []
            for _ in range(a.repeats):  # interleaved, so a change of machine load hits both
                apps.append(app_once(method))
                clis.append(cli_once(method))
            app_s, cli_s = statistics.median(apps), statistics.median(clis)
            # each app run against the CLI run right after it: steadier than the ratio of medians when the machine's
            # speed drifts during the bench
            pair = statistics.median(x / y for x, y in zip(apps, clis))
            print(json.dumps({"method": method, "steps": a.steps, "app_s": round(app_s, 2), "cli_s": round(cli_s, 2),
                              "ratio": round(app_s / cli_s, 2), "pair_ratio": round(pair, 2), "client": a.client,
                              "download": not a.no_download and a.client != "http", "paused": pause,
                              "app_runs": [round(x, 2) for x in apps], "cli_runs": [round(x, 2) for x in clis],
                              "app_env": app_env, "load": round(os.getloadavg()[0], 2)}), flush=True)
    finally:
        if http is not None:
            http.close()
        if hasattr(signal, "SIGCONT"):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
