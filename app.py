"""Guided Video Studio: the Gradio app (`python app.py [--preset auto|micro|animatediff] [--port N] [--host H] [--share]
[--model-dir DIR]`).

Thin by design: this file lays out the widgets and wires them to a `pipelines.studio.Studio`, which owns the runs
(a token and a folder each, `pipelines.studio.runs`), the handlers, the history and the examples.

Four tabs, one API endpoint each: /text_to_video, /style_transfer, /audio_alignment, /frame_interpolation, and a
`<endpoint>_compare` endpoint per tab that runs the same request unguided and guided (same seed and η).
All share the GPU slots (`concurrency_id="gpu"`, limit = number of GPUs, one preset each from
`pipelines.pool.PipelinePool`; 1 on CPU) behind a bounded queue.
"""
from __future__ import annotations

import argparse
import inspect
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from pipelines.presets import is_micro_world, micro_world, task_default_method  # noqa: E402
from pipelines.request import (  # noqa: E402
    CFG_RANGE, DEFAULT_ETA, DEFAULT_INTERPOLATION_MODE, ETA_RANGE, INTERPOLATION_MODES, MAX_PROMPT_CHARS, MAX_SEED,
    MG_RANGE, STEPS_RANGE, TASK_NAMES, summary_text,
)
from pipelines.studio import history as hist_mod  # noqa: E402
from pipelines.studio.compute import TorchThread  # noqa: E402
from pipelines.studio.examples import drop_failed_cache, example_fn, example_names, example_rows  # noqa: E402
from pipelines.studio.gpu import gpu_decorator  # noqa: E402
from pipelines.studio.handlers import DISPLAY_SIDE, ENDPOINTS, Studio, log  # noqa: E402
from pipelines.studio.history import HISTORY_SIZE  # noqa: E402
from pipelines.studio.messages import guard  # noqa: E402
from pipelines.studio.limits import describe_cap, job_cap  # noqa: E402
from pipelines.studio.queueing import configure_queue  # noqa: E402
from pipelines.studio.runs import RunStore  # noqa: E402
from pipelines.studio.threads import ThreadPolicy, describe_threads  # noqa: E402
from pipelines.studio.widgets import (  # noqa: E402
    UPLOADS, Audio, Checkbox, Dropdown, Image, LinePlot, Number, Slider, Textbox, check_upload,
)
from pipelines.tasks import T2V_REWARDS  # noqa: E402
from pipelines.ui import (  # noqa: E402
    PLOT_COLOR, PLOT_SERIES, PLOT_X, PLOT_X_FORMAT, PLOT_Y, PLOT_Y_FORMAT, configure_torch_threads, empty_plot_data,
    reward_plot_data, series_name,
)

ROOT = Path(__file__).resolve().parent
MAX_FILE_SIZE = "20mb"
QUEUE_MAX_SIZE = 16
RANGE_PARAMS = ("start_step", "end_step")  # method parameters bounded by the chosen steps (in "Advanced")
CACHE_MODES = ("eager", "lazy", "off")
TAB_INTRO = {
    "t2v": "Type a prompt; optionally guide it (text–video alignment reward) and smooth motion with HARIVO MG.",
    "style": "Upload a style image: the guidance pulls every frame's CLIP Gram matrix towards the image's.",
    "audio": "Upload or record audio: the video's motion is aligned to the sound (cropped to the video length).",
    "interpolate": "Give a first and a last frame: the video is generated between them.",
}
CSS = """
.gvs-pixels video, .gvs-pixels img { image-rendering: pixelated; }
.gvs-preview img { object-fit: contain; }
"""


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


