"""Guided Video Studio: the Gradio app (`python app.py [--preset auto|micro|animatediff] [--port N] [--host H] [--share]`).

Thin by design: widgets -> `pipelines.request.GenerationRequest` -> `validate` -> `run` (one StepEvent per step)
-> previews, reward plot, progress -> `finalize` (mp4 + JSON report). The CLI uses the same request layer.

Four tabs, one API endpoint each: /text_to_video, /style_transfer, /audio_alignment, /frame_interpolation.
All four share the GPU slots (`concurrency_id="gpu"`, limit = number of GPUs, one preset each; 1 on CPU) behind a
bounded queue.
"""
from __future__ import annotations

import argparse
import inspect
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from pipelines.media import frame_strip  # noqa: E402
from pipelines.tasks import T2V_REWARDS  # noqa: E402
from pipelines.request import (  # noqa: E402
    CFG_RANGE, INTERPOLATION_MODES, MAX_PROMPT_CHARS, MAX_SEED, MG_RANGE, STEPS_RANGE, TASK_NAMES,
    GenerationRequest, RequestError, finalize, release_memory, run, summary_text, validate,
)

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "gvs-outputs"
MAX_FILE_SIZE = "20mb"
QUEUE_MAX_SIZE = 16
DISPLAY_SIDE = 256  # mp4s and previews of tiny (micro) frames are upscaled nearest-neighbour to at least this

try:  # Hugging Face ZeroGPU: `spaces.GPU` allocates a GPU per call; a no-op everywhere else
    import spaces  # type: ignore

    GPU = spaces.GPU(duration=180)
except Exception:  # ImportError, or a spaces version that refuses to run outside a Space
    def GPU(fn):  # noqa: N802 - mirrors spaces.GPU
        return fn

ENDPOINTS = {
    "t2v": "text_to_video",
    "style": "style_transfer",
    "audio": "audio_alignment",
    "interpolate": "frame_interpolation",
}
TAB_INTRO = {
    "t2v": "Type a prompt; optionally guide it (text–video alignment reward) and smooth motion with HARIVO MG.",
    "style": "Upload a style image: the guidance pulls every frame's CLIP Gram matrix towards the image's.",
    "audio": "Upload or record audio: the video's motion is aligned to the sound (cropped to the video length).",
    "interpolate": "Give a first and a last frame: the video is generated between them.",
}


# ------------------------------------------------------------------------- components whose errors name the field
def _named(base):
    """A subclass of a Gradio component whose preprocessing errors name the input (API callers see the field)."""

    class Named(base):
        is_template = True  # keeps the base component's frontend

        def __init__(self, *args, field: str, **kwargs):
            self.field = field
            super().__init__(*args, **kwargs)

        def preprocess(self, payload):
            if payload is None:
                return None
            try:
                return super().preprocess(payload)
            except Exception as e:  # gr.Error, ValueError, PIL errors ...
                msg = getattr(e, "message", None) or str(e) or type(e).__name__
                raise gr.Error(f"{self.field}: {msg}") from None

    Named.__name__ = Named.__qualname__ = base.__name__
    # Gradio serialises a component's props by reading its __init__ signature: keep the base's
    Named.__init__.__signature__ = inspect.signature(base.__init__)
    return Named


Textbox, Slider, Number, Dropdown, Checkbox, Image, Audio = (
    _named(gr.Textbox), _named(gr.Slider), _named(gr.Number), _named(gr.Dropdown), _named(gr.Checkbox),
    _named(gr.Image), _named(gr.Audio),
)


def _fail(field: str, message: str):
    raise gr.Error(f"{field}: {message}", print_exception=False)


