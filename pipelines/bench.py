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

Rewards: `--task t2v|style|audio|interpolate` (default t2v) builds the task's real reward through
`pipelines.tasks.build_task`, on the pipeline's device and dtype: the preset's CLIP on micro/tiny, and on
sd15-random(-lean) a random CLIP of ViT-B/16's shapes (and a random ImageBind-huge for audio), as the animatediff
preset would run them. `--task target` keeps the old cheap stand-in (frames pulled to mid-gray), which measures
the method without any reward model. `--unet-checkpointing auto|on|off` checkpoints the UNet during the guided
steps' backward (`pipelines.memory.unet_checkpointing`; auto: at ≥ 256² frames).
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
from .memory import UNET_BACKPROP_METHODS, PeakMemory

BENCH_PRESETS = ("micro", "micro-harivo", "tiny", "sd15-random", "sd15-random-lean")
BENCH_TASKS = ("t2v", "style", "audio", "interpolate", "target")
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


def _bench_audio(seconds: float, sr: int = 16000):
    """Clicks every 1/8 s (one per frame at 8 fps): an audio track that is never silent over any bench length."""
    import numpy as np

    wave = np.zeros(max(int(seconds * sr), sr // 4), dtype=np.float32)
    for k in range(0, wave.size, sr // 8):
        wave[k : k + 200] = np.sin(np.arange(min(200, wave.size - k)) * 0.3).astype(np.float32)
    return wave, sr


def task_setup(preset: str, pipe, task: str, frames: int, side: int, preset_obj=None):
    """The task's real reward (and hooks) for a bench row, built by `pipelines.tasks.build_task` on the pipeline's
    placement; `target`: the stand-in reward."""
    from types import SimpleNamespace

    from .tasks import TaskInputs, TaskSetup, build_task

    if task == "target":
        return TaskSetup("target", _TargetReward())
    if task not in BENCH_TASKS:
        raise ValueError(f"bench task must be one of {', '.join(BENCH_TASKS)}, got {task!r}")
    if preset_obj is None:  # sd15-random(-lean): the animatediff preset's reward models, random, of the real shapes
        from rewards.testing import CLIP_B16_SHAPES, random_clip, random_imagebind

        from .presets import pipeline_placement

        preset_obj = SimpleNamespace(
            clip=random_clip(CLIP_B16_SHAPES), fps=8, audio_reward="imagebind",
            imagebind=random_imagebind() if task == "audio" else None,
            reward_placement=lambda: pipeline_placement(pipe))
    from PIL import Image

    examples = Path(__file__).resolve().parents[1] / "assets" / "examples"
    inputs = TaskInputs(prompt=PROMPT)
    if task == "style":
        inputs.style_image = Image.open(examples / "style_stripes.png")
    elif task == "audio":
        inputs.audio = _bench_audio(frames / preset_obj.fps)
    elif task == "interpolate":
        inputs.first_frame = Image.open(examples / "first_frame.png")
        inputs.last_frame = Image.open(examples / "last_frame.png")
    return build_task(preset_obj, task, inputs, num_frames=frames, height=side, width=side)


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

    obj = load_preset(preset, device=device)
    pipe = obj.pipe
    return pipe.to(dtype=dtype) if dtype != torch.float32 else pipe


def _reference_pipe(pipe):
    """diffusers' own AnimateDiffPipeline sharing the guided pipeline's modules (no copies)."""
    from diffusers import AnimateDiffPipeline

    ref = AnimateDiffPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                              motion_adapter=pipe.motion_adapter, scheduler=pipe.scheduler)
    ref.set_progress_bar_config(disable=True)
    return ref


def _one_run(pipe, method: str, frames: int, side: int, steps: int, seed: int, params: Optional[dict], reward,
             hooks=(), checkpointing="auto"):
    """Run one generation; returns the final frames (for the finiteness check)."""
    gen = torch.Generator("cpu").manual_seed(seed)
    if method == "diffusers":
        out = _reference_pipe(pipe)(PROMPT, num_frames=frames, height=side, width=side, num_inference_steps=steps,
                                    generator=gen, output_type="pt")
        return out.frames
    previews = method == "none+previews"
    name = "none" if previews else method
    kw = dict((params or {}).get(name, {}))
    from .memory import unet_checkpointing, want_unet_checkpointing

    on = want_unet_checkpointing((side // pipe.vae_scale_factor, side // pipe.vae_scale_factor), checkpointing)
    if name in ("freedom", "tfg"):  # they switch it themselves in their gradient pass: tell them the bench's choice
        kw.setdefault("unet_checkpoint", "on" if on else "off")
    guidance = make_guidance(name, **kw)
    final = None
    with unet_checkpointing(pipe.unet, on and name in UNET_BACKPROP_METHODS):
        for ev in pipe.stream(
            PROMPT, num_frames=frames, height=side, width=side, num_inference_steps=steps, generator=gen,
            guidance=guidance, reward=reward if name != "none" else None, preview_every=1 if previews else 0,
            track_reward=False, hooks=list(hooks),
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
    task: str = "t2v",
    unet_checkpointing: str = "auto",
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
    if task not in BENCH_TASKS:
        raise ValueError(f"bench task must be one of {', '.join(BENCH_TASKS)}, got {task!r}")
    ckpt = {"on": True, "off": False, "auto": "auto"}.get(str(unet_checkpointing).lower())
    if ckpt is None:
        raise ValueError(f"unet_checkpointing must be auto, on or off, got {unet_checkpointing!r}")
    pipe = _pipeline(preset, device, DTYPES[dtype])
    preset_obj = None
    if preset in ("micro", "micro-harivo", "tiny"):
        from .presets import load_preset

        preset_obj = load_preset(preset, device=device)
    setups: dict = {}

    def setup_for(frames, side):  # one reward per size (references are resized to it), built outside the timing
        if (frames, side) not in setups:
            setups[(frames, side)] = task_setup(preset, pipe, task, frames, side, preset_obj)
        return setups[(frames, side)]

    where = device_name(device)
    if warmup:  # kernels, allocator pools and lazy inits out of the first timed row
        _one_run(pipe, "none", sizes[0][0], sizes[0][1], 1, seed, params, None)
    for method in methods:
        for frames, side in sizes:
            setup = setup_for(frames, side)
            record = {"method": method, "size": f"{frames}x{side}", "frames": frames, "height": side, "width": side,
                      "steps": steps, "preset": preset, "device": device, "device_name": where, "dtype": dtype,
                      "task": task, "reward": type(setup.reward).__name__,
                      "unet_checkpointing": str(unet_checkpointing) if method in UNET_BACKPROP_METHODS else "n/a"}
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
                    video = _one_run(pipe, method, frames, side, steps, seed, params, setup.reward, setup.hooks, ckpt)
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
               params: Optional[dict] = None, task: str = "t2v", unet_checkpointing: str = "auto") -> Iterator[dict]:
    """The matrix: for every dtype, the reference rows (when `references`) then every method, over all sizes."""
    for dtype in dtypes:
        rows = (list(REFERENCE_ROWS) if references else []) + [m for m in methods if m not in REFERENCE_ROWS]
        yield from run_bench(preset=preset, methods=rows, sizes=sizes, steps=steps, device=device, dtype=dtype,
                             seed=seed, repeats=repeats, params=params, warmup=True, task=task,
                             unet_checkpointing=unet_checkpointing)
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
