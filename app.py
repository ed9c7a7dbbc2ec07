"""Guided Video Studio: the Gradio app (`python app.py [--preset auto|micro|animatediff] [--port N] [--host H] [--share]`).

Thin by design: widgets -> `pipelines.request.GenerationRequest` -> `validate` -> `run` (one StepEvent per step)
-> previews, reward plot, progress -> `finalize` (mp4 + JSON report). The CLI uses the same request layer.

Four tabs, one API endpoint each: /text_to_video, /style_transfer, /audio_alignment, /frame_interpolation, and a
`<endpoint>_compare` endpoint per tab that runs the same request unguided and guided (same seed and η).
All share the GPU slots (`concurrency_id="gpu"`, limit = number of GPUs, one preset each from
`pipelines.pool.PipelinePool`; 1 on CPU) behind a bounded queue.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "Agg")

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402

from pipelines import media  # noqa: E402
from pipelines.presets import task_default_method  # noqa: E402
from pipelines.sampler import Cancelled  # noqa: E402
from pipelines.request import (  # noqa: E402
    CFG_RANGE, DEFAULT_ETA, ETA_RANGE, INTERPOLATION_MODES, MAX_PROMPT_CHARS, MAX_SEED, MG_RANGE, STEPS_RANGE,
    TASK_NAMES, GenerationRequest, RequestError, finalize, release_memory, run, summary_text, validate,
)
from pipelines.tasks import T2V_REWARDS  # noqa: E402
from pipelines.ui import (  # noqa: E402
    StatusTracker, add_history, busy_notice, configure_torch_threads, gallery_items, raw_path, reward_figure,
    settings_from_report,
)

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "gvs-outputs"
MAX_FILE_SIZE = "20mb"
QUEUE_MAX_SIZE = 16
DISPLAY_SIDE = 384  # mp4s of tiny (micro) frames are upscaled nearest-neighbour to at least this
PREVIEW_TILE = 128  # each frame of the live preview grid, px (micro frames upscaled, 512² frames downscaled)
HISTORY_SIZE = 8  # runs kept in a browser tab's history gallery
RANGE_PARAMS = ("start_step", "end_step")  # method parameters bounded by the chosen steps (in "Advanced")
CACHE_MODES = ("eager", "lazy", "off")

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
UPLOADS = {"style_image": "image", "audio": "audio", "first_frame": "image", "last_frame": "image"}
CSS = """
.gvs-pixels video, .gvs-pixels img { image-rendering: pixelated; }
.gvs-preview img { object-fit: contain; }
"""


def log(msg: str) -> None:
    print(f"[gvs] {msg}", flush=True)


# ------------------------------------------------------------------------- components whose errors name the field
_ABS_PATH = re.compile(r"(?:/[^/\s'\"]+)+/([^/\s'\"]+)")


def user_message(msg: str) -> str:
    """A message safe to show a user: absolute server paths reduced to the file's name."""
    return _ABS_PATH.sub(r"\1", str(msg))


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
                msg = user_message(getattr(e, "message", None) or str(e) or type(e).__name__)
                _fail(self.field, msg)

    Named.__name__ = Named.__qualname__ = base.__name__
    # Gradio serialises a component's props by reading its __init__ signature: keep the base's
    Named.__init__.__signature__ = inspect.signature(base.__init__)
    return Named


Textbox, Slider, Number, Dropdown, Checkbox, Image, Audio = (
    _named(gr.Textbox), _named(gr.Slider), _named(gr.Number), _named(gr.Dropdown), _named(gr.Checkbox),
    _named(gr.Image), _named(gr.Audio),
)


def _fail(field: str, message: str):
    """A user error: one line in the server log (no traceback), the message in the page / API error."""
    log(f"refused: {field}: {message}")
    raise gr.Error(f"{field}: {message}", print_exception=False)


def check_upload(payload, field: str):
    """Validate an upload when it arrives (raw FileData payload); (value for the widget, status message)."""
    if payload is None:
        return gr.skip(), gr.skip()
    path = payload.get("path") if isinstance(payload, dict) else str(payload)
    name = (payload.get("orig_name") if isinstance(payload, dict) else None) or Path(str(path)).name
    upload_root = Path(get_upload_folder()).resolve()
    try:
        if not path or upload_root not in Path(path).resolve().parents:
            raise media.MediaError(field, f"{name} is not an uploaded file")
        if UPLOADS[field] == "image":
            img = media.load_image(path, field)
            msg = f"{field}: {name} accepted ({img.size[0]}x{img.size[1]})"
        else:
            audio = media.load_audio(path, field)
            media.check_not_silent(audio, field)
            msg = f"{field}: {name} accepted ({audio.seconds:.1f} s)"
        return gr.skip(), msg
    except media.MediaError as e:
        msg = f"{field}: {user_message(e.message).replace(Path(str(path)).name, name)}"
        log(f"refused upload: {msg}")
        gr.Warning(msg)
        return None, msg