def build_demo(preset, cache_examples="eager", threads: str = "", pool=None, store=None,
               delete_cache=None, compute=None, model_dir=None, max_job_seconds=None, thread_policy=None) -> gr.Blocks:
    """The app. `model_dir`: the folder whose models web clients may name in the Model fields (None: off);
    `max_job_seconds`: the cap of one job (None: `GVS_MAX_JOB_S` or the preset's default; 0: none);
    `thread_policy`: a `pipelines.studio.threads.ThreadPolicy` choosing each run's torch threads (None: as set)."""
    if cache_examples is True:
        cache_examples = "eager"
    elif cache_examples in (False, None):
        cache_examples = "off"
    cap, cap_why = job_cap(preset, max_job_seconds)
    studio = Studio(preset, pool, store, compute=compute, model_dir=model_dir, max_job_s=cap, max_job_why=cap_why,
                    threads=thread_policy)
    frame_choices = [int(x) for x in preset.frame_choices]
    size_choices = [int(x) for x in preset.size_choices]
    banner = (f"**Live preset: `{preset.name}`** on `{preset.device}` — {preset.reason}  \n"
              f"{preset.fps} fps · frames {frame_choices} · sizes {size_choices} · "
              f"defaults: {preset.default_steps} steps, CFG {preset.default_cfg} · {describe_cap(cap, cap_why)}"
              + (f" · {threads}" if threads else ""))
    with gr.Blocks(title="Guided Video Studio", delete_cache=delete_cache) as demo:
        gr.Markdown("# Guided Video Studio\nTraining-free guided text-to-video: TITAN-Guide, FreeDoM, MPGD, TFG, "
                    "DOODL, Free²Guide and HARIVO's mitigating gradient, streamed step by step.")
        gr.Markdown(banner, elem_id="preset-banner")
        for task, label in TASK_NAMES.items():
            with gr.Tab(label, id=task, elem_id=f"tab-{task}"):
                _build_tab(studio, task, frame_choices, size_choices, cache_examples)
    demo.studio = studio
    guard(demo)  # every message a client gets: field-named, or a short one with an id (pipelines.studio.messages)
    return demo


