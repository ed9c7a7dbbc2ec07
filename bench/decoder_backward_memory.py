"""Memory of one reverse-mode decode at real size: SD 1.5's VAE decoder (random init) over F latent frames of
64×64 (512² frames), reward = mean squared pixel, gradient w.r.t. the latents: what TITAN's direct guess, FreeDoM,
MPGD, TFG and DOODL pay on top of their UNet work. Plain (every activation of every frame kept for the backward)
against lean (`Denoiser.decode` at ≥ 256²: one frame at a time, checkpointed, the decoder's blocks checkpointed
inside). One JSON line per call; run each mode in its own process (peak RSS is per process):

    for m in plain lean; do OMP_NUM_THREADS=2 python bench/decoder_backward_memory.py $m --frames 2; done
"""
from __future__ import annotations

import argparse
import json
import time
import types

import torch

from pipelines.memory import PeakMemory
from pipelines.sampler import Denoiser
from pipelines.testing import realsize_components


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["plain", "lean"])
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--side", type=int, default=512)
    a = p.parse_args(argv)
    vae = realsize_components()["vae"].eval().requires_grad_(False)
    ctx = Denoiser.__new__(Denoiser)  # only what decode() reads
    ctx.vae, ctx.pipe, ctx.decode_chunk_size = vae, types.SimpleNamespace(vae_scale_factor=8), 16
    ctx.lean_decode = a.mode == "lean"
    z = torch.randn(1, 4, a.frames, a.side // 8, a.side // 8, generator=torch.Generator().manual_seed(0))
    mem = PeakMemory("cpu")
    mem.reset()
    start, t0 = mem.current(), time.perf_counter()
    x = z.clone().requires_grad_(True)
    with torch.enable_grad():
        r = ctx.decode(x).square().mean(dim=(1, 2, 3)).sum()
        (g,) = torch.autograd.grad(r, x)
    print(json.dumps({"mode": a.mode, "frames": a.frames, "side": a.side, "threads": torch.get_num_threads(),
                      "seconds": round(time.perf_counter() - t0, 1),
                      "added_gib": round((mem.peak() - start) / 2**30, 2), "grad_norm": float(g.norm())}))


if __name__ == "__main__":
    main()