# --------------------------------------------------------------------------------------------------- generation
class Studio:
    """The live preset (loaded once) and the handlers shared by the four tabs."""

    def __init__(self, preset, pool=None):
        from pipelines.guidance import METHODS, method_params

        self.preset = preset
        self.pool = pool  # a pipelines.pool.PipelinePool of presets, one per GPU (None: this preset only)
        self.methods = list(METHODS)
        self.specs = {m: method_params(m) for m in self.methods}
        self.running: dict[str, StatusTracker] = {}  # (session, task) -> the tracker of its run, for Cancel
        self.stop: dict[str, bool] = {}  # (session, task) -> Cancel pressed: the run stops at its next step
        self.queued: set = set()  # (session, task) with a run clicked but not started yet

    @property
    def slots(self) -> int:
        """Generations at once: one per pooled GPU (one on CPU)."""
        return len(self.pool) if self.pool is not None else 1

    def param_inputs(self) -> list[str]:
        return [f"{m}__{s.name}" for m in self.methods for s in self.specs[m]]

    # --- request ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _preset(self):
        """The preset a run uses: a free GPU's from the pool (given back on finish, error or cancel), or the one."""
        if self.pool is None or len(self.pool) <= 1:
            # one slot: Gradio's concurrency limit already runs one generation at a time, and a run cancelled from
            # the API (its generator left suspended until collected) must not keep a pool slot from the next one
            yield self.preset
            return
        with self.pool.get() as (_device, preset):
            yield preset

    def prepare(self, task: str, kw: dict, method: Optional[str] = None, preset=None):
        for name in ("method", "mg_scale", "seed", "steps", "cfg", "frames", "size"):
            if kw.get(name) is None:
                _fail(name, "is required")
        method = method or kw["method"]
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
            eta=kw.get("eta"), steps=kw["steps"], cfg=kw["cfg"], frames=kw["frames"], size=kw["size"],
            style_image=kw.get("style_image"), audio=kw.get("audio"), first_frame=kw.get("first_frame"),
            last_frame=kw.get("last_frame"), interpolation_mode=kw.get("interpolation_mode") or "reward",
            t2v_reward=kw.get("t2v_reward") or "clip", reward_prompt=kw.get("reward_prompt") or None,
        )
        try:
            return validate(req, preset or self.preset)
        except RequestError as e:
            _fail(e.field, e.message)

    # --- one run, streamed --------------------------------------------------------------------------------
    def _stream(self, prepared, tracker: StatusTracker, rows: list, progress, series: dict, preset=None):
        """Iterate one generation: yields (preview, figure, status) per step; returns the finished Generation."""
        gen = run(prepared, preset or self.preset, should_stop=lambda: self.stop.get(tracker.key, False))
        preview = None
        for ev in gen:
            if ev.final:
                break
            status = tracker.update(ev)
            if progress is not None:
                progress(tracker.progress(), desc=f"{tracker.prefix}{tracker.phase}")
            if ev.phase == "sample":
                rows.append(None if ev.reward is None else float(ev.reward))
            if ev.preview is not None:
                preview = media.preview_grid(ev.preview, PREVIEW_TILE)
            yield (preview if preview is not None else gr.skip()), reward_figure(series), status
        return gen

    @staticmethod
    def _relay(stream, skips: int):
        """Yield each (preview, figure, status) of `stream` as an output row with `skips` untouched outputs between
        the figure and the status; return the stream's finished Generation."""
        while True:
            try:
                preview, fig, status = next(stream)
            except StopIteration as stop:
                return stop.value
            yield (preview, fig, *[gr.skip()] * skips, status)

    def _write(self, task: str, gen, tag: str = ""):
        out_dir = OUTPUT_ROOT / uuid.uuid4().hex[:12]
        out_dir.mkdir(parents=True, exist_ok=True)
        p = gen.prepared
        stem = f"{ENDPOINTS[task]}_{p.request.method}_seed{p.seed}{tag}"
        report = finalize(gen, out_dir / f"{stem}.mp4", out_dir / f"{stem}.json", min_side=DISPLAY_SIDE)
        grid = media.preview_grid(gen.final_event.frames, PREVIEW_TILE)
        grid.save(out_dir / f"{stem}.png")
        return report, out_dir / f"{stem}.mp4", out_dir / f"{stem}.json", grid

    def generate(self, task: str, kw: dict, progress=None, key: str = ""):
        with self._preset() as preset:
            yield from self._generate(task, kw, progress, key, preset)

    def _generate(self, task: str, kw: dict, progress, key: str, preset):
        prepared = self.prepare(task, kw, preset=preset)
        notes = list(prepared.notices)
        busy = busy_notice()
        if busy:
            notes.append(busy)
        for n in notes:
            gr.Warning(n)
        tracker = self._start(key, StatusTracker())
        rows: list = []
        gen = None
        try:
            if self.stop.get(key):  # cancelled while it waited in the queue
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), tracker.cancelled()
                return
            stream = self._stream(prepared, tracker, rows, progress, {"task reward": rows}, preset)
            gen = yield from self._relay(stream, 2)
            report, mp4, js, grid = self._write(task, gen)
            if busy:
                report["notices"] = list(report["notices"]) + [busy]
            yield grid, reward_figure({"task reward": rows}), str(mp4), str(js), summary_text(report)
        except Cancelled:
            log(tracker.cancelled())
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), tracker.cancelled()
        finally:  # also on an API cancel (GeneratorExit at a yield): drop the run's tensors now
            self._end(key)
            del gen
            release_memory()

    def compare(self, task: str, kw: dict, progress=None, key: str = ""):
        """The same request unguided (method none) and guided: same seed, η and everything else."""
        with self._preset() as preset:
            yield from self._compare(task, kw, progress, key, preset)

    def _compare(self, task: str, kw: dict, progress, key: str, preset):
        from pipelines.compare import task_metric

        if kw.get("method") == "none":
            _fail("method", "choose a guidance method to compare with the unguided run (the method is `none`)")
        guided = self.prepare(task, kw, preset=preset)
        base = self.prepare(task, {**kw, "seed": guided.seed}, method="none", preset=preset)
        for n in guided.notices:
            gr.Warning(n)
        series: dict = {"unguided": [], f"guided ({guided.request.method})": []}
        results = {}
        tracker = self._start(key, StatusTracker(prefix="unguided: "))
        try:
            if self.stop.get(key):
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), tracker.cancelled()
                return
            for label, prepared, rows in (("unguided", base, series["unguided"]),
                                          ("guided", guided, series[f"guided ({guided.request.method})"])):
                tracker = self.running[key] = StatusTracker(prefix=f"{label}: ", key=key)
                gen = yield from self._relay(self._stream(prepared, tracker, rows, progress, series, preset), 4)
                report, mp4, js, grid = self._write(task, gen, tag=f"_{label}")
                metric = task_metric(gen.prepared, gen.final_event.frames)
                results[label] = (report, mp4, js, grid, metric)
                del gen
            table, data = _compare_table(results)
            out = Path(results["guided"][2]).with_name(f"{ENDPOINTS[task]}_compare_seed{guided.seed}.json")
            out.write_text(json.dumps(data, indent=2) + "\n")
            yield (results["guided"][3], reward_figure(series), str(results["unguided"][1]),
                   str(results["guided"][1]), table, str(out), summary_text(results["guided"][0]))
        except Cancelled:
            log(tracker.cancelled())
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), tracker.cancelled()
        finally:
            self._end(key)

    # --- cancel: cooperative, the run stops at its next step and says where -------------------------------------
    def _start(self, key: str, tracker: StatusTracker) -> StatusTracker:
        self.queued.discard(key)
        tracker.key = key
        self.running[key] = tracker
        return tracker

    def _end(self, key: str) -> None:
        self.running.pop(key, None)
        self.stop.pop(key, None)
        release_memory()

    def clicked(self, key: str) -> None:
        """Generate / Compare clicked: a run for `key` is on its way (a Cancel before it starts stops it)."""
        self.stop.pop(key, None)
        self.queued.add(key)

    def cancel(self, key: str):
        tracker = self.running.get(key)
        if tracker is None and key not in self.queued:
            return gr.skip()
        self.stop[key] = True
        if tracker is None:
            return "cancelling: the run has not started yet"
        return f"cancelling after {tracker.phase} step {tracker.done}/{tracker.total}…"


