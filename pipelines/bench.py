"""Benchmarks: seconds and peak memory per (method, size) (public contract 5), and the matrix report.

`python -m pipelines bench --preset micro --methods none,titan --sizes 8x32 --steps 20` prints one JSON object
per (method, size). `--preset sd15-random` builds Stable Diffusion 1.5 + AnimateDiff sized models at random
initialisation (memory and speed do not depend on the weights) to measure the real preset without downloads;
`sd15-random-lean` the same models set up like the `animatediff-lean` preset (`presets.make_lean`).

The matrix (`--matrix`): methods × frames (`--frames 8,16,24,32`) × sides (`--sides 256,512`) × dtypes
(`--dtypes float32,float16`), plus two reference rows per (size, dtype): `diffusers` (the unguided diffusers
`AnimateDiffPipeline.__call__` on the same components, in the same process) and `none+previews` (our unguided
`stream()` with its default previews). `--out DIR` writes `bench.jsonl`, `bench.md` (a table, with the command and
the device) and two plots (`memory_vs_frames.png`, `seconds_per_step.png`). On CUDA the peak is the allocator's
(reset per run) and times are taken after `torch.cuda.synchronize()`; on CPU the peak is the process's resident set.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import torch

from rewards.base import Reward

from .guidance import METHODS, make_guidance
from .memory import PeakMemory

BENCH_PRESETS = ("micro", "tiny", "sd15-random", "sd15-random-lean")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
REFERENCE_ROWS = ("diffusers", "none+previews")
PROMPT = "a red circle moving left to right on a black background"


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


def matrix_sizes(frames: Sequence[int] = (8, 16, 24, 32), sides: Sequence[int] = (256, 512)) -> list[str]:
    return [f"{f}x{s}" for s in sides for f in frames]


def device_name(device: str) -> str:
    """What the figures were measured on, in words (GPU model, or CPU model and the threads torch uses)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def _pipeline(preset: str, device: str, dtype):
    if preset == "sd15-random-lean":  # the animatediff-lean set-up (presets.make_lean) on SD 1.5-sized random models
        from .pipeline import GuidedAnimateDiffPipeline
        from .presets import make_lean
        from .testing import realsize_components

        if dtype == torch.bfloat16:
            raise ValueError("sd15-random-lean takes float32 (fp16 text encoder only) or float16 (fp16 UNet/VAE too)")
        pipe = GuidedAnimateDiffPipeline(**realsize_components(dtype=torch.float32))
        pipe.set_progress_bar_config(disable=True)
        return make_lean(pipe, device, fp16_models=dtype == torch.float16)
    if preset == "sd15-random":
        from .pipeline import GuidedAnimateDiffPipeline
        from .testing import realsize_components

        pipe = GuidedAnimateDiffPipeline(**realsize_components(dtype=dtype))
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)
    from .presets import load_preset

    pipe = load_preset(preset, device=device).pipe
    return pipe.to(dtype=dtype) if dtype != torch.float32 else pipe


def _reference_pipe(pipe):
    """diffusers' own AnimateDiffPipeline sharing the guided pipeline's modules (no copies)."""
    from diffusers import AnimateDiffPipeline

    ref = AnimateDiffPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                              motion_adapter=pipe.motion_adapter, scheduler=pipe.scheduler)
    ref.set_progress_bar_config(disable=True)
    return ref


def _one_run(pipe, method: str, frames: int, side: int, steps: int, seed: int, params: Optional[dict], reward):
    """Run one generation; returns the final frames (for the finiteness check)."""
    gen = torch.Generator("cpu").manual_seed(seed)
    if method == "diffusers":
        out = _reference_pipe(pipe)(PROMPT, num_frames=frames, height=side, width=side, num_inference_steps=steps,
                                    generator=gen, output_type="pt")
        return out.frames
    previews = method == "none+previews"
    name = "none" if previews else method
    guidance = make_guidance(name, **(params or {}).get(name, {}))
    final = None
    for ev in pipe.stream(
        PROMPT, num_frames=frames, height=side, width=side, num_inference_steps=steps, generator=gen,
        guidance=guidance, reward=reward if name != "none" else None, preview_every=1 if previews else 0,
        track_reward=False,
    ):
        final = ev
    return final.frames


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
    warmup: bool = False,
) -> Iterator[dict]:
    """One record per (method, size). `methods` may include the reference rows `diffusers` and `none+previews`."""
    if preset not in BENCH_PRESETS:
        raise ValueError(f"bench preset must be one of {', '.join(BENCH_PRESETS)}, got {preset!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    methods, sizes = list(methods), [parse_size(s) for s in sizes]
    for method in methods:
        if method not in METHODS and method not in REFERENCE_ROWS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(list(METHODS) + list(REFERENCE_ROWS))}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = _pipeline(preset, device, DTYPES[dtype])
    reward = _TargetReward()
    where = device_name(device)
    if warmup:  # kernels, allocator pools and lazy inits out of the first timed row
        _one_run(pipe, "none", sizes[0][0], sizes[0][1], 1, seed, params, reward)
    for method in methods:
        for frames, side in sizes:
            record = {"method": method, "size": f"{frames}x{side}", "frames": frames, "height": side, "width": side,
                      "steps": steps, "preset": preset, "device": device, "device_name": where, "dtype": dtype}
            if params and params.get(method):
                record["params"] = dict(params[method])
            if method == "titan":
                from .guidance.forward_ad import choose_attention

                record["jvp_attention"] = choose_attention(device)
            try:
                times, peak, start, finite = [], 0, 0, True
                for _ in range(repeats):
                    mem = PeakMemory(device)
                    mem.reset()
                    start = mem.current()
                    t0 = time.perf_counter()
                    video = _one_run(pipe, method, frames, side, steps, seed, params, reward)
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                    peak = max(peak, mem.peak())
                    finite = finite and bool(torch.isfinite(torch.as_tensor(video)).all())
                    del video
                # peak_memory_bytes: the whole process (CPU RSS) or the allocator (CUDA), models included;
                # extra_memory_bytes: what the generation added on top of the memory in use when it started.
                record.update(seconds=min(times), seconds_all=[round(t, 3) for t in times],
                              seconds_per_step=round(min(times) / steps, 4), peak_memory_bytes=peak,
                              peak_memory_gib=round(peak / 2**30, 3), extra_memory_bytes=peak - start,
                              extra_memory_gib=round((peak - start) / 2**30, 3), finite=finite, ok=True)
            except torch.OutOfMemoryError as e:  # pragma: no cover - GPU only
                record.update(ok=False, error=f"out of memory: {str(e).splitlines()[0]}")
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            yield record


