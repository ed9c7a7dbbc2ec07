"""`bench/gpu_quick.sh --tiny`: the GPU benchmark's own code on tiny components on the CPU, so it cannot rot
before a GPU runs it (every row runs and the one table is printed)."""
from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT


def test_gpu_quick_tiny_prints_one_table():
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_quick.sh"), "--tiny"], capture_output=True, text=True,
                       env=env, cwd=str(ROOT), timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| backbone")]
    got = {(c[1].strip(), c[3].strip()) for c in (line.split("|") for line in rows)}
    assert got == {(b, m) for b in ("animatediff", "wan") for m in ("none", "titan", "freedom")}
    assert all(line.rstrip().endswith("| ok |") for line in rows), r.stdout
    assert "| wan | 5x16x32 |" in r.stdout


def test_gpu_quick_refuses_without_a_gpu_unless_tiny():
    import torch

    if torch.cuda.is_available():  # on a GPU machine the real run is what the script does
        return
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_quick.py")], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "no CUDA GPU" in r.stderr