# --------------------------------------------------------------------------------------------------- generation
class Studio:
    """The live preset (loaded once) and the generation handler shared by the four tabs."""

    def __init__(self, preset, pool=None):
        from pipelines.guidance import METHODS, method_params

        self.preset = preset
        self.pool = pool  # a pipelines.pool.PipelinePool of presets, one per GPU (None: this preset only)
        self.methods = list(METHODS)
        self.specs = {m: method_params(m) for m in self.methods}

    def param_inputs(self) -> list[str]:
        return [f"{m}__{s.name}" for m in self.methods for s in self.specs[m]]

    def generate(self, task: str, kw: dict, progress: Optional[gr.Progress] = None):
        if self.pool is None:
            yield from self._generate(self.preset, task, kw, progress)
            return
        with self.pool.get() as (_device, preset):  # a free GPU's preset; given back on finish, error or cancel
            yield from self._generate(preset, task, kw, progress)

    def _generate(self, preset, task: str, kw: dict, progress: Optional[gr.Progress] = None):
        for name in ("method", "mg_scale", "seed", "steps", "cfg", "frames", "size"):
            if kw.get(name) is None:
                _fail(name, "is required")
        method = kw["method"]
        if method not in self.specs:
            _fail("method", f"{method!r} is not one of {self.methods}")
        params = {}
        for s in self.specs[method]:  # omitted ones get the preset's default in resolve_params
            v = kw.get(f"{method}__{s.name}")
            if v is not None:
                params[s.name] = v
        req = GenerationRequest(
            task=task, prompt=kw.get("prompt"), negative_prompt=kw.get("negative_prompt") or "", method=method,
            params=params, mg_scale=kw["mg_scale"], cfg_schedule=bool(kw.get("cfg_schedule")), seed=kw["seed"],
            steps=kw["steps"], cfg=kw["cfg"], frames=kw["frames"], size=kw["size"],
            style_image=kw.get("style_image"), audio=kw.get("audio"), first_frame=kw.get("first_frame"),
            last_frame=kw.get("last_frame"), interpolation_mode=kw.get("interpolation_mode") or "both",
            t2v_reward=kw.get("t2v_reward") or "clip",
        )
        try:
            prepared = validate(req, preset)
        except RequestError as e:
            _fail(e.field, e.message)
        for n in prepared.notices:
            gr.Warning(n)
        gen = run(prepared, preset)
        rows: list[dict] = []
        last_preview = None
        try:
            for ev in gen:
                if ev.final:
                    break
                if progress is not None:
                    progress((min(ev.index + 1, ev.total), ev.total), desc=f"{getattr(ev, 'phase', 'sample')} step")
                if ev.reward is not None:
                    rows.append({"step": len(rows) + 1, "reward": float(ev.reward), "series": "task reward"})
                if ev.preview is not None:
                    last_preview = frame_strip(ev.preview, scale_to=96)
                r = "" if ev.reward is None else f" · reward {ev.reward:.4f}"
                status = f"step {ev.index + 1}/{ev.total}{r} · {ev.seconds:.1f} s"
                yield (last_preview if last_preview is not None else gr.skip(), _plot(rows), gr.skip(), gr.skip(),
                       status)
            out_dir = OUTPUT_ROOT / uuid.uuid4().hex[:12]
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = f"{ENDPOINTS[task]}_{prepared.request.method}_seed{prepared.seed}"
            report = finalize(gen, out_dir / f"{stem}.mp4", out_dir / f"{stem}.json", min_side=DISPLAY_SIDE)
            final = frame_strip(gen.final_event.frames, scale_to=96)
            yield final, _plot(rows), str(out_dir / f"{stem}.mp4"), str(out_dir / f"{stem}.json"), summary_text(report)
        finally:  # also on cancel (GeneratorExit at a yield): drop the run's tensors now
            del gen
            release_memory()


def _plot(rows):
    import pandas as pd

    df = pd.DataFrame(rows if rows else [], columns=["step", "reward", "series"])
    # explicit dtypes: an empty/object column would make the plot treat rewards as categories
    return df.astype({"step": "int64", "reward": "float64", "series": "str"})


# --------------------------------------------------------------------------------------------------------- layout
def _param_widget(method: str, spec, default):
    """A widget for one method parameter; `default` is the live preset's (METHODS.md's unless it tunes it)."""
    label = f"{spec.name}"
    info = spec.help or None
    field = f"param {spec.name}"
    if spec.kind == "bool":
        return Checkbox(value=bool(default), label=label, info=info, field=field)
    if spec.kind == "choice":
        return Dropdown(choices=list(spec.choices or []), value=default, label=label, info=info, field=field)
    if spec.min is not None and spec.max is not None:
        step = spec.step or (1 if spec.kind == "int" else (spec.max - spec.min) / 100)
        return Slider(minimum=spec.min, maximum=spec.max, step=step, value=default, label=label, info=info,
                      field=field)
    return Number(value=default, label=label, info=info, precision=0 if spec.kind == "int" else None,
                  field=field)


def _examples_for(task: str) -> list[list[Any]]:
    """Example rows (prompt, upload(s)..., method, mg_scale, seed) from assets/examples/."""
    e = EXAMPLES_DIR
    rows = {
        "t2v": [
            ["a red circle moving left to right on a black background", "none", 0, 0],
            ["a yellow square moving up on a gray background", "titan", 40, 1],
        ],
        "style": [
            ["a white circle moving right to left on a black background", str(e / "style_stripes.png"), "titan", 0, 2],
        ],
        "audio": [
            ["a green circle bouncing on a black background", str(e / "impacts.wav"), "titan", 0, 3],
        ],
        "interpolate": [
            ["a blue triangle moving left to right on a gray background", str(e / "first_frame.png"),
             str(e / "last_frame.png"), "none", 0, 4],
        ],
    }[task]
    return [r for r in rows if all(not isinstance(v, str) or not v.startswith(str(e)) or Path(v).exists() for v in r)]


