#!/usr/bin/env bash
# The exact tables of bench/EVALUATE.md: micro preset, 20 DDIM steps (t2v-hard: 2), 8 frames, η = 1 for every
# method, 4 cases × 2 seeds per suite; 2 processes (torchrun; accelerate's split of the grid) on the 2-core CPU.
# Resumable: rerun to finish.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/evaluate}
V0='titan[update=rms,step_size=0.1,fill=tile]'   # TITAN as first implemented (and as the public code steps)
run() { python -m torch.distributed.run --nproc_per_node "${NPROC:-2}" --master_port "${PORT:-29611}" \
          -m pipelines evaluate --threads 1 --seeds 2 --cases 4 --out "$OUT" "$@"; }
run --suite style       --methods "none,titan,$V0,titan[update=noise,step_size=1],freedom,mpgd,free2guide"
run --suite audio       --methods "none,titan,$V0,freedom,mpgd,free2guide"
run --suite t2v-hard    --methods "none,titan,$V0,freedom,mpgd,free2guide"
run --suite interpolate --methods "none,none[mode=replacement],none[mode=both],titan,titan[mode=both],titan[mg=40],$V0,freedom,mpgd"
run --suite mg          --methods "none,none[mg=10],none[mg=40],none[mg=100],none[mg=40,mg_norm=true]"
# Sweeps behind the per-task defaults (same folder: the summary holds every row)
run --suite t2v-hard    --methods "titan[step_size=0.5],titan[step_size=1],titan[step_size=2],titan[update=noise,step_size=0.3],free2guide[num_candidates=16],mpgd[scale=noise,rho=0.5]"
run --suite audio       --methods "titan[step_size=1],titan[update=noise,step_size=1],mpgd[scale=noise,rho=1]"
# 2026-11-21 (4f307e3): reward-only text guidance (the model's prompt is empty), Free²Guide's guided range and candidate count
# (Free²Guide Tables 5–6 in miniature), and the direct guess's fill on interpolation
run --suite t2v-reward  --methods "none,titan,titan[update=x0,step_size=5,fill=auto],titan[update=x0,step_size=15,fill=auto],freedom,freedom[scale=noise,rho=1],mpgd,mpgd[scale=noise,rho=1],free2guide"
run --suite t2v-reward  --cases 8 --methods "none,titan,titan[update=x0,step_size=15,fill=auto],freedom[scale=noise,rho=1],mpgd[scale=noise,rho=1],free2guide"
run --suite audio       --methods "free2guide[guided_fraction=0.1],free2guide[guided_fraction=0.25],free2guide[guided_fraction=0.5],free2guide[num_candidates=2],free2guide[num_candidates=4],free2guide[num_candidates=16]"
run --suite interpolate --methods "titan[fill=lerp],titan[fill=tile]"
run --suite interpolate-agree --methods "none,none[mode=replacement],none[mode=both],titan,titan[mode=both],titan[mg=40],freedom,mpgd"
run --suite style       --methods "titan[update=raw,step_size=1],titan[update=raw,step_size=5],freedom[scale=noise,rho=1],freedom[scale=noise,rho=3],freedom[rho=2]"
run --suite audio       --methods "freedom[scale=noise,rho=1],titan[update=noise,step_size=3],titan[update=raw,step_size=1]"
# Free²Guide's ensembles and LVLM policies against the micro world's stand-in judge (a server on port 8765)
python -m pipelines.micro.judge --port 8765 & JUDGE=$!
trap 'kill $JUDGE 2>/dev/null' EXIT
sleep 10
export GVS_LVLM_URL=http://127.0.0.1:8765/v1 GVS_LVLM_MODEL=micro-judge
run --suite t2v-reward  --cases 8 \
  --methods "free2guide[reward=lvlm],free2guide[reward=lvlm,policy=binary],free2guide[reward=clip+lvlm weighted],free2guide[reward=clip+lvlm normalized],free2guide[reward=clip+lvlm borda]"
# 2026-11-21 (26debc2): TITAN's objective on its sampled frames only (the speed option at real sizes)
run --suite style       --methods "titan[objective_subset=true]"
run --suite t2v-reward  --cases 8 --methods "titan[objective_subset=true]"
python -m pipelines evaluate --suite all --summarize --out "$OUT" > /dev/null
