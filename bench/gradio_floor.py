"""The least a request costs through Gradio: an endpoint with the text-to-video tab's outputs (preview image, plot,
video, report file, status) that computes nothing and returns files written beforehand, called like
`bench/app_vs_cli.py` calls the app: the server in its own process, gradio_client on 127.0.0.1, medians.

    python bench/gradio_floor.py [--rows 1,3,6] [--repeats 9]

`rows`: rows the handler yields (the app streams its first and last step, one row every 0.5 s, then the final row).
If this floor is a fifth of a run's CLI time, no change inside the app can bring that run within 1.2x of the CLI.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve(port: int, folder: Path) -> None:
    """The server: one endpoint `/floor(n)` yielding n rows of the tab's outputs (files written beforehand)."""
    import gradio as gr
    import numpy as np

    from pipelines import media
    from pipelines.studio.queueing import configure_queue
    from pipelines.ui import PLOT_COLOR, PLOT_X, PLOT_Y, reward_plot_data

    frames = np.zeros((8, 32, 32, 3), np.float32)
    frames[:, 8:16, 8:16, 0] = 1
    media.write_mp4(folder / "v.mp4", frames, 8, min_side=384)
    media.preview_grid(frames, 128).save(folder / "p.png")
    (folder / "r.json").write_text(json.dumps({"ok": True}))
    series = {"task reward": [0.1 * i for i in range(20)]}

    def handler(n):
        for i in range(int(n) - 1):
            yield str(folder / "p.png"), reward_plot_data(series), gr.skip(), gr.skip(), f"step {i}"
        yield str(folder / "p.png"), reward_plot_data(series), str(folder / "v.mp4"), str(folder / "r.json"), "done"

    with gr.Blocks() as demo:
        n = gr.Number(value=3, precision=0)
        outs = [gr.Image(type="filepath"), gr.LinePlot(x=PLOT_X, y=PLOT_Y, color=PLOT_COLOR), gr.Video(), gr.File(), gr.Textbox()]
        gr.Button().click(handler, n, outs, api_name="floor")
    configure_queue(demo, 16)  # the app's queue and polling intervals
    demo.launch(server_name="127.0.0.1", server_port=port, allowed_paths=[str(folder)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,3,6")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--no-download", action="store_true", help="the client does not download the output files")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        return serve(a.serve, Path(a.folder))
    import subprocess

    from gradio_client import Client

    from tests.conftest import free_port
    from tests.waiting import wait_until

    d = Path(tempfile.mkdtemp(prefix="gvs-floor-"))
    folder = d / "gradio" / "floor"
    folder.mkdir(parents=True)
    port = free_port()
    env = dict(os.environ, GRADIO_TEMP_DIR=str(d / "gradio"), GRADIO_ANALYTICS_ENABLED="False")
    log = open(d / "server.log", "w")
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--folder", str(folder)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            text = (d / "server.log").read_text()
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {text[-2000:]}")
            return "Running on" in text

        wait_until(up, timeout=120, every=0.2, what="the floor server")
        client = Client(f"http://127.0.0.1:{port}", verbose=False,
                        **({"download_files": False} if a.no_download else {}))
        client.predict(3, api_name="/floor")
        for rows in [int(r) for r in a.rows.split(",")]:
            ts = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                client.predict(rows, api_name="/floor")
                ts.append(time.perf_counter() - t)
            print(json.dumps({"rows": rows, "download": not a.no_download, "median_s": round(statistics.median(ts), 3),
                              "min_s": round(min(ts), 3), "load": round(os.getloadavg()[0], 2)}), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