def run_matrix(preset: str, methods: Sequence[str], sizes: Sequence[str], dtypes: Sequence[str], steps: int,
               device: Optional[str] = None, seed: int = 0, repeats: int = 1, references: bool = True,
               params: Optional[dict] = None) -> Iterator[dict]:
    """The matrix: for every dtype, the reference rows (when `references`) then every method, over all sizes."""
    for dtype in dtypes:
        rows = (list(REFERENCE_ROWS) if references else []) + [m for m in methods if m not in REFERENCE_ROWS]
        yield from run_bench(preset=preset, methods=rows, sizes=sizes, steps=steps, device=device, dtype=dtype,
                             seed=seed, repeats=repeats, params=params, warmup=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------------ report
def _fmt(v, nd=3):
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def markdown_table(rows: Sequence[dict], command: str = "") -> str:
    """A markdown table of the rows, with ratios to the unguided rows of the same (size, dtype)."""
    base = {(r["size"], r["dtype"]): r for r in rows if r["method"] == "none" and r.get("ok")}
    devices = sorted({r.get("device_name") or r.get("device", "?") for r in rows})
    lines = []
    if command:
        lines += ["Command:", "", "```bash", command, "```", ""]
    lines += [f"Device: {', '.join(devices)}", "",
              "| preset | dtype | size | method | s | s/step | peak GiB | added GiB | peak ÷ none | s ÷ none | finite |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get((r["size"], r["dtype"]))
        if not r.get("ok"):
            lines.append(f"| {r['preset']} | {r['dtype']} | {r['size']} | {r['method']} | {r.get('error', 'failed')} "
                         "| | | | | | |")
            continue
        pr = r["peak_memory_bytes"] / b["peak_memory_bytes"] if b and b["peak_memory_bytes"] else None
        sr = r["seconds"] / b["seconds"] if b and b["seconds"] else None
        lines.append(
            f"| {r['preset']} | {r['dtype']} | {r['size']} | {r['method']} | {_fmt(r['seconds'], 2)} | "
            f"{_fmt(r['seconds_per_step'], 3)} | {_fmt(r['peak_memory_gib'])} | {_fmt(r['extra_memory_gib'])} | "
            f"{_fmt(pr, 2)} | {_fmt(sr, 2)} | {'yes' if r.get('finite', True) else 'NO'} |")
    return "\n".join(lines) + "\n"


def plot_rows(rows: Sequence[dict], out_dir: Path) -> list[Path]:
    """Peak memory vs frames per method (one panel per side/dtype) and seconds per step per method."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        return []
    ok = [r for r in rows if r.get("ok")]
    groups = sorted({(r["height"], r["dtype"]) for r in ok})
    if not groups:
        return []
    paths = []
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, (side, dtype) in zip(axes[0], groups):
        for m in dict.fromkeys(r["method"] for r in ok):
            pts = sorted((r["frames"], r["peak_memory_gib"]) for r in ok
                         if r["method"] == m and r["height"] == side and r["dtype"] == dtype)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
        ax.set(title=f"{side}² {dtype}", xlabel="frames", ylabel="peak memory (GiB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "memory_vs_frames.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(6, len(ok) * 0.35), 4))
    labels = [f"{r['method']} {r['size']} {r['dtype'][:4]}" for r in ok]
    ax.bar(range(len(ok)), [r["seconds_per_step"] for r in ok])
    ax.set_xticks(range(len(ok)), labels, rotation=90, fontsize=7)
    ax.set(ylabel="seconds per step", title="seconds per (guided) step")
    fig.tight_layout()
    paths.append(out_dir / "seconds_per_step.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_report(rows: Sequence[dict], out_dir, command: str = "") -> dict:
    """bench.jsonl + bench.md (+ plots) in `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / "bench.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = out_dir / "bench.md"
    md.write_text(markdown_table(rows, command))
    return {"jsonl": jsonl, "markdown": md, "plots": plot_rows(rows, out_dir)}