def _compare_table(results: dict) -> tuple[str, dict]:
    def fmt(x):
        return "n/a" if x is None else f"{x:.3g}"

    rows = ["| | method | reward after | metric | time |", "|---|---|---|---|---|"]
    data = {}
    for label in ("unguided", "guided"):
        report, _, _, _, metric = results[label]
        rows.append(f"| **{label}** | `{report['method']}` | {fmt(report.get('reward_after'))} | "
                    f"{metric.text if metric else 'n/a'} | {report['seconds']:.1f} s |")
        data[label] = {"report": report, "metric": None if metric is None else {
            "name": metric.name, "value": metric.value, "text": metric.text,
            "higher_is_better": metric.higher_is_better}}
    g, u = results["guided"][0], results["unguided"][0]
    head = (f"**Same seed {g['seed']} and η {g['eta']:g}**; reward: {g.get('reward_name') or 'task reward'} "
            "(higher is better).")
    if g.get("reward_after") is not None and u.get("reward_after") is not None:
        head += f" Guidance changed the reward by {g['reward_after'] - u['reward_after']:+.3g}."
    return head + "\n\n" + "\n".join(rows), data


# --------------------------------------------------------------------------------------------------------- layout
def _param_widget(method: str, spec, default, steps: int):
    """A widget for one method parameter; `default` is the live preset's (METHODS.md's unless it tunes it)."""
    label = f"{spec.name}"
    info = spec.help or None
    field = f"param {spec.name}"
    if spec.kind == "bool":
        return Checkbox(value=bool(default), label=label, info=info, field=field)
    if spec.kind == "choice":
        return Dropdown(choices=list(spec.choices or []), value=default, label=label, info=info, field=field)
    lo, hi = spec.min, spec.max
    if spec.name in RANGE_PARAMS:  # bounded by the chosen steps (updated when Steps moves)
        lo, hi = _range_bounds(spec.name, steps)
    if lo is not None and hi is not None:
        step = spec.step or (1 if spec.kind == "int" else (hi - lo) / 100)
        return Slider(minimum=lo, maximum=hi, step=step, value=default, label=label, info=info, field=field)
    return Number(value=default, label=label, info=info, precision=0 if spec.kind == "int" else None,
                  field=field)