def _build_tab(studio: Studio, task: str, frame_choices, size_choices, cache_examples: str):
    """One tab's widgets and their events."""
    preset = studio.preset
    default_method, reason = task_default_method(task)
    if default_method not in studio.specs:
        default_method, reason = "none", ""
    gr.Markdown(TAB_INTRO[task])
    named: dict[str, gr.components.Component] = {}
    micro = is_micro_world(preset.name)
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
                    choices=list(INTERPOLATION_MODES), value=DEFAULT_INTERPOLATION_MODE, label="Interpolation constraint",
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
                # the API endpoints' triggers: the page's buttons run the same handlers with their run's token
                api_go = gr.Button(visible=False)
                api_cmp = gr.Button(visible=False)
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
            off = "" if studio.model_dir else " — off on this server (its operator starts it with --model-dir DIR)"
            with gr.Accordion("Model: trained video parts, LoRA" + off, open=False):
                named["video_parts"] = Textbox(
                    label="Trained video parts (a folder name in the server's model folder)", lines=1,
                    field="video_parts", elem_id=f"{task}-video_parts", placeholder="harivo-micro/final",
                    info="the final/ folder of a `python -m pipelines.training` run, named relative to the model "
                         "folder: its temporal layers, mapping network and frame tokens go under this preset's "
                         "image model (same model family only)" + off)
                named["lora"] = Textbox(
                    label="LoRA on the image model (NAME[:scale], several separated by commas)", lines=1,
                    field="lora", elem_id=f"{task}-lora", placeholder="striped-lora:1.0",
                    info="diffusers-format LoRA weights (a .safetensors file or its folder) in the model folder; "
                         "needs peft" + off)
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
            # drawn by the browser from (step, reward, series) rows: cheap enough to update with every streamed row
            plot = LinePlot(value=empty_plot_data(), x=PLOT_X, y=PLOT_Y, color=PLOT_COLOR, color_map=PLOT_SERIES,
                            x_axis_format=PLOT_X_FORMAT, y_axis_format=PLOT_Y_FORMAT, x_title="step",
                            y_title="reward", color_title="run", label="Reward per step (higher is better)",
                            height=300,
                            elem_id=f"{task}-plot")
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
            token = gr.State(None)  # the run this tab's last Generate / Compare click made: what Cancel stops
            gallery = gr.Gallery(label=f"History (this browser tab, last {HISTORY_SIZE}; click one to reload it)",
                                 columns=4, height=200, allow_preview=False, object_fit="contain", elem_id=f"{task}-history",
                                 elem_classes=["gvs-pixels"])

    # the Model accordion's fields last: the API's earlier positional arguments keep their places
    names = [n for n in named if n not in ("video_parts", "lora")] + [n for n in ("video_parts", "lora") if n in named]
    inputs = [named[n] for n in names]
    outputs = [preview, plot, video, report, status]
    cmp_outputs = [preview, plot, base_video, guided_video, cmp_table, report, status]

    def _endpoint(fn, name, compare=False, with_token=False):
        @gpu_decorator(names, compare)
        def handler(*values):
            values = list(values)
            progress = values.pop() if values and isinstance(values[-1], gr.Progress) else None
            values.pop()  # gr.Request
            tok = values.pop() if with_token else None
            yield from studio.iterate(fn(task, dict(zip(names, values)), progress, token=tok))

        # defaults in the signature become the API's defaults (gradio_client fills omitted arguments with them)
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=getattr(named[n], "value", None)) for n in names]
        if with_token:
            params.append(inspect.Parameter("token", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None))
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.Request))
        params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=gr.Progress(track_tqdm=False)))
        handler.__signature__ = inspect.Signature(params)
        handler.__annotations__ = {"request": gr.Request}
        handler.__name__ = name
        return handler

    gpu = dict(concurrency_id="gpu", concurrency_limit=studio.slots, show_progress="minimal")
    # the API: the four endpoints and their _compare twins, each run with a token of its own
    api_go.click(_endpoint(studio.generate, ENDPOINTS[task]), inputs=inputs, outputs=outputs,
                 api_name=ENDPOINTS[task], **gpu)
    api_cmp.click(_endpoint(studio.compare, f"{ENDPOINTS[task]}_compare", compare=True), inputs=inputs,
                  outputs=cmp_outputs, api_name=f"{ENDPOINTS[task]}_compare", **gpu)

    # the page: a click makes a queued run (its token; the status says queued), then runs it
    def begin():
        return studio.begin()

    def failed(tok):
        return studio.failure_text(tok)

    def result_video(tok):
        v = studio.result_video(tok)
        return v if v else gr.skip()

    def remember(hist, tok):
        got = hist_mod.remember_run(hist, tok, studio.store)
        return got if got is not None else (gr.skip(), gr.skip())

    def remember_shown(hist, report_value, video_value, shown_value):
        """A cached example: the components' raw values (`preprocess=False`), no run token."""
        got = hist_mod.remember_shown(hist, report_value, video_value, shown_value)
        return got if got is not None else (gr.skip(), gr.skip())

    private = dict(queue=False, api_visibility="private")
    ui_go = go.click(begin, None, [token, status], **private).then(
        _endpoint(studio.generate, f"{ENDPOINTS[task]}_page", with_token=True), inputs=inputs + [token],
        outputs=outputs, api_visibility="private", show_progress_on=[video], **gpu)
    ui_go.success(remember, [history, token], [history, gallery], **private)
    ui_go.failure(failed, token, status, **private)
    go.click(lambda: gr.update(visible=False), None, cmp_group, **private)
    ui_cmp = cmp_btn.click(begin, None, [token, status], **private).then(
        _endpoint(studio.compare, f"{ENDPOINTS[task]}_compare_page", compare=True, with_token=True),
        inputs=inputs + [token], outputs=cmp_outputs, api_visibility="private", show_progress_on=[guided_video],
        **gpu)
    ui_cmp.success(result_video, token, video, **private).then(remember, [history, token], [history, gallery],
                                                                **private)
    ui_cmp.failure(failed, token, status, **private)
    cmp_btn.click(lambda: gr.update(visible=True), None, cmp_group, **private)
    stop.click(studio.cancel, token, status, **private)
    dice.click(lambda: random.randint(0, MAX_SEED), None, named["seed"], **private)

    def show_method(m):
        return ([gr.update(visible=(k == m and bool(studio.specs[k]))) for k in main_groups]
                + [gr.update(visible=(k == m and any(s.name in RANGE_PARAMS for s in studio.specs[k])))
                   for k in range_groups])

    named["method"].change(show_method, named["method"], list(main_groups.values()) + list(range_groups.values()),
                           **private)

    def bound_ranges(steps):
        try:
            steps = int(steps)
        except (TypeError, ValueError):
            return [gr.skip() for _ in range_sliders]
        return [gr.update(minimum=_range_bounds(n, steps)[0], maximum=_range_bounds(n, steps)[1])
                for n, _ in range_sliders]

    if range_sliders:
        named["steps"].change(bound_ranges, named["steps"], [w for _, w in range_sliders], **private)

    if micro:
        from pipelines.micro.world import caption_notice

        world = micro_world(preset)  # the prompt help of the world the weights were trained on

        def prompt_hint(text):
            note = caption_notice(text, world=world) if text and text.strip() else None
            return f"⚠️ {note}." if note else ""

        named["prompt"].change(prompt_hint, named["prompt"], hint, show_progress="hidden", **private)

    for field in UPLOADS:
        if field in named:
            listeners = [named[field].upload] + ([named[field].stop_recording] if field == "audio" else [])
            for listen in listeners:
                listen(lambda p, f=field: check_upload(p, f), named[field], [named[field], status],
                       preprocess=False, show_progress="hidden", **private)

    # ---- history: every finished run of this browser tab, newest first; a click reloads its settings
    settable = [n for n in names if n not in UPLOADS]

    def reload(hist, evt: gr.SelectData):
        got = hist_mod.reload(hist, evt.index)
        if got is None:
            return [gr.skip()] * (len(settable) + 5)
        settings, h, rep = got
        fig = reward_plot_data({series_name(rep.get("method", "none")): rep.get("reward_per_step") or []})
        return ([settings[n] if n in settings else gr.skip() for n in settable]
                + [h["video"], h["report"], summary_text(rep), fig, h["image"]])

    gallery.select(reload, [history], [named[n] for n in settable] + [video, report, status, plot, preview],
                   **private)

    # ---- examples: cached (eager / lazy) show their outputs at once; not cached, a click fills and generates
    rows = example_rows(task, world=micro_world(preset) or 1)  # a world-2 preset's style example leaves the look open
    if rows:
        ex_names = example_names(task, [n for n in UPLOADS if n in named])
        defaults = {n: getattr(c, "value", None) for n, c in named.items()}
        cached = cache_examples in ("eager", "lazy")
        examples = gr.Examples(rows, inputs=[named[n] for n in ex_names], outputs=outputs,
                               fn=example_fn(studio, task, defaults, ex_names),
                               cache_examples=cached, cache_mode=cache_examples if cached else None,
                               label="Examples (click one: its video appears)", api_name=False,
                               examples_per_page=10, elem_id=f"{task}-examples")
        if cached:
            drop_failed_cache(examples)  # a failed example of an earlier start is computed again
        shown = [history, report, video, preview]
        if cached:
            examples.load_input_event.then(remember_shown, shown, [history, gallery], preprocess=False, **private)
        else:
            ex_ev = examples.load_input_event.then(
                _endpoint(studio.generate, f"{ENDPOINTS[task]}_example"), inputs=inputs, outputs=outputs,
                api_visibility="private", show_progress_on=[video], **gpu)
            ex_ev.success(remember_shown, shown, [history, gallery], preprocess=False, **private)


