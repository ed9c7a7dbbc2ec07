"""Issue #32: TITAN requests sent while the app caches its examples at start-up.

Each try starts the app on an empty example cache (`--cache-examples eager`), and as soon as the port answers sends
TITAN text-to-video requests through gradio_client. The examples (TITAN in three tabs) are being cached at that
moment: two forward-mode AD (`torch.func.jvp`) runs on two threads broke each other ("Trying to access a forward AD
level with an invalid index") and the app exited at start-up. Every request must succeed, every example be cached
and the app serve. `GVS_RACE_TRIES` (default 2) sets the number of tries.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, free_port, test_preset_name
from .waiting import wait_until

pytestmark = pytest.mark.slow
PROMPT = "a red circle moving left to right on a black background"
TRIES = int(os.environ.get("GVS_RACE_TRIES", "2"))
AD_ERROR = "forward AD level"


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def race_once(tmp: Path, requests: int = 2) -> str:
    """One try; returns "" when everything held, else what went wrong."""
    from gradio_client import Client

    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = tmp / "app.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               GRADIO_EXAMPLES_CACHE=str(tmp / "examples-cache"), GRADIO_TEMP_DIR=str(tmp / "gradio-cache"))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--preset", test_preset_name(), "--port",
                                 str(port), "--host", "127.0.0.1", "--cache-examples", "eager"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(ROOT))
    text = lambda: log_path.read_text(errors="replace")  # noqa: E731
    try:
        wait_until(lambda: proc.poll() is not None or _port_answers(port), timeout=300, every=0.05,
                   what="the app's port to answer")
        if proc.poll() is not None:
            return f"exited before serving ({proc.returncode}): {text()[-1500:]}"
        client = None
        deadline = time.monotonic() + 120
        while client is None:  # the page's config may lag the port by a moment
            try:
                client = Client(f"http://127.0.0.1:{port}", verbose=False)
            except Exception as e:  # noqa: BLE001
                if proc.poll() is not None or time.monotonic() > deadline:
                    return f"no client ({e}); app {'exited' if proc.poll() is not None else 'alive'}: {text()[-1500:]}"
                time.sleep(0.1)
        caching = "ready: examples" not in text()
        jobs = [client.submit(request={"prompt": PROMPT, "method": "titan", "steps": 4, "frames": 8, "seed": i},
                              api_name="/text_to_video")
                for i in range(requests)]
        problems = []
        for i, job in enumerate(jobs):
            try:
                job.result(timeout=600)
            except Exception as e:  # noqa: BLE001
                problems.append(f"request {i} failed: {str(e)[:300]}")
        wait_until(lambda: proc.poll() is not None or "ready: examples" in text(), timeout=900,
                   what="every example cached (or the app exiting)")
        if proc.poll() is not None:
            problems.append(f"app exited ({proc.returncode})")
        if AD_ERROR in text():
            problems.append("forward AD error in the log")
        if "example failed" in text():
            problems.append("an example failed")
        if problems:
            return "; ".join(problems) + f" (requests sent while caching: {caching})\n{text()[-2500:]}"
        return "" if caching else "not a race: the examples were already cached when the requests were sent"
    finally:
        client = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_titan_requests_while_the_examples_are_cached_at_start_up(tmp_path):
    outcomes = [race_once(tmp_path / f"try{k}") for k in range(TRIES)]
    failed = [o for o in outcomes if o]
    assert not failed, f"{len(failed)} of {TRIES} tries failed; first:\n{failed[0]}"


def test_examples_that_fail_do_not_stop_start_up_and_are_computed_again_next_time(tmp_path):
    """A cap too short for any run (`--max-job-seconds 0.001`): every example fails at start-up, yet the app starts
    and serves (a request gets the cap's message); restarted without the cap on the same cache, the failed examples
    are computed again."""
    from gradio_client import Client

    from .conftest import start_app

    log = tmp_path / "app.log"
    cache = tmp_path / "examples-cache"
    proc, url = start_app(free_port(), log, extra=("--cache-examples", "eager", "--max-job-seconds", "0.001"))
    try:
        wait_until(lambda: proc.poll() is not None or "ready: examples eager" in log.read_text(), timeout=600,
                   what="start-up to end")
        assert proc.poll() is None, log.read_text()[-3000:]
        assert "example failed: t2v" in log.read_text()
        out = Client(url, verbose=False).predict(request={"prompt": PROMPT, "method": "none", "steps": 3},
                                                 api_name="/text_to_video")
        assert "stopped: the job reached its time cap of 0.001 s (--max-job-seconds)" in out[-1]
        assert out[2] in (None, {"__type__": "update"})  # no video: the output is left as it was
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    failed = [p for p in cache.rglob("log.csv") if "example failed:" in p.read_text()]
    assert failed
    log2 = tmp_path / "app2.log"
    proc, url = start_app(free_port(), log2, extra=("--cache-examples", "eager"))
    try:
        wait_until(lambda: proc.poll() is not None or "ready: examples eager" in log2.read_text(), timeout=900,
                   what="start-up to end")
        assert proc.poll() is None, log2.read_text()[-3000:]
        assert "dropped the cached examples" in log2.read_text()
        assert not [p for p in cache.rglob("log.csv") if "example failed:" in p.read_text()]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
