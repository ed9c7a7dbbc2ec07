"""Shared fixtures: offline environment, the test preset (micro weights when present, else tiny random components)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"


def test_preset_name() -> str:
    """`GVS_TEST_PRESET`, else `micro` when its weights are committed, else `tiny` (random components)."""
    name = os.environ.get("GVS_TEST_PRESET")
    if name:
        return name
    return "micro" if (ROOT / "assets" / "micro" / "model_index.json").exists() else "tiny"


test_preset_name.__test__ = False  # not a test


@pytest.fixture(scope="session")
def preset():
    from pipelines.presets import load_preset

    return load_preset(test_preset_name(), device="cpu")


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    if not (EXAMPLES / "impacts.wav").exists():
        import subprocess
        import sys

        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_examples.py")], check=True)
    return EXAMPLES


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models run faster on one thread, and a loaded 2-core machine does not oversubscribe."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log_path, extra=("--cache-examples", "lazy"), env_extra=None):
    """The app on 127.0.0.1:port; examples cached lazily (first click computes, later clicks read the cache) in a
    folder beside the log, so the cached path is exercised without computing every example at start-up."""
    # Gradio's cache (uploads, and the app's run folders inside it) beside the log: a test server never shares
    # or leaves files in the machine's /tmp/gradio
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_EXAMPLES_CACHE=str(Path(log_path).parent / "examples-cache"),
               GRADIO_TEMP_DIR=str(Path(log_path).parent / "gradio-cache"), **(env_extra or {}))
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--preset", test_preset_name(), "--port",
                             str(port), "--host", "127.0.0.1", *extra],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(ROOT))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:  # polls for the server, no fixed wait
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}: {open(log_path).read()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                if "Running on" in open(log_path).read():
                    return proc, url
        except OSError:
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"app did not start: {open(log_path).read()[-3000:]}")




@pytest.fixture(scope="session", autouse=True)
def _remove_tokenizer_temp_folders():
    """The tiny test components write their tokenizers to `gvs-tok-*` / `gvs-cliptok-*` temp folders: remove the
    ones this session made."""
    import glob
    import shutil
    import tempfile

    pattern = [os.path.join(tempfile.gettempdir(), p) for p in ("gvs-tok-*", "gvs-cliptok-*")]
    before = {d for p in pattern for d in glob.glob(p)}
    yield
    for d in {d for p in pattern for d in glob.glob(p)} - before:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """One app server (the test preset, on 127.0.0.1) shared by the end-to-end and browser tests: (url, log path).
    Its model folder (`--model-dir`, what web clients may name in the Model fields) is `models/` beside the log."""
    log = tmp_path_factory.mktemp("app") / "app.log"
    (log.parent / "models").mkdir()
    proc, url = start_app(free_port(), log,
                          extra=("--cache-examples", "lazy", "--model-dir", str(log.parent / "models")))
    yield url, log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def app_url(app_server):
    return app_server[0]