_examples_for = example_rows  # the examples' rows, as older callers (tests/test_micro_guidance.py) import them


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
    from pipelines.presets import PRESETS, presets_help

    p.add_argument("--preset", default=os.environ.get("GVS_PRESET", "auto"), choices=PRESETS, metavar="PRESET",
                   help=presets_help("auto"))
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
    p.add_argument("--keep-runs", type=int, default=int(os.environ.get("GVS_KEEP_RUNS", 64)),
                   help="finished runs kept on disk (their folders under the runs folder; older ones are deleted)")
    p.add_argument("--model-dir", default=os.environ.get("GVS_MODEL_DIR") or None, metavar="DIR",
                   help="let web clients load trained video parts and LoRAs found inside DIR, named relative to it "
                        "(default: off; the CLI takes any path)")
    p.add_argument("--max-age", type=float, default=float(os.environ.get("GVS_MAX_AGE_S", 24 * 3600)),
                   help="seconds after which a run's folder and Gradio's cached files are deleted (default 1 day)")
    p.add_argument("--max-job-seconds", default=None, metavar="S",
                   help="wall-clock cap of one job (a run, or a Compare's two), checked between steps; 0 = no cap "
                        "(default: GVS_MAX_JOB_S, else sized to the preset and device: micro 300 s on CPU, 120 s on "
                        "GPU; full-size 3600 s on CPU, 900 s on GPU)")
    p.add_argument("--threads", default=os.environ.get("GVS_THREADS", "auto"), metavar="N|auto",
                   help="torch threads per run: auto (default) chooses each run's from the cores free then "
                        "(an explicit OMP_NUM_THREADS wins over auto); N fixes them")
    a = p.parse_args(argv)
    if a.max_job_seconds is not None:
        from pipelines.studio.limits import parse_seconds

        try:
            parse_seconds(a.max_job_seconds)
        except ValueError as e:
            p.error(str(e))
    try:
        ThreadPolicy.from_settings(a.threads, background=False)
    except ValueError as e:
        p.error(str(e))
    if a.no_cache_examples or os.environ.get("GVS_CACHE_EXAMPLES", "1") == "0":
        a.cache_examples = "off"
    return a


