"""A soak: 30+ runs through the API against a server of its own, keeping 5 finished runs. The run folders and
every other file the server writes stay bounded, and its RSS stays within 5 % of its value after warm-up.

`GVS_SOAK_RUNS` changes the number of runs; `GVS_SOAK_REPORT=path` writes the figures as JSON (README)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import free_port, start_app

pytestmark = pytest.mark.slow
PROMPT = "a red circle moving left to right on a black background"
KEEP = 5
WARMUP = 5


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


from pipelines.studio.runs import disk_usage as _files  # noqa: E402 - the server's own (files, bytes) walk


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("soak")
    (d / "tmp").mkdir()
    proc, url = start_app(free_port(), d / "app.log", extra=("--cache-examples", "off", "--keep-runs", str(KEEP)),
                          env_extra={"TMPDIR": str(d / "tmp")})
    yield proc, url, d
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_soak_keeps_disk_and_memory_bounded(soak_server):
    from gradio_client import Client

    proc, url, d = soak_server
    runs_dir, tmp = d / "gradio-cache" / "gvs-runs", d / "tmp"
    n_runs = int(os.environ.get("GVS_SOAK_RUNS", 30))
    client = Client(url, verbose=False)
    rows, seconds = [], []
    for i in range(n_runs):
        t = time.perf_counter()
        result = client.predict(PROMPT, method="none", steps=2, seed=i, api_name="/text_to_video")
        seconds.append(time.perf_counter() - t)
        assert f"seed {i}" in result[4]
        folders = [p for p in runs_dir.iterdir() if p.is_dir()]
        cache_files, cache_bytes = _files(d / "gradio-cache")
        tmp_files, tmp_bytes = _files(tmp)
        rows.append(dict(run=i + 1, rss_mb=_rss_mb(proc.pid), run_folders=len(folders), cache_files=cache_files,
                         cache_bytes=cache_bytes, tmp_files=tmp_files, tmp_bytes=tmp_bytes))
        assert len(folders) <= KEEP + 1, rows[-1]  # the kept runs + the one just made
    base, last = rows[WARMUP - 1], rows[-1]
    per_run = max(r["cache_bytes"] for r in rows[:KEEP]) / KEEP
    # steady state: the files stop growing once KEEP runs are kept
    assert last["cache_files"] <= max(r["cache_files"] for r in rows[: KEEP + 2]) * 1.1 + 5, rows
    assert last["cache_bytes"] <= max(r["cache_bytes"] for r in rows[: KEEP + 2]) * 1.25, rows
    assert last["tmp_files"] <= rows[KEEP]["tmp_files"] + 5, rows  # nothing piles up in the server's TMPDIR
    growth = last["rss_mb"] / base["rss_mb"] - 1
    figures = dict(runs=n_runs, rss_after_warmup_mb=round(base["rss_mb"], 1), rss_end_mb=round(last["rss_mb"], 1),
                   rss_growth_pct=round(100 * growth, 2), bytes_per_run=int(per_run),
                   steady_cache_files=last["cache_files"], steady_cache_bytes=last["cache_bytes"],
                   tmp_files_end=last["tmp_files"], median_request_s=round(sorted(seconds)[len(seconds) // 2], 2))
    print(json.dumps(figures))
    if os.environ.get("GVS_SOAK_REPORT"):
        Path(os.environ["GVS_SOAK_REPORT"]).write_text(json.dumps({"figures": figures, "rows": rows}, indent=1))
    # The target. Before the fix, +5.9–7.0 % over 30 runs: each run's reward figures (reference cycles) lived
    # until a full collection that the CPU path never ran; now -0.1 %.
    assert growth <= 0.05, figures
