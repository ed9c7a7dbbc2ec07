"""Guided Video Studio: the Gradio app (`python app.py [--preset auto|micro|animatediff] [--port N] [--host H] [--share]
[--model-dir DIR]`).

Wiring only: the command line, the preset, the run store and the server. The page and its events live in
`pipelines.studio` (`layout.build_demo`, `events.wire`), the runs and handlers in `pipelines.studio.handlers`.

Four tabs, one API endpoint each: /text_to_video, /style_transfer, /audio_alignment, /frame_interpolation, and a
`<endpoint>_compare` endpoint per tab that runs the same request unguided and guided (same seed and η). Each takes
`request`, one object of named fields (any left out take the tab's defaults), and the tab's uploads: docs/api.md.
All share the GPU slots (`concurrency_id="gpu"`, limit = number of GPUs, one preset each from
`pipelines.pool.PipelinePool`; 1 on CPU) behind a bounded queue.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pipelines.studio.compute import TorchThread  # noqa: E402
from pipelines.studio.handlers import Studio, log  # noqa: E402,F401  (Studio: the app's handlers, for callers)
from pipelines.studio.layout import CSS, build_demo  # noqa: E402
from pipelines.studio.queueing import configure_queue  # noqa: E402
from pipelines.studio.runs import RunStore  # noqa: E402
from pipelines.studio.threads import ThreadPolicy, describe_threads  # noqa: E402
from pipelines.ui import configure_torch_threads  # noqa: E402

ROOT = Path(__file__).resolve().parent
MAX_FILE_SIZE = "20mb"
QUEUE_MAX_SIZE = 16
CACHE_MODES = ("eager", "lazy", "off")


def _quiet_known_warnings() -> None:
    """transformers warns at import that torchvision is missing for two image processors we never use."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record):
            return "requires torchvision" not in record.getMessage()

    try:
        from transformers.utils import logging as tlog

        root = tlog.get_logger("transformers")
        root.addFilter(_Drop())
        for h in root.handlers:
            h.addFilter(_Drop())
    except Exception:  # transformers missing or changed: the warnings are harmless
        pass


# ------------------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Guided Video Studio (Gradio app)")
    from pipelines.presets import PRESETS, presets_help

    p.add_argument("--preset", default=os.environ.get("GVS_PRESET", "auto"), choices=PRESETS, metavar="PRESET",
                   help=presets_help("auto"))
    p.add_argument("--device", default=None, help="torch device (default: the preset's choice)")
    # A Hugging Face Space sets GRADIO_SERVER_NAME=0.0.0.0; anywhere else the default is this machine only.
    p.add_argument("--host", default=os.environ.get("GVS_HOST") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GVS_PORT", os.environ.get("GRADIO_SERVER_PORT",
                                                                                              7860))))
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--cache-examples", choices=CACHE_MODES,
                   default=os.environ.get("GVS_CACHE_EXAMPLES_MODE", "eager"),
                   help="eager (default): compute the examples' outputs at start-up; lazy: on the first click; "
                        "off: a click fills the inputs and generates")
    p.add_argument("--no-cache-examples", action="store_true", help="same as --cache-examples off (faster start)")
    p.add_argument("--keep-runs", type=int, default=int(os.environ.get("GVS_KEEP_RUNS", 64)),
                   help="finished runs kept on disk (their folders under the runs folder; older ones are deleted)")
    p.add_argument("--model-dir", default=os.environ.get("GVS_MODEL_DIR") or None, metavar="DIR",
                   help="let web clients load trained video parts and LoRAs found inside DIR, named relative to it "
                        "(default: off; the CLI takes any path)")
    p.add_argument("--max-age", type=float, default=float(os.environ.get("GVS_MAX_AGE_S", 24 * 3600)),
                   help="seconds after which a run's folder and Gradio's cached files are deleted (default 1 day)")
    p.add_argument("--max-job-seconds", default=None, metavar="S",
                   help="wall-clock cap of one job (a run, or a Compare's two), checked between steps; 0 = no cap "
                        "(default: GVS_MAX_JOB_S, else sized to the preset and device: micro 300 s on CPU, 120 s on "
                        "GPU; full-size 3600 s on CPU, 900 s on GPU)")
    p.add_argument("--threads", default=os.environ.get("GVS_THREADS", "auto"), metavar="N|auto",
                   help="torch threads per run: auto (default) chooses each run's from the cores free then "
                        "(an explicit OMP_NUM_THREADS wins over auto); N fixes them")
    a = p.parse_args(argv)
    if a.max_job_seconds is not None:
        from pipelines.studio.limits import parse_seconds

        try:
            parse_seconds(a.max_job_seconds)
        except ValueError as e:
            p.error(str(e))
    try:
        ThreadPolicy.from_settings(a.threads, background=False)
    except ValueError as e:
        p.error(str(e))
    if a.no_cache_examples or os.environ.get("GVS_CACHE_EXAMPLES", "1") == "0":
        a.cache_examples = "off"
    return a