def delete_cache_for(max_age_s: float) -> tuple[int, int]:
    """Gradio's `delete_cache` (frequency, age): its own cache (uploads, anything it copies) is swept on the runs'
    age, checked at least hourly."""
    age = max(1, int(max_age_s))
    return max(1, min(age, 3600)), age


def runs_root() -> Path:
    """Where run folders live: inside Gradio's cache folder (served in place, no copy), or `GVS_RUNS_DIR`."""
    from gradio.utils import get_upload_folder

    return Path(os.environ.get("GVS_RUNS_DIR") or Path(get_upload_folder()) / "gvs-runs")


def main(argv=None):
    args = parse_args(argv)
    if args.model_dir and not Path(args.model_dir).is_dir():
        print(f"error: --model-dir: {args.model_dir} is not a folder", file=sys.stderr)
        return 2
    _quiet_known_warnings()
    from pipelines.presets import load_preset

    policy = ThreadPolicy.from_settings(args.threads)  # samples the cores' load in the background from now on
    n_threads, why = configure_torch_threads()
    if policy.fixed is not None:
        import torch

        torch.set_num_threads(policy.fixed)
        threads = describe_threads(policy.fixed, policy.why)
    else:
        threads = f"torch threads chosen per run from the free cores (now {n_threads}: {why})"
    t0 = time.perf_counter()
    from pipelines.pool import PipelinePool, available_devices

    # one preset per GPU (one generation each; Gradio's concurrency limit = number of GPUs); one slot on CPU
    devices = [args.device] if args.device else available_devices()
    # on a CPU every torch call of the app (loading, runs, examples) goes through one thread (studio/compute.py)
    compute = TorchThread() if str(devices[0]).startswith("cpu") else None
    try:
        preset = compute.call(load_preset, args.preset, device=devices[0]) if compute else load_preset(
            args.preset, device=devices[0])
    except ValueError as e:  # an unknown preset or its weights missing (micro-harivo names the command that makes them)
        print(f"error: --preset: {e}", file=sys.stderr)
        return 2
    pool = PipelinePool(lambda d: load_preset(args.preset, device=d),
                        devices if preset.device.type == "cuda" else [devices[0]])
    if len(pool) > 1:  # one slot runs on `preset` itself (Studio._preset): nothing more to load
        pool.warm()
    log(f"preset {preset.name} on {preset.device}: {preset.reason} ({time.perf_counter() - t0:.1f} s); {threads}")
    # one cache folder per preset: cached outputs of the micro preset must not be shown for animatediff
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(ROOT / ".gradio" / "cached_examples" / preset.name))
    store = RunStore(runs_root(), keep=args.keep_runs, max_age_s=args.max_age)
    removed = store.prune()
    log(f"runs in {store.root}: keeping the last {store.keep} finished runs and nothing older than "
        f"{store.max_age_s:g} s" + (f" ({len(removed)} old runs deleted)" if removed else ""))
    demo = build_demo(preset, cache_examples=args.cache_examples, threads=threads, pool=pool, store=store,
                      delete_cache=delete_cache_for(args.max_age), compute=compute, model_dir=args.model_dir,
                      max_job_seconds=args.max_job_seconds, thread_policy=policy)
    if args.model_dir:
        log(f"model fields: names inside {Path(args.model_dir).resolve()}")
    if not configure_queue(demo, QUEUE_MAX_SIZE):
        log("this Gradio's queue has no polling intervals to set: it polls every 1 ms (slower runs on a small CPU)")
    t_ready = time.perf_counter()

    async def _ready():  # runs after every example's start-up caching (Gradio runs these in order)
        log(f"ready: examples {args.cache_examples} ({time.perf_counter() - t_ready:.1f} s); "
            f"serving on http://{args.host}:{args.port}")

    demo.extra_startup_events.append(_ready)
    # show_error=False: no raw exception text for a client, whatever raises; messages come from guard() (build_demo)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                allowed_paths=[str(store.root)], show_error=False, footer_links=["api", "gradio"], css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