def _range_bounds(name: str, steps: int) -> tuple[int, int]:
    steps = max(1, int(steps or 1))
    return (0, steps - 1) if name == "start_step" else (-steps, steps)


def _examples_for(task: str) -> list[list[Any]]:
    """Example rows (prompt, upload(s)..., method, mg_scale, seed) from assets/examples/."""
    e = EXAMPLES_DIR
    m = task_default_method(task)[0]
    rows = {
        "t2v": [
            ["a red circle moving left to right on a black background", "none", 0, 0],
            ["a yellow square moving up on a gray background", m, 40, 1],
        ],
        "style": [
            ["a white circle moving right to left on a black background", str(e / "style_stripes.png"), m, 0, 2],
        ],
        "audio": [
            ["a green circle bouncing on a black background", str(e / "impacts.wav"), m, 0, 3],
        ],
        "interpolate": [
            ["a blue triangle moving left to right on a gray background", str(e / "first_frame.png"),
             str(e / "last_frame.png"), m, 0, 4],
        ],
    }[task]
    return [r for r in rows if all(not isinstance(v, str) or not v.startswith(str(e)) or Path(v).exists() for v in r)]


def build_demo(preset, cache_examples="eager", threads: str = "", pool=None) -> gr.Blocks:
    if cache_examples is True:
        cache_examples = "eager"
    elif cache_examples in (False, None):
        cache_examples = "off"
    studio = Studio(preset, pool)
    frame_choices = [int(x) for x in preset.frame_choices]
    size_choices = [int(x) for x in preset.size_choices]
    banner = (f"**Live preset: `{preset.name}`** on `{preset.device}` — {preset.reason}  \n"
              f"{preset.fps} fps · frames {frame_choices} · sizes {size_choices} · "
              f"defaults: {preset.default_steps} steps, CFG {preset.default_cfg}"
              + (f" · {threads}" if threads else ""))
    with gr.Blocks(title="Guided Video Studio") as demo:
        gr.Markdown("# Guided Video Studio\nTraining-free guided text-to-video: TITAN-Guide, FreeDoM, MPGD, TFG, "
                    "DOODL, Free²Guide and HARIVO's mitigating gradient, streamed step by step.")
        gr.Markdown(banner, elem_id="preset-banner")
        for task, label in TASK_NAMES.items():
            with gr.Tab(label, id=task, elem_id=f"tab-{task}"):
                _build_tab(studio, task, frame_choices, size_choices, cache_examples)
    return demo


