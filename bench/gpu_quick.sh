#!/usr/bin/env bash
# Seconds and peak GiB of unguided / TITAN / FreeDoM on real-size random-initialised AnimateDiff (16x512², fp32) and
# Wan 2.1 1.3B (33x480x832, bf16 transformer, fp32 VAE), built in code from their configs: no download, one table.
# Needs a CUDA GPU; stops starting rows after 7 minutes and is killed at 8 (`timeout`).
#   bash bench/gpu_quick.sh            # on a GPU
#   bash bench/gpu_quick.sh --tiny     # the same code on tiny components, CPU (tests/test_gpu_quick.py)
# Record the printed table in bench/GPU_QUICK.md with the date, the commit and this command.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${PYTHON:-python}"
exec timeout 480 "$PY" bench/gpu_quick.py --budget 420 "$@"