def build_demo(preset, cache_examples: bool = True, pool=None) -> gr.Blocks:
    studio = Studio(preset, pool)
    frame_choices = [int(x) for x in preset.frame_choices]
    size_choices = [int(x) for x in preset.size_choices]
    banner = (f"**Live preset: `{preset.name}`** on `{preset.device}` — {preset.reason}  \n"
              f"{preset.fps} fps · frames {frame_choices} · sizes {size_choices} · "
              f"defaults: {preset.default_steps} steps, CFG {preset.default_cfg}")
    with gr.Blocks(title="Guided Video Studio") as demo:
        gr.Markdown("# Guided Video Studio\nTraining-free guided text-to-video: TITAN-Guide, FreeDoM, MPGD, TFG, "
                    "DOODL, Free²Guide and HARIVO's mitigating gradient, streamed step by step.")
        gr.Markdown(banner, elem_id="preset-banner")
        events = []
        for task, label in TASK_NAMES.items():
            with gr.Tab(label, id=task, elem_id=f"tab-{task}"):
                events.append(_build_tab(studio, task, frame_choices, size_choices, cache_examples))
    return demo


def _build_tab(studio: Studio, task: str, frame_choices, size_choices, cache_examples: bool):
    preset = studio.preset
    gr.Markdown(TAB_INTRO[task])
    named: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=1):
            named["prompt"] = Textbox(label="Prompt", lines=2, max_length=MAX_PROMPT_CHARS, field="prompt",
                                      placeholder="a red circle moving left to right on a black background",
                                      elem_id=f"{task}-prompt")
            named["negative_prompt"] = Textbox(label="Negative prompt", lines=1, max_length=MAX_PROMPT_CHARS,
                                               field="negative_prompt")
            if task == "style":
                named["style_image"] = Image(label="Style image", type="filepath", image_mode=None,
                                             sources=["upload", "clipboard"], field="style_image", height=200)
            if task == "audio":
                named["audio"] = Audio(label="Audio (file or microphone)", type="filepath",
                                       sources=["upload", "microphone"], field="audio")
            if task == "interpolate":
                with gr.Row():
                    named["first_frame"] = Image(label="First frame", type="filepath", image_mode=None,
                                                 field="first_frame", height=160)
                    named["last_frame"] = Image(label="Last frame", type="filepath", image_mode=None,
                                                field="last_frame", height=160)
                named["interpolation_mode"] = Dropdown(
                    choices=list(INTERPOLATION_MODES), value="both", label="Interpolation constraint",
                    info="reward: guide towards the key frames; replacement: overwrite the known latent frames; "
                         "both", field="interpolation_mode")
            if task == "t2v":
                named["t2v_reward"] = Dropdown(
                    choices=list(T2V_REWARDS), value="clip", label="Reward",
                    info="clip: CLIP text alignment; lvlm: a vision-language judge (black box: use free2guide; "
                         "set GVS_LVLM_URL); clip+lvlm: Free²Guide's reward ensembles", field="t2v_reward")
            named["method"] = Dropdown(choices=studio.methods, value="none", label="Guidance method",
                                       field="method", elem_id=f"{task}-method")
            groups = {}
            with gr.Accordion("Method parameters (defaults: METHODS.md, or the live preset's tuned values)",
                              open=False):
                for m in studio.methods:
                    with gr.Group(visible=False) as grp:
                        cls_summary = _method_summary(m)
                        if cls_summary:
                            gr.Markdown(f"**{m}** — {cls_summary}")
                        for spec in studio.specs[m]:
                            named[f"{m}__{spec.name}"] = _param_widget(
                                m, spec, preset.guidance_defaults(m).get(spec.name, spec.default))
                    groups[m] = grp
            with gr.Row():
                named["mg_scale"] = Slider(minimum=MG_RANGE[0], maximum=100, step=1, value=0,
                                           label="HARIVO MG α (0 = off, 40 = HARIVO default)", field="mg_scale")
                named["cfg_schedule"] = Checkbox(value=False, label="HARIVO CFG schedule", field="cfg_schedule")
            with gr.Row():
                named["seed"] = Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                       field="seed", scale=3)
                dice = gr.Button("Randomise seed", scale=1, size="sm")
            with gr.Row():
                named["steps"] = Slider(minimum=STEPS_RANGE[0], maximum=100, step=1, value=preset.default_steps,
                                        label="Steps", field="steps")
                named["cfg"] = Slider(minimum=CFG_RANGE[0], maximum=20, step=0.5, value=preset.default_cfg,
                                      label="CFG scale", field="cfg")
            with gr.Row():
                named["frames"] = Dropdown(choices=frame_choices, value=int(preset.default_frames), label="Frames",
                                           field="frames")
                named["size"] = Dropdown(choices=size_choices, value=int(preset.default_size),
                                         label="Size (square, px)", field="size")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id=f"{task}-generate")
                stop = gr.Button("Cancel", variant="stop", elem_id=f"{task}-cancel")
        with gr.Column(scale=1):
            status = gr.Textbox(label="Status / summary", lines=5, interactive=False, elem_id=f"{task}-summary")
            preview = gr.Image(label="Live preview (decoded x̂0 per step)", type="pil", interactive=False,
                               format="png", elem_id=f"{task}-preview")
            plot = gr.LinePlot(value=_plot([]), x="step", y="reward", title="Reward per step",
                               label="Reward per step", height=220)
            video = gr.Video(label="Video", interactive=False, height=DISPLAY_SIDE, elem_id=f"{task}-video",
                             loop=True, autoplay=True)
            report = gr.File(label="JSON report", interactive=False, elem_id=f"{task}-report")

    names = list(named)
    inputs = [named[n] for n in names]
    outputs = [preview, plot, video, report, status]

    @GPU
    def handler(*values):
        values = list(values)
        progress = values.pop() if values and isinstance(values[-1], gr.Progress) else None
        yield from studio.generate(task, dict(zip(names, values)), progress)

    # defaults in the signature become the API's defaults (gradio_client fills omitted arguments with them)
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=getattr(named[n], "value", None))
              for n in names]
    params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=gr.Progress(track_tqdm=False)))
    handler.__signature__ = inspect.Signature(params)
    handler.__name__ = ENDPOINTS[task]

    ev = go.click(handler, inputs=inputs, outputs=outputs, api_name=ENDPOINTS[task], concurrency_id="gpu",
                  concurrency_limit=len(studio.pool) if studio.pool is not None else 1,
                  show_progress="minimal", show_progress_on=[video])
    stop.click(None, None, None, cancels=[ev], api_visibility="private")
    dice.click(lambda: random.randint(0, MAX_SEED), None, named["seed"], queue=False, api_visibility="private")
    named["method"].change(lambda m: [gr.update(visible=(k == m and bool(studio.specs[k]))) for k in groups],
                           named["method"], list(groups.values()), queue=False, api_visibility="private")

    rows = _examples_for(task)
    if rows:
        ex_names = ["prompt"] + [n for n in ("style_image", "audio", "first_frame", "last_frame") if n in named] + [
            "method", "mg_scale", "seed"]

        def example_fn(*vals):
            kw = _defaults(named)
            kw.update(dict(zip(ex_names, vals)))
            last = None
            for last in studio.generate(task, kw, None):
                pass
            return last

        gr.Examples(rows, inputs=[named[n] for n in ex_names], outputs=outputs, fn=example_fn,
                    cache_examples=cache_examples, cache_mode="eager" if cache_examples else None,
                    label="Examples (cached)" if cache_examples else "Examples", api_name=False)
    return ev


