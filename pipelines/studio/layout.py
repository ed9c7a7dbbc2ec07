"""The app's page: the banner and four tabs of widgets (`build_demo`); `pipelines.studio.events` wires them.

Every widget opens on the one table of defaults (`pipelines.request.field_defaults`, the method parameters'
`method_defaults`): what a client of the API gets for a field it leaves out.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..presets import is_micro_world, task_default_method
from ..request import (
    CFG_RANGE, ETA_RANGE, INTERPOLATION_MODES, MAX_PROMPT_CHARS, MAX_SEED, MG_RANGE, STEPS_RANGE, TASK_NAMES,
    field_defaults, method_defaults,
)
from ..tasks import T2V_REWARDS
from ..ui import PLOT_COLOR, PLOT_SERIES, PLOT_X, PLOT_X_FORMAT, PLOT_Y, PLOT_Y_FORMAT, empty_plot_data
from .events import wire
from .handlers import DISPLAY_SIDE, Studio
from .history import HISTORY_SIZE
from .limits import describe_cap, job_cap
from .messages import guard
from .widgets import RANGE_PARAMS, Audio, Checkbox, Dropdown, Image, LinePlot, Number, Slider, Textbox, range_bounds

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
                wire(studio, build_tab(studio, task, frame_choices, size_choices), cache_examples)
    demo.studio = studio
    guard(demo)  # every message a client gets: field-named, or a short one with an id (pipelines.studio.messages)
    return demo


def param_widget(spec, default, steps: int):
    """A widget for one method parameter; `default` is the live preset's (METHODS.md's unless it tunes it)."""
    label, info, field = spec.name, spec.help or None, f"param {spec.name}"
    if spec.kind == "bool":
        return Checkbox(value=bool(default), label=label, info=info, field=field)
    if spec.kind == "choice":
        return Dropdown(choices=list(spec.choices or []), value=default, label=label, info=info, field=field)
    lo, hi = spec.min, spec.max
    if spec.name in RANGE_PARAMS:  # bounded by the chosen steps (updated when Steps moves)
        lo, hi = range_bounds(spec.name, steps)
    if lo is not None and hi is not None:
        step = spec.step or (1 if spec.kind == "int" else (hi - lo) / 100)
        return Slider(minimum=lo, maximum=hi, step=step, value=default, label=label, info=info, field=field)
    return Number(value=default, label=label, info=info, precision=0 if spec.kind == "int" else None, field=field)


def build_tab(studio: Studio, task: str, frame_choices, size_choices) -> SimpleNamespace:
    """One tab's widgets: `named` (the inputs, by field name; method parameters as `<method>__<name>`) and the
    outputs, buttons and groups `events.wire` connects."""
    preset = studio.preset
    d = field_defaults(task, preset)
    default_method, reason = task_default_method(task)
    if default_method not in studio.specs:
        default_method, reason = "none", ""
    d["method"] = default_method
    t = SimpleNamespace(task=task, named={}, main_groups={}, range_groups={}, range_sliders=[],
                        micro=is_micro_world(preset.name))
    named = t.named
    gr.Markdown(TAB_INTRO[task])
    with gr.Row():
        with gr.Column(scale=5):
            named["prompt"] = Textbox(label="Prompt", lines=2, max_length=MAX_PROMPT_CHARS, field="prompt",
                                      value=d["prompt"], elem_id=f"{task}-prompt",
                                      placeholder="a red circle moving left to right on a black background")
            t.hint = gr.Markdown("", elem_id=f"{task}-prompt-hint", visible=t.micro)
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
                    choices=list(INTERPOLATION_MODES), value=d["interpolation_mode"], label="Interpolation constraint",
                    info="reward: guide towards the key frames (bench/EVALUATE.md, interpolation tables); "
                         "replacement: overwrite the known latent frames (exact ends, any "
                         "method); both (a gradient method adds nothing to replacement's ends)",
                    field="interpolation_mode")
            if task == "t2v":
                named["t2v_reward"] = Dropdown(
                    choices=list(T2V_REWARDS), value=d["t2v_reward"], label="Reward",
                    info="clip: CLIP text alignment; lvlm: a vision-language judge (black box: use free2guide; "
                         "set GVS_LVLM_URL); clip+lvlm: Free²Guide's reward ensembles", field="t2v_reward")
                named["reward_prompt"] = Textbox(
                    label="Reward prompt (optional)", lines=1, max_length=MAX_PROMPT_CHARS, field="reward_prompt",
                    value=d["reward_prompt"], elem_id=f"{task}-reward_prompt",
                    info="the text the reward scores, when it should differ from the prompt; with an empty prompt "
                         "the model samples unconditioned and only guidance draws this text (bench/EVALUATE.md, "
                         "t2v-reward table)")
            named["method"] = Dropdown(
                choices=studio.methods, value=d["method"], label="Guidance method", field="method",
                elem_id=f"{task}-method",
                info=f"Opens on {default_method}: {reason}." if reason else "none = plain DDIM, no guidance")
            with gr.Row():
                t.go = gr.Button("Generate", variant="primary", elem_id=f"{task}-generate", scale=2)
                t.cmp_btn = gr.Button("Compare with unguided", elem_id=f"{task}-compare", scale=2)
                t.stop = gr.Button("Cancel", variant="stop", elem_id=f"{task}-cancel", scale=1)
                # the API endpoints' triggers (named fields + uploads); the page's buttons run the same handlers
                t.api_go, t.api_cmp = gr.Button(visible=False), gr.Button(visible=False)
            with gr.Row():
                named["seed"] = Number(value=d["seed"], precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                       field="seed", scale=3)
                t.dice = gr.Button("Randomise seed", scale=1, size="sm")
                named["steps"] = Slider(minimum=STEPS_RANGE[0], maximum=STEPS_RANGE[1], step=1, value=d["steps"],
                                        label="Steps", field="steps", scale=4, elem_id=f"{task}-steps")
            with gr.Accordion("Method parameters (METHODS.md defaults, or the live preset's tuned values)",
                              open=False):
                for m in studio.methods:
                    defaults = method_defaults(m, task, preset)
                    with gr.Group(visible=(m == default_method)) as grp:
                        summary = _method_summary(m)
                        if summary:
                            gr.Markdown(f"**{m}** — {summary}")
                        for spec in studio.specs[m]:
                            if spec.name not in RANGE_PARAMS:
                                named[f"{m}__{spec.name}"] = param_widget(spec, defaults[spec.name], d["steps"])
                    t.main_groups[m] = grp
            off = "" if studio.model_dir else " — off on this server (its operator starts it with --model-dir DIR)"
            with gr.Accordion("Model: trained video parts, LoRA" + off, open=False):
                named["video_parts"] = Textbox(
                    label="Trained video parts (a folder name in the server's model folder)", lines=1,
                    field="video_parts", value=d["video_parts"], elem_id=f"{task}-video_parts",
                    placeholder="harivo-micro/final",
                    info="the final/ folder of a `python -m pipelines.training` run, named relative to the model "
                         "folder: its temporal layers, mapping network and frame tokens go under this preset's "
                         "image model (same model family only)" + off)
                named["lora"] = Textbox(
                    label="LoRA on the image model (NAME[:scale], several separated by commas)", lines=1,
                    field="lora", value=d["lora"], elem_id=f"{task}-lora", placeholder="striped-lora:1.0",
                    info="diffusers-format LoRA weights (a .safetensors file or its folder) in the model folder; "
                         "needs peft" + off)
            with gr.Accordion("Advanced: negative prompt, CFG, η, HARIVO, frames, size, guided steps", open=False):
                named["negative_prompt"] = Textbox(label="Negative prompt", lines=1, max_length=MAX_PROMPT_CHARS,
                                                   value=d["negative_prompt"], field="negative_prompt")
                with gr.Row():
                    named["cfg"] = Slider(minimum=CFG_RANGE[0], maximum=CFG_RANGE[1], step=0.5, value=d["cfg"],
                                          label="CFG scale", field="cfg")
                    named["eta"] = Slider(minimum=ETA_RANGE[0], maximum=ETA_RANGE[1], step=0.05, value=d["eta"],
                                          label="DDIM η", info="noise of each DDIM step, the same for every method "
                                          "(0 = deterministic; Free²Guide needs η > 0)", field="eta")
                with gr.Row():
                    named["mg_scale"] = Slider(minimum=MG_RANGE[0], maximum=MG_RANGE[1], step=1, value=d["mg_scale"],
                                               label="HARIVO MG α (0 = off, 40 = HARIVO default)", field="mg_scale")
                    named["cfg_schedule"] = Checkbox(value=d["cfg_schedule"], label="HARIVO CFG schedule",
                                                     field="cfg_schedule")
                named["paper"] = Checkbox(value=d["paper"], label="paper settings", field="paper",
                                          info="run the method as its paper states it: unbounded step (trust 0) and "
                                               "the paper's λ/ρ/update form/schedule, in place of this page's values "
                                               "for those parameters (docs/methods.md, \"Paper settings\")")
                with gr.Row():
                    named["frames"] = Dropdown(choices=frame_choices, value=d["frames"], label="Frames",
                                               field="frames")
                    named["size"] = Dropdown(choices=size_choices, value=d["size"], label="Size (square, px)",
                                             field="size")
                for m in studio.methods:
                    specs = [s for s in studio.specs[m] if s.name in RANGE_PARAMS]
                    defaults = method_defaults(m, task, preset)
                    with gr.Row(visible=(m == default_method and bool(specs))) as grp:
                        for spec in specs:
                            w = param_widget(spec, defaults[spec.name], d["steps"])
                            named[f"{m}__{spec.name}"] = w
                            t.range_sliders.append((spec.name, w))
                    t.range_groups[m] = grp
        with gr.Column(scale=7):
            _outputs(t, task)
    return t


def _outputs(t: SimpleNamespace, task: str) -> None:
    """The right-hand column: status, live preview, video, reward plot, the Compare pair, report and history."""
    t.status = gr.Textbox(label="Status / summary", lines=4, interactive=False, elem_id=f"{task}-summary")
    gr.Markdown("**Live preview** — the decoded x̂0 of the current step, one tile per frame")
    t.preview = gr.Image(show_label=False, type="pil", interactive=False, format="png", buttons=[], container=False,
                         elem_id=f"{task}-preview", elem_classes=["gvs-pixels", "gvs-preview"])
    t.video = gr.Video(label="Video", interactive=False, height=DISPLAY_SIDE, elem_id=f"{task}-video", loop=True,
                       autoplay=True, elem_classes=["gvs-pixels"])
    # drawn by the browser from (step, reward, series) rows: cheap enough to update with every streamed row
    t.plot = LinePlot(value=empty_plot_data(), x=PLOT_X, y=PLOT_Y, color=PLOT_COLOR, color_map=PLOT_SERIES,
                      x_axis_format=PLOT_X_FORMAT, y_axis_format=PLOT_Y_FORMAT, x_title="step", y_title="reward",
                      color_title="run", label="Reward per step (higher is better)", height=300,
                      elem_id=f"{task}-plot")
    with gr.Group(visible=False) as t.cmp_group:
        gr.Markdown("**Compare with unguided** — left: method `none`, right: the chosen method")
        with gr.Row():
            t.base_video = gr.Video(label="Unguided", interactive=False, height=256, loop=True, autoplay=True,
                                    elem_id=f"{task}-unguided-video", elem_classes=["gvs-pixels"])
            t.guided_video = gr.Video(label="Guided", interactive=False, height=256, loop=True, autoplay=True,
                                      elem_id=f"{task}-guided-video", elem_classes=["gvs-pixels"])
        t.cmp_table = gr.Markdown(elem_id=f"{task}-compare-table")
    t.report = gr.File(label="JSON report", interactive=False, elem_id=f"{task}-report")
    t.history = gr.State([])
    t.token = gr.State(None)  # the run this tab's last Generate / Compare click made: what Cancel stops
    t.gallery = gr.Gallery(label=f"History (this browser tab, last {HISTORY_SIZE}; click one to reload it)",
                           columns=4, height=200, allow_preview=False, object_fit="contain",
                           elem_id=f"{task}-history", elem_classes=["gvs-pixels"])


def _method_summary(name: str) -> str:
    try:
        from ..guidance import method_class

        return getattr(method_class(name), "summary", "") or ""
    except Exception:
        return ""
