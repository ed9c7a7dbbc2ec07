"""Benchmarks: seconds and peak memory per (method, size) (public contract 5).

`python -m pipelines bench --preset micro --methods none,titan --sizes 8x32 --steps 20` prints one JSON object
per (method, size). `--preset sd15-random` builds Stable Diffusion 1.5 + AnimateDiff sized models at random
initialisation (memory and speed do not depend on the weights) to measure the real preset without downloads.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator, Optional

import torch

from rewards.base import Reward

from .guidance import METHODS, make_guidance
from .memory import PeakMemory

BENCH_PRESETS = ("micro", "tiny", "sd15-random")


class _TargetReward(Reward):
    """A cheap differentiable stand-in reward (pulls frames toward mid-gray) so timings measure the method."""

    name = "bench"

    def __call__(self, frames, frame_indices=None, num_frames=None):
        return -((frames - 0.5) ** 2).mean(dim=(1, 2, 3))


def parse_size(text: str) -> tuple[int, int]:
    """'16x512' → (frames, square side)."""
    try:
        f, s = text.lower().split("x")
        return int(f), int(s)
    except ValueError as e:
        raise ValueError(f"size must look like FRAMESxSIDE (e.g. 16x512), got {text!r}") from e


def _pipeline(preset: str, device: str, dtype):
    if preset == "sd15-random":
        from .pipeline import GuidedAnimateDiffPipeline
        from .testing import realsize_components

        pipe = GuidedAnimateDiffPipeline(**realsize_components(dtype=dtype))
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)
    from .presets import load_preset

    return load_preset(preset, device=device).pipe


def run_bench(
    preset: str = "micro",
    methods: Iterable[str] = ("none", "titan"),
    sizes: Iterable[str] = ("8x32",),
    steps: int = 20,
    device: Optional[str] = None,
    dtype: str = "float32",
    seed: int = 0,
    repeats: int = 1,
    params: Optional[dict] = None,
) -> Iterator[dict]:
    if preset not in BENCH_PRESETS:
        raise ValueError(f"bench preset must be one of {', '.join(BENCH_PRESETS)}, got {preset!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    pipe = _pipeline(preset, device, torch_dtype)
    reward = _TargetReward()
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        for size in sizes:
            frames, side = parse_size(size)
            record = {"method": method, "size": size, "frames": frames, "height": side, "width": side,
                      "steps": steps, "preset": preset, "device": device, "dtype": dtype}
            try:
                times = []
                peak = 0
                for _ in range(repeats):
                    guidance = make_guidance(method, **(params or {}).get(method, {}))
                    mem = PeakMemory(device)
                    mem.reset()
                    start = mem.current()
                    t0 = time.perf_counter()
                    for _ev in pipe.stream(
                        "a red circle moving left to right on a black background", num_frames=frames, height=side,
                        width=side, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed),
                        guidance=guidance, reward=reward if method != "none" else None, preview_every=0,
                        track_reward=False,
                    ):
                        pass
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                    peak = max(peak, mem.peak())
                # peak_memory_bytes: the whole process (CPU RSS) or the allocator (CUDA), models included;
                # extra_memory_bytes: what the generation added on top of the memory in use when it started.
                record.update(seconds=min(times), seconds_all=[round(t, 3) for t in times], peak_memory_bytes=peak,
                              peak_memory_gib=round(peak / 2**30, 3), extra_memory_bytes=peak - start,
                              extra_memory_gib=round((peak - start) / 2**30, 3), ok=True)
            except torch.OutOfMemoryError as e:  # pragma: no cover - GPU only
                record.update(ok=False, error=f"out of memory: {str(e).splitlines()[0]}")
                torch.cuda.empty_cache()
            yield record