def _defaults(named: dict) -> dict:
    return {n: getattr(c, "value", None) for n, c in named.items()}


def _method_summary(name: str) -> str:
    try:
        from pipelines.guidance import method_class

        return getattr(method_class(name), "summary", "") or ""
    except Exception:
        return ""


# ------------------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Guided Video Studio (Gradio app)")
    p.add_argument("--preset", default=os.environ.get("GVS_PRESET", "auto"),
                   help="auto (default) | micro | animatediff")
    p.add_argument("--device", default=None, help="torch device (default: the preset's choice)")
    # A Hugging Face Space sets GRADIO_SERVER_NAME=0.0.0.0; anywhere else the default is this machine only.
    p.add_argument("--host", default=os.environ.get("GVS_HOST") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GVS_PORT", os.environ.get("GRADIO_SERVER_PORT",
                                                                                              7860))))
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--no-cache-examples", action="store_true",
                   help="do not pre-compute the examples' outputs at start-up (faster start)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pipelines.pool import PipelinePool, available_devices
    from pipelines.presets import load_preset

    t0 = time.perf_counter()
    # one preset per GPU (one generation each; Gradio's concurrency limit = number of GPUs); one slot on CPU
    devices = [args.device] if args.device else available_devices()
    preset = load_preset(args.preset, device=devices[0])
    pool = PipelinePool(lambda d: load_preset(args.preset, device=d), devices if preset.device.type == "cuda" else
                        [devices[0]])
    pool.warm()
    print(f"[gvs] preset {preset.name} on {preset.device}: {preset.reason} ({time.perf_counter() - t0:.1f} s)",
          flush=True)
    cache = not args.no_cache_examples and os.environ.get("GVS_CACHE_EXAMPLES", "1") != "0"
    # one cache folder per preset: cached outputs of the micro preset must not be shown for animatediff
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(ROOT / ".gradio" / "cached_examples" / preset.name))
    demo = build_demo(preset, cache_examples=cache, pool=pool)
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                allowed_paths=[str(OUTPUT_ROOT)], show_error=True, footer_links=["api", "gradio"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
