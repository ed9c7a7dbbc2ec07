"""Seconds and peak GPU memory of unguided, TITAN and FreeDoM on real-size AnimateDiff and Wan 2.1 1.3B, randomly
initialised from their configs in code (no download), as one table. Run through `bash bench/gpu_quick.sh` (a CUDA
GPU, under 8 minutes); `--tiny` runs the same code on tiny components on the CPU (the test that keeps it working).

Rows: backbone × method at the presets' default sizes (AnimateDiff 16 × 512², fp32 as `animatediff`; Wan 33 × 480 ×
832, bf16 transformer and fp32 VAE as `wan`, its umT5 encoder replaced by random prompt embeddings of its shape:
the encoder runs once per prompt and is not what is measured), `--steps` steps, every step guided with the methods'
default parameters, a weight-free reward (mean brightness: the reward model's own memory is not in the figure).
A run that runs out of memory is a row ("out of memory"), not a failure; rows past the time budget are skipped.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards.base import Reward  # noqa: E402

GIB = 2**30
#: Wan 2.1 T2V 1.3B's transformer (bench/wan_memory_model.py has the same)
WAN13B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
              text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6)


class Brightness(Reward):
    name = "brightness"

    def __call__(self, frames, frame_indices=None, num_frames=None):
        return frames.mean(dim=(1, 2, 3))


def animatediff(tiny: bool, device):
    from pipelines.pipeline import GuidedAnimateDiffPipeline
    from pipelines.testing import realsize_components, tiny_components

    if tiny:
        pipe = GuidedAnimateDiffPipeline(**tiny_components())
        size = dict(num_frames=4, height=16, width=16)
    else:
        with torch.device(device):
            pipe = GuidedAnimateDiffPipeline(**realsize_components())
        pipe.vae.enable_slicing()
        size = dict(num_frames=16, height=512, width=512)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, dict(prompt="a red cat", guidance_scale=7.5, preview_every=0, **size)


def wan(tiny: bool, device):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

    from pipelines.wan import GuidedWanPipeline
    from pipelines.wan_testing import tiny_wan_components

    if tiny:  # the real path's shape: no text encoder, prompt embeddings given
        comps = {**tiny_wan_components(), "text_encoder": None, "tokenizer": None}
        text_dim, dtype, size = 32, torch.float32, dict(num_frames=5, height=16, width=32)
    else:
        with torch.device(device):
            comps = {"transformer": WanTransformer3DModel(**WAN13B).to(torch.bfloat16), "vae": AutoencoderKLWan(),
                     "text_encoder": None, "tokenizer": None, "transformer_2": None}
        text_dim, dtype, size = 4096, torch.bfloat16, dict(num_frames=33, height=480, width=832)
    comps["scheduler"] = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                 flow_shift=3.0)
    pipe = GuidedWanPipeline(**comps)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    embeds = [(torch.randn(1, 512 if not tiny else 16, text_dim, generator=g) * 0.1).to(device, dtype)
              for _ in range(2)]
    return pipe, dict(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], guidance_scale=5.0,
                      output_type="pt", preview_every=0, **size)


def one_run(pipe, kwargs, method: str, steps: int, device) -> dict:
    from pipelines.guidance import make_guidance

    guided = method != "none"
    cuda = torch.device(device).type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    events = list(pipe.stream(num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                              guidance=make_guidance(method) if guided else None,
                              reward=Brightness() if guided else None, track_reward=False, **kwargs))
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    final = events[-1]
    ok = final.final and final.frames is not None and bool(torch.isfinite(final.frames.float()).all())
    peak = torch.cuda.max_memory_allocated(device) / GIB if cuda else None
    return {"seconds": seconds, "s_per_step": seconds / steps, "peak_gib": peak, "status": "ok" if ok else "non-finite"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny components on the CPU (a check of this script)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps per run (default 4; --tiny 2)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which the remaining rows are skipped")
    ap.add_argument("--backbones", default="animatediff,wan")
    ap.add_argument("--methods", default="none,titan,freedom")
    a = ap.parse_args(argv)
    device = "cpu" if a.tiny else "cuda"
    if not a.tiny and not torch.cuda.is_available():
        print("error: no CUDA GPU (use --tiny for the CPU check)", file=sys.stderr)
        return 2
    steps = a.steps or (2 if a.tiny else 4)
    start = time.perf_counter()
    rows = []
    for name in a.backbones.split(","):
        build = {"animatediff": animatediff, "wan": wan}[name]
        pipe = kwargs = None
        for method in a.methods.split(","):
            row = {"backbone": name, "method": method}
            if time.perf_counter() - start > a.budget:
                rows.append({**row, "status": "skipped (time budget)"})
                continue
            try:
                if pipe is None:
                    pipe, kwargs = build(a.tiny, device)
                row["size"] = f"{kwargs['num_frames']}x{kwargs['height']}x{kwargs['width']}"
                row.update(one_run(pipe, kwargs, method, steps, device))
            except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
                if not isinstance(e, torch.cuda.OutOfMemoryError) and "out of memory" not in str(e):
                    raise
                row["status"] = "out of memory"
            rows.append(row)
            gc.collect()
        del pipe
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (--tiny)"
    print(f"bench/gpu_quick.sh on {gpu}, torch {torch.__version__}, {steps} steps, every step guided")
    print("| backbone | size (FxHxW) | method | seconds | s/step | peak GiB | status |")
    print("|---|---|---|---|---|---|---|")
    f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in rows:
        print(f"| {r['backbone']} | {r.get('size', '-')} | {r['method']} | {f(r.get('seconds'))} | "
              f"{f(r.get('s_per_step'))} | {f(r.get('peak_gib'))} | {r['status']} |")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0 if all(r["status"] in ("ok", "out of memory", "skipped (time budget)") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
