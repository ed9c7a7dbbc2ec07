#!/usr/bin/env bash
# The real-size matrix on a CUDA GPU (issue #9). Not run yet: no GPU was available where it was written.
# Each command writes DIR/bench.jsonl, DIR/bench.md (with this command and the GPU's name) and two plots.
# About 100 generations at 10 steps; FreeDoM at 32×512² fp32 may run out of memory (recorded as a failed row).
set -euo pipefail
export HF_HUB_OFFLINE=1
# optional: the fused forward-mode attention kernel (else TITAN uses chunked math attention)
#   pip install 'guided-video-studio[jvp-flash]'
python -m pipelines bench --preset sd15-random --matrix --methods none,titan,freedom,free2guide \
  --frames 8,16,24,32 --sides 256,512 --dtypes float32,float16 --steps 10 --out bench/matrix_gpu_sd15
# the 12 GB preset's set-up (fp16 text encoder + VAE slicing; float16 = fp16 UNet/VAE too)
python -m pipelines bench --preset sd15-random-lean --matrix --methods none,titan \
  --frames 16 --sides 512 --dtypes float32,float16 --steps 10 --out bench/matrix_gpu_lean
# TITAN's jvp attention kernels side by side (math = the N×N matrices the issue is about)
for k in math chunked flash; do
  GVS_JVP_ATTENTION=$k python -m pipelines bench --preset sd15-random --methods titan --sizes 16x512 --steps 10
done > bench/matrix_gpu_sd15/titan_attention_kernels.jsonl
# the lean decode against the plain one (every decoder activation of every frame kept for the backward)
for d in 1 0; do
  GVS_LEAN_DECODE=$d python -m pipelines bench --preset sd15-random --methods titan,mpgd --sizes 16x512 --steps 10
done > bench/matrix_gpu_sd15/lean_decode.jsonl
# TITAN decoding only its sampled frames in the jvp (objective_subset): the decoder's share of a guided step
python -m pipelines bench --preset sd15-random --methods titan --sizes 16x512 --steps 10 \
  --param titan.objective_subset=true >> bench/matrix_gpu_sd15/lean_decode.jsonl
python -m pytest -q tests/test_forward_ad.py  # includes the GPU-only check of the fused kernel (1e-4)
