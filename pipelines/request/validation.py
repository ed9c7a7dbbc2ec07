"""Validation: the request's fields and limits, checked once against the live preset with the field named."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import media
from ..keyvalue import parse_method_pairs, parse_pairs
from ..media import Audio, MediaError
from ..task_options import DEFAULT_INTERPOLATION_MODE, INTERPOLATION_MODES, T2V_REWARDS, TASKS

TASK_NAMES = {
    "t2v": "Text to video",
    "style": "Style reference",
    "audio": "Audio alignment",
    "interpolate": "Frame interpolation",
}
#: Longest prompt accepted, in characters. The text encoder further truncates to its tokenizer length
#: (77 tokens for CLIP in the animatediff preset; the micro tokenizer's own length in the micro preset).
MAX_PROMPT_CHARS = 500
MAX_SEED = 2**32 - 1
STEPS_RANGE = (1, 200)
CFG_RANGE = (0.0, 30.0)
MG_RANGE = (0.0, 200.0)
ETA_RANGE = (0.0, 1.0)
#: One η for every method, the unguided `none` included: comparing a guided run with an unguided one at another η
#: changes two things at once. Free²Guide draws its candidates from the DDIM noise σ_t, which needs η > 0.
DEFAULT_ETA = 1.0
#: A style image with a side below this many pixels carries a colour but hardly a texture: it gets a notice.
MIN_STYLE_SIDE = 16


class RequestError(ValueError):
    """Bad user input; `field` names the input (CLI flag / app widget), `message` says what to do."""

    def __init__(self, field: str, message: str):
        message = str(message)
        if message.startswith(f"{field}:"):  # a message that already names its field names it once
            message = message[len(field) + 1:].lstrip()
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class GenerationRequest:
    task: str = "t2v"
    prompt: str = ""
    negative_prompt: str = ""
    method: str = "none"
    params: dict = field(default_factory=dict)  # method parameters (METHODS.md names); missing -> defaults
    mg_scale: float = 0.0  # HARIVO mitigating gradient α (0 = off, 40 = HARIVO default)
    mg_normalized: bool = False  # read mg_scale as HARIVO's α at 24 × 32² latents, converted to this size
    cfg_schedule: bool = False  # HARIVO CFG schedule (high CFG early, 7.5 after)
    eta: Optional[float] = None  # DDIM η, the same for every method; None -> DEFAULT_ETA
    seed: Optional[int] = 0  # None -> random
    steps: Optional[int] = None  # None -> preset default
    cfg: Optional[float] = None
    frames: Optional[int] = None
    size: Optional[int] = None
    style_image: Any = None  # path, PIL image or array
    audio: Any = None  # path, (sample_rate, array), (array, sample_rate) or media.Audio
    first_frame: Any = None
    last_frame: Any = None
    interpolation_mode: str = DEFAULT_INTERPOLATION_MODE
    t2v_reward: str = "clip"  # text-to-video reward: clip, lvlm, or a clip+lvlm ensemble (pipelines.tasks)
    # What the text-to-video reward scores, when it should differ from what the video model is conditioned on
    # (None -> the prompt). With an empty prompt the model samples unconditioned and only guidance draws this text.
    reward_prompt: Optional[str] = None
    lvlm_policy: Optional[str] = None  # the LVLM judge's policy, score or binary (None: GVS_LVLM_POLICY, else score)
    # Run the method as its paper states it (`guidance.paper.PAPER_SETTINGS`: unbounded step, the paper's λ/ρ/update
    # form/schedule) instead of the preset's defaults; parameters given in `params` still win.
    paper: bool = False


@dataclass
class Prepared:
    """A validated request: resolved numbers, decoded media, the task setup and guidance object."""

    request: GenerationRequest
    preset_name: str
    device: str
    fps: int
    frames: int
    size: int
    steps: int
    cfg: float
    seed: int
    eta: float
    params: dict  # resolved method parameters (defaults filled in)
    guidance: Any
    setup: Any  # pipelines.tasks.TaskSetup
    audio: Optional[Audio]  # fitted to the video length (audio task)
    notices: list = field(default_factory=list)
    height: int = 0  # frame height and width of `size` (the preset's `dims`: square but for Wan's 480x832)
    width: int = 0
    world: Optional[int] = None  # the micro world (1 or 2) of the preset's videos; None for a real preset

    @property
    def seconds_of_video(self) -> float:
        return self.frames / float(self.fps)


def parse_number(value, field_name: str, kind=float):
    """A number as any client sends it (a number, or text such as "16" or " 2.5 " from an API call) -> int or
    float; `RequestError` naming the field otherwise: `steps: expected a whole number, got 'abc'`."""
    what = "a whole number" if kind is int else "a number"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RequestError(field_name, "is required")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) and not _is_numeric_scalar(value):
        raise RequestError(field_name, f"expected {what}, got {_shown(value)}")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise RequestError(field_name, f"expected {what}, got {_shown(value)}") from None
    if not math.isfinite(x):
        raise RequestError(field_name, f"must be finite, got {_shown(value)}")
    if kind is int:
        if abs(x - round(x)) > 1e-9:
            raise RequestError(field_name, f"must be a whole number, got {_shown(value)}")
        return int(round(x))
    return x


def parse_bool(value, field_name: str) -> bool:
    """A checkbox as any client sends it: a bool, or text / 0 / 1 (`true`, `false`, `yes`, `no`, `on`, `off`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    s = str(value).strip().lower() if isinstance(value, str) else None
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise RequestError(field_name, f"expected true or false, got {_shown(value)}")


def _is_numeric_scalar(value) -> bool:
    """numpy / torch scalars (what Python callers may pass)."""
    return hasattr(value, "item") and getattr(value, "ndim", 1) == 0


def _shown(value, limit: int = 40) -> str:
    """A client's value as a message quotes it: its repr cut to `limit` characters (a type name for containers)."""
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "…" + text[-3:]


def _number(value, field_name: str, kind=float, lo=None, hi=None, choices=None):
    x = parse_number(value, field_name, kind)
    if choices is not None and x not in choices:
        raise RequestError(field_name, f"{x} is not available in this preset; choose one of {list(choices)}")
    if lo is not None and x < lo or hi is not None and x > hi:
        raise RequestError(field_name, f"{x} is out of range [{lo}, {hi}]")
    return x


def check_prompt(prompt, field_name: str = "prompt", required: bool = True) -> str:
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise RequestError(field_name, f"must be text, got {type(prompt).__name__}")
    prompt = " ".join(prompt.split())
    if required and not prompt:
        raise RequestError(field_name, "is empty; describe the video, e.g. "
                                       "'a red circle moving left to right on a black background'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(field_name, f"is {len(prompt)} characters, above the limit of {MAX_PROMPT_CHARS} "
                                       "(the text encoder reads only its first tokens anyway); shorten it")
    return prompt


def _tokenizer_notice(preset, prompt: str, field_name: str) -> Optional[str]:
    tok = getattr(getattr(preset, "pipe", None), "tokenizer", None)
    if tok is None or not prompt:
        return None
    try:
        n = len(tok.tokenize(prompt)) + 2  # + start and end tokens
        limit = int(tok.model_max_length)
    except Exception:  # tokenizer quirks must never block a generation
        return None
    if n > limit:
        return (f"{field_name}: {n} tokens; the model's tokenizer keeps only the first {limit} "
                "(the rest is ignored)")
    return None


def coerce_param(spec, value):
    """Convert a user value (string from the CLI, number/bool from the app) to the spec's kind and check it."""
    name = f"param {spec.name}"
    kind = getattr(spec, "kind", "float")
    if value is None:
        raise RequestError(name, "is required")
    if kind == "bool":
        return parse_bool(value, name)
    if kind == "choice":
        choices = list(spec.choices or [])
        if value in choices:
            return value
        for c in choices:
            if str(c) == str(value).strip():
                return c
        raise RequestError(name, f"{value!r} is not one of {choices}")
    lo = getattr(spec, "min", None)
    hi = getattr(spec, "max", None)
    return _number(value, name, int if kind == "int" else float, lo, hi)


def resolve_params(method: str, params: Optional[dict], preset=None, task: Optional[str] = None,
                   paper: bool = False) -> dict:
    """Fill in defaults (METHODS.md, or the preset's own where it has one; with `paper`, the paper's settings,
    `guidance.paper.PAPER_SETTINGS`) and check every given parameter."""
    from ..guidance import method_params
    from ..guidance.paper import paper_settings

    specs = {s.name: s for s in method_params(method)}
    overrides = {}
    if paper:
        overrides = paper_settings(method)
    elif preset is not None and hasattr(preset, "guidance_defaults"):
        try:
            overrides = preset.guidance_defaults(method, task)
        except TypeError:  # a preset-like object without per-task defaults
            overrides = preset.guidance_defaults(method)
    params = dict(params or {})
    unknown = sorted(set(params) - set(specs))
    if unknown:
        known = ", ".join(sorted(specs)) or "none"
        raise RequestError(f"param {unknown[0]}", f"unknown parameter for method {method!r} (known: {known})")
    out = {}
    for name, spec in specs.items():
        if name in params and params[name] is not None:
            out[name] = coerce_param(spec, params[name])
        else:
            out[name] = overrides.get(name, spec.default)
    return out


def check_step_range(params: dict, steps: int) -> None:
    """A guided step range (`start_step`, `end_step`) must lie inside the chosen number of steps.

    The parameter specs allow up to ±1000 whatever the steps; the app's sliders are bounded by the steps, and so is
    this check, so the API and the sliders agree.
    """
    if "start_step" in params and not 0 <= int(params["start_step"]) < steps:
        raise RequestError("param start_step", f"{params['start_step']} is out of range [0, {steps - 1}] for "
                                               f"{steps} steps (step indices start at 0)")
    if "end_step" in params and not -steps <= int(params["end_step"]) <= steps:
        raise RequestError("param end_step", f"{params['end_step']} is out of range [{-steps}, {steps}] for "
                                             f"{steps} steps (negative values count from the end; -1 = all but the "
                                             "last)")


def parse_param_strings(items) -> dict:
    """CLI `--param name=value` (repeated) -> dict of strings (converted by `resolve_params`)."""
    try:
        return {k.replace("-", "_"): v for k, v in parse_pairs(items, "name=value").items()}
    except ValueError as e:
        raise RequestError("--param", str(e)) from None


def parse_method_param_strings(items) -> dict:
    """CLI `--param METHOD.NAME=VALUE` (repeated; bench and evaluate) -> {method: {name: value string}}."""
    try:
        return parse_method_pairs(items)
    except ValueError as e:
        raise RequestError("--param", str(e)) from None


def style_image_notice(img, field_name: str = "style_image") -> Optional[str]:
    """A notice for a style image too small to carry a texture (e.g. 1x1): it is used, but says little."""
    w, h = img.size
    if min(w, h) < MIN_STYLE_SIDE:
        return (f"{field_name} is only {w}x{h} px: it carries its colours but hardly any texture, so the style "
                f"guidance has little to match; an image of at least {MIN_STYLE_SIDE}x{MIN_STYLE_SIDE} works better")
    return None


def _media(fn, *args):
    try:
        return fn(*args)
    except MediaError as e:
        raise RequestError(e.field, e.message) from None


def validate(req: GenerationRequest, preset) -> Prepared:
    """Check every field of `req` against the live preset, decode media, build the task and guidance.

    Raises `RequestError(field, message)`; never touches the output paths.
    """
    from ..guidance import METHODS, make_guidance
    from ..tasks import TaskInputs, build_task  # torch: imported when a request is validated, not with the app

    notices: list[str] = []
    if req.task not in TASKS:
        raise RequestError("task", f"{req.task!r} is not one of {list(TASKS)}")
    if req.method not in METHODS:
        raise RequestError("method", f"{req.method!r} is not one of {list(METHODS)}")
    reward_prompt = None
    if req.reward_prompt is not None and str(req.reward_prompt).strip():
        if req.task != "t2v":
            raise RequestError("reward_prompt", f"only the t2v task scores text; the {req.task} task's reward is "
                                                "set by its upload, so leave the reward prompt empty")
        reward_prompt = check_prompt(req.reward_prompt, "reward_prompt")
    # An empty prompt is allowed only when a reward prompt says what guidance should draw.
    prompt = check_prompt(req.prompt, "prompt", required=reward_prompt is None)
    if not prompt and req.method == "none":
        notices.append("prompt: empty and the method is none, so the video is sampled unconditioned; the reward "
                       "prompt is only scored (the unguided baseline of reward-only guidance)")
    negative = check_prompt(req.negative_prompt, "negative_prompt", required=False)
    for text, name in ((prompt, "prompt"), (negative, "negative_prompt"), (reward_prompt or "", "reward_prompt")):
        note = _tokenizer_notice(preset, text, name)
        if note:
            notices.append(note)
    from ..presets import micro_world

    world = micro_world(preset)
    if world is not None:  # the caption notice of the world the preset's weights were trained on
        from ..micro.world import caption_notice

        for text, name in ((prompt, "prompt"), (reward_prompt, "reward_prompt")):
            note = caption_notice(text, world=world) if text else None
            if note:
                notices.append(f"{name}: {note}")

    frames = _number(preset.default_frames if req.frames is None else req.frames, "frames", int,
                     choices=list(preset.frame_choices))
    size = _number(preset.default_size if req.size is None else req.size, "size", int,
                   choices=list(preset.size_choices))
    steps = _number(preset.default_steps if req.steps is None else req.steps, "steps", int, *STEPS_RANGE)
    cfg = _number(preset.default_cfg if req.cfg is None else req.cfg, "cfg", float, *CFG_RANGE)
    mg = _number(0.0 if req.mg_scale is None else req.mg_scale, "mg_scale", float, *MG_RANGE)
    eta = _number(DEFAULT_ETA if req.eta is None else req.eta, "eta", float, *ETA_RANGE)
    seed = random.randint(0, MAX_SEED) if req.seed is None or req.seed == -1 else _number(
        req.seed, "seed", int, 0, MAX_SEED)
    if req.interpolation_mode not in INTERPOLATION_MODES:
        raise RequestError("interpolation_mode", f"{req.interpolation_mode!r} is not one of {list(INTERPOLATION_MODES)}")
    if req.t2v_reward not in T2V_REWARDS:
        raise RequestError("t2v_reward", f"{req.t2v_reward!r} is not one of {list(T2V_REWARDS)}")
    from rewards.lvlm import POLICIES

    if req.lvlm_policy is not None and req.lvlm_policy not in POLICIES:
        raise RequestError("lvlm_policy", f"{req.lvlm_policy!r} is not one of {list(POLICIES)}")
    paper = parse_bool(req.paper, "paper")
    params = resolve_params(req.method, req.params, preset, req.task, paper=paper)
    check_step_range(params, steps)
    req = GenerationRequest(**{**asdict_shallow(req), "prompt": prompt, "negative_prompt": negative,
                               "reward_prompt": reward_prompt,
                               "frames": frames, "size": size, "steps": steps, "cfg": cfg, "mg_scale": mg,
                               "seed": seed, "eta": eta, "params": params, "paper": paper})

    fps = int(preset.fps)
    from ..presets import preset_dims

    height, width = preset_dims(preset, size)
    style = first = last = None
    audio: Optional[Audio] = None
    ignored = []
    if req.task == "style":
        if req.style_image is None:
            raise RequestError("style_image", "the style task needs a style reference image; upload one")
        style = _media(media.load_image, req.style_image, "style_image")
        note = style_image_notice(style)
        if note:
            notices.append(note)
    elif req.style_image is not None:
        ignored.append("style_image")
    if req.task == "audio":
        if req.audio is None:
            raise RequestError("audio", "the audio task needs an audio clip; upload a file or record one")
        audio = _media(media.load_audio, req.audio, "audio")
        _media(media.check_not_silent, audio, "audio")
        audio, fit_notes = media.fit_audio(audio, frames / float(fps), "audio")
        notices += fit_notes
    elif req.audio is not None:
        ignored.append("audio")
    if req.task == "interpolate":
        missing = [n for n in ("first_frame", "last_frame") if getattr(req, n) is None]
        if missing:
            raise RequestError(missing[0], "frame interpolation needs both a first and a last frame; "
                                           f"the {missing[0].replace('_', ' ')} is missing")
        first = _media(media.load_image, req.first_frame, "first_frame")
        last = _media(media.load_image, req.last_frame, "last_frame")
        if first.size != last.size:
            notices.append(f"first_frame is {first.size[0]}x{first.size[1]} and last_frame is "
                           f"{last.size[0]}x{last.size[1]}: both were centre-cropped and resized to the output "
                           f"size {width}x{height}")
        elif first.size != (width, height):
            notices.append(f"key frames ({first.size[0]}x{first.size[1]}) were centre-cropped and resized to the "
                           f"output size {width}x{height}")
        first, last = media.fit_size(first, width, height), media.fit_size(last, width, height)
    else:
        ignored += [n for n in ("first_frame", "last_frame") if getattr(req, n) is not None]
    if ignored:
        notices.append(f"ignored for the {req.task} task: {', '.join(ignored)}")

    inputs = TaskInputs(
        prompt=reward_prompt or prompt, style_image=style,
        audio=(audio.wave, audio.sample_rate) if audio is not None else None,
        first_frame=first, last_frame=last, interpolation_mode=req.interpolation_mode, t2v_reward=req.t2v_reward,
        lvlm_policy=req.lvlm_policy,
    )
    try:
        setup = build_task(preset, req.task, inputs, num_frames=frames, height=height, width=width)
    except RequestError:
        raise
    except ValueError as e:
        raise RequestError(_guess_field(str(e), req.task), str(e)) from None
    notices += list(getattr(setup, "notices", []) or [])
    try:
        guidance = make_guidance(req.method, **params)
    except ValueError as e:
        raise RequestError("params", str(e)) from None
    return Prepared(request=req, preset_name=preset.name, device=str(preset.device), fps=fps, frames=frames,
                    size=size, steps=steps, cfg=cfg, seed=seed, eta=eta, params=params, guidance=guidance, setup=setup,
                    audio=audio, notices=notices, height=height, width=width, world=world)


def asdict_shallow(req: GenerationRequest) -> dict:
    return {f: getattr(req, f) for f in req.__dataclass_fields__}


def _guess_field(msg: str, task: str) -> str:
    head = msg.split(":", 1)[0].strip()
    if ":" in msg and head in GenerationRequest.__dataclass_fields__:  # "<field>: message" names its field
        return head
    low = msg.lower()
    if low.startswith(("t2v_reward", "lvlm")):  # the text reward's judge is missing or misconfigured
        return "t2v_reward"
    for name in ("style_image", "first_frame", "last_frame", "audio", "prompt", "frames", "size"):
        if name in low or name.replace("_", " ") in low:
            return name
    return {"style": "style_image", "audio": "audio", "interpolate": "first_frame"}.get(task, "prompt")
