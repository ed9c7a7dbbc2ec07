#!/usr/bin/env bash
# The Space check: a fresh venv with requirements.txt alone (no `pip install .`, no test extras), then import app.py
# and build the demo on the micro preset, from the repository root as a Space runs it. Run by .ci/run.
# GVS_SPACE_VENV=DIR keeps the venv somewhere else (default: a temporary folder, removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/requirements.py --check
TMP="$(mktemp -d)"
VENV="${GVS_SPACE_VENV:-$TMP/venv}"
trap 'rm -rf "$TMP"' EXIT
python3 -m venv "$VENV"
# CPU torch first (the machine's local wheel dir, as .ci/run does), so requirements.txt never pulls the CUDA build
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q -r requirements.txt
HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False "$VENV/bin/python" - <<'PY'
import sys, pathlib
import app  # the Space's app_file, imported from the repository root
from pipelines.presets import load_preset

assert not any("site-packages" in str(pathlib.Path(m.__file__)) for m in (sys.modules["pipelines"],)), \
    "pipelines must come from the repository, not an installed copy"
demo = app.build_demo(load_preset("micro", device="cpu"), cache_examples="off")
print(f"space check: requirements.txt alone imports app.py and builds the demo ({type(demo).__name__})")
PY