def _build_tab(studio: Studio, task: str, frame_choices, size_choices, cache_examples: str):
    preset = studio.preset
    default_method, reason = task_default_method(task)
    if default_method not in studio.specs:
        default_method, reason = "none", ""
    gr.Markdown(TAB_INTRO[task])
    named: dict[str, gr.components.Component] = {}
    micro = preset.name == "micro"
    with gr.Row():
        with gr.Column(scale=5):
            named["prompt"] = Textbox(label="Prompt", lines=2, max_length=MAX_PROMPT_CHARS, field="prompt",
                                      placeholder="a red circle moving left to right on a black background",
                                      elem_id=f"{task}-prompt")
            hint = gr.Markdown("", elem_id=f"{task}-prompt-hint", visible=micro)
            if task == "style":
                named["style_image"] = Image(label="Style image", type="filepath", image_mode=None,
                                             sources=["upload", "clipboard"], field="style_image", height=200,
                                             elem_id=f"{task}-style_image")
            if task == "audio":
                named["audio"] = Audio(label="Audio (file or microphone)", type="filepath",
                                       sources=["upload", "microphone"], field="audio", elem_id=f"{task}-audio")
            if task == "interpolate":
                with gr.Row():
                    named["first_frame"] = Image(label="First frame", type="filepath", image_mode=None,
                                                 field="first_frame", height=160, elem_id=f"{task}-first_frame")
                    named["last_frame"] = Image(label="Last frame", type="filepath", image_mode=None,
                                                field="last_frame", height=160, elem_id=f"{task}-last_frame")
                named["interpolation_mode"] = Dropdown(
                    choices=list(INTERPOLATION_MODES), value="reward", label="Interpolation constraint",
                    info="reward: guide towards the key frames (TITAN reached them within 0.5 px, "
                         "bench/EVALUATE.md); replacement: overwrite the known latent frames (exact ends, any "
                         "method); both (a gradient method adds nothing to replacement's ends)",
                    field="interpolation_mode")
            if task == "t2v":
                named["t2v_reward"] = Dropdown(
                    choices=list(T2V_REWARDS), value="clip", label="Reward",
                    info="clip: CLIP text alignment; lvlm: a vision-language judge (black box: use free2guide; "
                         "set GVS_LVLM_URL); clip+lvlm: Free²Guide's reward ensembles", field="t2v_reward")
                named["reward_prompt"] = Textbox(
                    label="Reward prompt (optional)", lines=1, max_length=MAX_PROMPT_CHARS, field="reward_prompt",
                    elem_id=f"{task}-reward_prompt",
                    info="the text the reward scores, when it should differ from the prompt; with an empty prompt "
                         "the model samples unconditioned and only guidance draws this text (TITAN: +17 points of "
                         "detected attributes, bench/EVALUATE.md)")
            named["method"] = Dropdown(
                choices=studio.methods, value=default_method, label="Guidance method", field="method",
                elem_id=f"{task}-method",
                info=f"Opens on {default_method}: {reason}." if reason else "none = plain DDIM, no guidance")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id=f"{task}-generate", scale=2)
                cmp_btn = gr.Button("Compare with unguided", elem_id=f"{task}-compare", scale=2)
                stop = gr.Button("Cancel", variant="stop", elem_id=f"{task}-cancel", scale=1)
            with gr.Row():
                named["seed"] = Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                       field="seed", scale=3)
                dice = gr.Button("Randomise seed", scale=1, size="sm")
                named["steps"] = Slider(minimum=STEPS_RANGE[0], maximum=STEPS_RANGE[1], step=1,
                                        value=preset.default_steps, label="Steps", field="steps", scale=4,
                                        elem_id=f"{task}-steps")
            main_groups, range_groups = {}, {}
            with gr.Accordion("Method parameters (METHODS.md defaults, or the live preset's tuned values)",
                              open=False):
                for m in studio.methods:
                    with gr.Group(visible=(m == default_method)) as grp:
                        summary = _method_summary(m)
                        if summary:
                            gr.Markdown(f"**{m}** — {summary}")
                        for spec in studio.specs[m]:
                            if spec.name not in RANGE_PARAMS:
                                named[f"{m}__{spec.name}"] = _param_widget(
                                    m, spec, preset.guidance_defaults(m, task).get(spec.name, spec.default),
                                    preset.default_steps)
                    main_groups[m] = grp
            with gr.Accordion("Advanced: negative prompt, CFG, η, HARIVO, frames, size, guided steps", open=False):
                named["negative_prompt"] = Textbox(label="Negative prompt", lines=1, max_length=MAX_PROMPT_CHARS,
                                                   field="negative_prompt")
                with gr.Row():
                    named["cfg"] = Slider(minimum=CFG_RANGE[0], maximum=CFG_RANGE[1], step=0.5,
                                          value=preset.default_cfg, label="CFG scale", field="cfg")
                    named["eta"] = Slider(minimum=ETA_RANGE[0], maximum=ETA_RANGE[1], step=0.05, value=DEFAULT_ETA,
                                          label="DDIM η", info="noise of each DDIM step, the same for every method "
                                          "(0 = deterministic; Free²Guide needs η > 0)", field="eta")
                with gr.Row():
                    named["mg_scale"] = Slider(minimum=MG_RANGE[0], maximum=MG_RANGE[1], step=1, value=0,
                                               label="HARIVO MG α (0 = off, 40 = HARIVO default)", field="mg_scale")
                    named["cfg_schedule"] = Checkbox(value=False, label="HARIVO CFG schedule", field="cfg_schedule")
                with gr.Row():
                    named["frames"] = Dropdown(choices=frame_choices, value=int(preset.default_frames),
                                               label="Frames", field="frames")
                    named["size"] = Dropdown(choices=size_choices, value=int(preset.default_size),
                                             label="Size (square, px)", field="size")
                range_sliders = []
                for m in studio.methods:
                    specs = [s for s in studio.specs[m] if s.name in RANGE_PARAMS]
                    with gr.Row(visible=(m == default_method and bool(specs))) as grp:
                        for spec in specs:
                            w = _param_widget(m, spec, preset.guidance_defaults(m, task).get(spec.name, spec.default),
                                              preset.default_steps)
                            named[f"{m}__{spec.name}"] = w
                            range_sliders.append((spec.name, w))
                    range_groups[m] = grp
        with gr.Column(scale=7):
            status = gr.Textbox(label="Status / summary", lines=4, interactive=False, elem_id=f"{task}-summary")
            gr.Markdown("**Live preview** — the decoded x̂0 of the current step, one tile per frame")
            preview = gr.Image(show_label=False, type="pil", interactive=False, format="png", buttons=[],
                               container=False, elem_id=f"{task}-preview", elem_classes=["gvs-pixels", "gvs-preview"])
            video = gr.Video(label="Video", interactive=False, height=DISPLAY_SIDE, elem_id=f"{task}-video",
                             loop=True, autoplay=True, elem_classes=["gvs-pixels"])
            plot = gr.Plot(value=reward_figure({}), label="Reward per step", elem_id=f"{task}-plot")
            with gr.Group(visible=False) as cmp_group:
                gr.Markdown("**Compare with unguided** — left: method `none`, right: the chosen method")
                with gr.Row():
                    base_video = gr.Video(label="Unguided", interactive=False, height=256, loop=True, autoplay=True,
                                          elem_id=f"{task}-unguided-video", elem_classes=["gvs-pixels"])
                    guided_video = gr.Video(label="Guided", interactive=False, height=256, loop=True, autoplay=True,
                                            elem_id=f"{task}-guided-video", elem_classes=["gvs-pixels"])
                cmp_table = gr.Markdown(elem_id=f"{task}-compare-table")
            report = gr.File(label="JSON report", interactive=False, elem_id=f"{task}-report")
            history = gr.State([])
            gallery = gr.Gallery(label=f"History (this browser tab, last {HISTORY_SIZE}; click one to reload it)",
                                 columns=4, height=200, allow_preview=False, object_fit="contain", elem_id=f"{task}-history",
                                 elem_classes=["gvs-pixels"])

    names = list(named)
    inputs = [named[n] for n in names]
    outputs = [preview, plot, video, report, status]
    cmp_outputs = [preview, plot, base_video, guided_video, cmp_table, report, status]

    def _endpoint(fn, name):
        @GPU
        def handler(*values):
            values = list(values)
            progress = values.pop() if values and isinstance(values[-1], gr.Progress) else None
            request = values.pop()
            key = f"{getattr(request, 'session_hash', None)}:{task}"
            yield from fn(task, dict(zip(names, values)), progress, key)

        # defaults in the signature become the API's defaults (gradio_client fills omitted arguments with them)
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=getattr(named[n], "value", None)) for n in names]
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.Request))
        params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=gr.Progress(track_tqdm=False)))
        handler.__signature__ = inspect.Signature(params)
        handler.__annotations__ = {"request": gr.Request}
        handler.__name__ = name
        return handler

    ev = go.click(_endpoint(studio.generate, ENDPOINTS[task]), inputs=inputs, outputs=outputs,
                  api_name=ENDPOINTS[task], concurrency_id="gpu", concurrency_limit=studio.slots,
                  show_progress="minimal",
                  show_progress_on=[video])
    go.click(lambda: gr.update(visible=False), None, cmp_group, queue=False, api_visibility="private")
    cmp_btn.click(_endpoint(studio.compare, f"{ENDPOINTS[task]}_compare"), inputs=inputs,
                  outputs=cmp_outputs, api_name=f"{ENDPOINTS[task]}_compare", concurrency_id="gpu",
                  concurrency_limit=studio.slots, show_progress="minimal", show_progress_on=[guided_video])
    cmp_btn.click(lambda: gr.update(visible=True), None, cmp_group, queue=False, api_visibility="private")

    def key_of(request) -> str:
        return f"{getattr(request, 'session_hash', None)}:{task}"

    def clicked(request: gr.Request):
        studio.clicked(key_of(request))

    def cancel(request: gr.Request):
        return studio.cancel(key_of(request))

    go.click(clicked, None, None, queue=False, api_visibility="private")
    cmp_btn.click(clicked, None, None, queue=False, api_visibility="private")
    stop.click(cancel, None, status, queue=False, api_visibility="private")
    dice.click(lambda: random.randint(0, MAX_SEED), None, named["seed"], queue=False, api_visibility="private")

    def show_method(m):
        return ([gr.update(visible=(k == m and bool(studio.specs[k]))) for k in main_groups]
                + [gr.update(visible=(k == m and any(s.name in RANGE_PARAMS for s in studio.specs[k])))
                   for k in range_groups])

    named["method"].change(show_method, named["method"], list(main_groups.values()) + list(range_groups.values()),
                           queue=False, api_visibility="private")

    def bound_ranges(steps):
        try:
            steps = int(steps)
        except (TypeError, ValueError):
            return [gr.skip() for _ in range_sliders]
        return [gr.update(minimum=_range_bounds(n, steps)[0], maximum=_range_bounds(n, steps)[1])
                for n, _ in range_sliders]

    if range_sliders:
        named["steps"].change(bound_ranges, named["steps"], [w for _, w in range_sliders], queue=False,
                              api_visibility="private")

    if micro:
        from pipelines.micro.world import caption_notice

        def prompt_hint(text):
            note = caption_notice(text) if text and text.strip() else None
            return f"⚠️ {note}." if note else ""

        named["prompt"].change(prompt_hint, named["prompt"], hint, queue=False, api_visibility="private",
                               show_progress="hidden")

    for field in UPLOADS:
        if field in named:
            listeners = [named[field].upload] + ([named[field].stop_recording] if field == "audio" else [])
            for listen in listeners:
                listen(lambda p, f=field: check_upload(p, f), named[field], [named[field], status],
                       preprocess=False, queue=False, api_visibility="private", show_progress="hidden")

    # ---- history: every finished run of this browser tab, newest first; a click reloads its settings
    def remember(hist, report_value, video_value, shown_value):
        """Add the run on screen to the history. Takes the components' raw values (`preprocess=False`): after a
        Cancel the page holds no file for an output the run skipped, and preprocessing that value failed the
        request (the HTTP 500 the browser logged after every Cancel)."""
        report_path = raw_path(report_value)
        if not report_path or not Path(report_path).exists():
            return gr.skip(), gr.skip()
        img = Path(report_path).with_suffix(".png")
        if not img.exists():  # a cached example: its grid is the preview on screen
            shown = raw_path(shown_value)
            if not shown or not Path(shown).is_file():
                return gr.skip(), gr.skip()
            img = OUTPUT_ROOT / f"{uuid.uuid4().hex[:12]}.png"
            shutil.copyfile(shown, img)
        hist = add_history(hist, report_path, raw_path(video_value), img, HISTORY_SIZE)
        return hist, gallery_items(hist)

    remembered = [history, report, video, preview]
    ev.success(remember, remembered, [history, gallery], queue=False, api_visibility="private", preprocess=False)
    settable = [n for n in names if n not in UPLOADS]

    def reload(hist, evt: gr.SelectData):
        if not hist or evt.index is None or evt.index >= len(hist):
            return [gr.skip()] * (len(settable) + 5)
        h = hist[evt.index]
        rep = json.loads(Path(h["report"]).read_text())
        settings = settings_from_report(rep)
        fig = reward_figure({"task reward": rep.get("reward_per_step") or []})
        return ([settings[n] if n in settings else gr.skip() for n in settable]
                + [h["video"], h["report"], summary_text(rep), fig, h["image"]])

    gallery.select(reload, [history], [named[n] for n in settable] + [video, report, status, plot, preview],
                   queue=False, api_visibility="private")

    # ---- examples: cached (eager / lazy) show their outputs at once; not cached, a click fills and generates
    rows = _examples_for(task)
    if rows:
        ex_names = ["prompt"] + [n for n in UPLOADS if n in named] + ["method", "mg_scale", "seed"]

        def example_fn(*vals):
            kw = _defaults(named)
            kw.update(dict(zip(ex_names, vals)))
            last = None
            for last in studio.generate(task, kw, None, key=f"example:{task}"):
                pass
            return last

        cached = cache_examples in ("eager", "lazy")
        examples = gr.Examples(rows, inputs=[named[n] for n in ex_names], outputs=outputs, fn=example_fn,
                               cache_examples=cached, cache_mode=cache_examples if cached else None,
                               label="Examples (click one: its video appears)", api_name=False,
                               examples_per_page=10, elem_id=f"{task}-examples")
        if cached:
            examples.load_input_event.then(remember, remembered, [history, gallery], queue=False,
                                           api_visibility="private", preprocess=False)
        else:
            ex_ev = examples.load_input_event.then(
                _endpoint(studio.generate, f"{ENDPOINTS[task]}_example"), inputs=inputs, outputs=outputs,
                api_visibility="private", concurrency_id="gpu", concurrency_limit=studio.slots, show_progress="minimal",
                show_progress_on=[video])
            ex_ev.success(remember, remembered, [history, gallery], queue=False,
                          api_visibility="private", preprocess=False)