def delete_cache_for(max_age_s: float) -> tuple[int, int]:
    """Gradio's `delete_cache` (frequency, age): its own cache (uploads, anything it copies) is swept on the runs'
    age, checked at least hourly."""
    age = max(1, int(max_age_s))
    return max(1, min(age, 3600)), age


def runs_root() -> Path:
    """Where run folders live: inside Gradio's cache folder (served in place, no copy), or `GVS_RUNS_DIR`."""
    from gradio.utils import get_upload_folder

    return Path(os.environ.get("GVS_RUNS_DIR") or Path(get_upload_folder()) / "gvs-runs")


def main(argv=None):
    args = parse_args(argv)
    if args.model_dir and not Path(args.model_dir).is_dir():
        print(f"error: --model-dir: {args.model_dir} is not a folder", file=sys.stderr)
        return 2
    _quiet_known_warnings()
    from pipelines.presets import load_preset

    policy = ThreadPolicy.from_settings(args.threads)  # samples the cores' load in the background from now on
    n_threads, why = configure_torch_threads()
    if policy.fixed is not None:
        import torch

        torch.set_num_threads(policy.fixed)
        threads = describe_threads(policy.fixed, policy.why)
    else:
        threads = f"torch threads chosen per run from the free cores (now {n_threads}: {why})"
    t0 = time.perf_counter()
    from pipelines.pool import PipelinePool, available_devices

    # one preset per GPU (one generation each; Gradio's concurrency limit = number of GPUs); one slot on CPU
    devices = [args.device] if args.device else available_devices()
    # on a CPU every torch call of the app (loading, runs, examples) goes through one thread (studio/compute.py)
    compute = TorchThread() if str(devices[0]).startswith("cpu") else None
    try:
        preset = compute.call(load_preset, args.preset, device=devices[0]) if compute else load_preset(
            args.preset, device=devices[0])
    except ValueError as e:  # an unknown preset or its weights missing (micro-harivo names the command that makes them)
        print(f"error: --preset: {e}", file=sys.stderr)
        return 2
    pool = PipelinePool(lambda d: load_preset(args.preset, device=d),
                        devices if preset.device.type == "cuda" else [devices[0]])
    if len(pool) > 1:  # one slot runs on `preset` itself (Studio._preset): nothing more to load
        pool.warm()
    log(f"preset {preset.name} on {preset.device}: {preset.reason} ({time.perf_counter() - t0:.1f} s); {threads}")
    # one cache folder per preset: cached outputs of the micro preset must not be shown for animatediff
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(ROOT / ".gradio" / "cached_examples" / preset.name))
    store = RunStore(runs_root(), keep=args.keep_runs, max_age_s=args.max_age)
    removed = store.prune()
    log(f"runs in {store.root}: keeping the last {store.keep} finished runs and nothing older than "
        f"{store.max_age_s:g} s" + (f" ({len(removed)} old runs deleted)" if removed else ""))
    demo = build_demo(preset, cache_examples=args.cache_examples, threads=threads, pool=pool, store=store,
                      delete_cache=delete_cache_for(args.max_age), compute=compute, model_dir=args.model_dir,
                      max_job_seconds=args.max_job_seconds, thread_policy=policy)
    if args.model_dir:
        log(f"model fields: names inside {Path(args.model_dir).resolve()}")
    if not configure_queue(demo, QUEUE_MAX_SIZE):
        log("this Gradio's queue has no polling intervals to set: it polls every 1 ms (slower runs on a small CPU)")
    t_ready = time.perf_counter()

    async def _ready():  # runs after every example's start-up caching (Gradio runs these in order)
        log(f"ready: examples {args.cache_examples} ({time.perf_counter() - t_ready:.1f} s); "
            f"serving on http://{args.host}:{args.port}")

    demo.extra_startup_events.append(_ready)
    # show_error=False: no raw exception text for a client, whatever raises; messages come from guard() (build_demo)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                allowed_paths=[str(store.root)], show_error=False, footer_links=["api", "gradio"], css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
