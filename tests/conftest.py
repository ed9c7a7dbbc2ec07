"""Shared fixtures: offline environment, the test preset (micro weights when present, else tiny random components)."""
from __future__ import annotations

import os
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