def _defaults(named: dict) -> dict:
    return {n: getattr(c, "value", None) for n, c in named.items()}


def _method_summary(name: str) -> str:
    try:
        from pipelines.guidance import method_class

        return getattr(method_class(name), "summary", "") or ""
    except Exception:
        return ""


def _quiet_known_warnings() -> None:
    """transformers warns at import that torchvision is missing for two image processors we never use."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record):
            return "requires torchvision" not in record.getMessage()

    try:
        from transformers.utils import logging as tlog

        root = tlog.get_logger("transformers")
        root.addFilter(_Drop())
        for h in root.handlers:
            h.addFilter(_Drop())
    except Exception:  # transformers missing or changed: the warnings are harmless
        pass


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
    p.add_argument("--cache-examples", choices=CACHE_MODES,
                   default=os.environ.get("GVS_CACHE_EXAMPLES_MODE", "eager"),
                   help="eager (default): compute the examples' outputs at start-up; lazy: on the first click; "
                        "off: a click fills the inputs and generates")
    p.add_argument("--no-cache-examples", action="store_true", help="same as --cache-examples off (faster start)")
    a = p.parse_args(argv)
    if a.no_cache_examples or os.environ.get("GVS_CACHE_EXAMPLES", "1") == "0":
        a.cache_examples = "off"
    return a


def main(argv=None):
    args = parse_args(argv)
    _quiet_known_warnings()
    from pipelines.presets import load_preset

    n_threads, why = configure_torch_threads()
    t0 = time.perf_counter()
    from pipelines.pool import PipelinePool, available_devices

    # one preset per GPU (one generation each; Gradio's concurrency limit = number of GPUs); one slot on CPU
    devices = [args.device] if args.device else available_devices()
    preset = load_preset(args.preset, device=devices[0])
    pool = PipelinePool(lambda d: load_preset(args.preset, device=d),
                        devices if preset.device.type == "cuda" else [devices[0]])
    pool.warm()
    threads = f"{n_threads} torch threads ({why})"
    log(f"preset {preset.name} on {preset.device}: {preset.reason} ({time.perf_counter() - t0:.1f} s); {threads}")
    # one cache folder per preset: cached outputs of the micro preset must not be shown for animatediff
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(ROOT / ".gradio" / "cached_examples" / preset.name))
    demo = build_demo(preset, cache_examples=args.cache_examples, threads=threads, pool=pool)
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                allowed_paths=[str(OUTPUT_ROOT)], show_error=True, footer_links=["api", "gradio"], css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
