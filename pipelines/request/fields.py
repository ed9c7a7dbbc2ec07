"""Named fields: a request as one object of named fields (the app's API), checked and completed from one table.

    fields = check_fields("style", {"prompt": "a red circle ...", "steps": "4", "params": {"step_size": 2}}, preset)
    req = to_request("style", fields, {"style_image": "style.png"})     # a GenerationRequest, then `validate`

The one table of defaults is `field_defaults(task, preset)`: the app's widgets open on it, the API fills every field
a client leaves out from it, and the CLI's flags default to it (`CONSTANT_DEFAULTS`, plus the preset's numbers and
the task's method when a flag is left out). Its sources: `GenerationRequest`'s own defaults, `DEFAULT_ETA`, the
live preset's steps / CFG / frames / size, and the method each task opens on (`presets.TASK_DEFAULT_METHODS`).
Method parameters left out take `resolve_params`' defaults (METHODS.md, or the preset's tuned values).

Every field is checked here for its type, with the field named (`steps: expected a whole number, got 'abc'`);
ranges, choices of the preset and media are checked by `validate`.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, fields as dataclass_fields
from typing import Any, Optional

from .validation import (
    DEFAULT_ETA, INTERPOLATION_MODES, GenerationRequest, RequestError, _shown, parse_bool, parse_number,
)

#: The uploads each task takes: files, sent beside the named fields (the app's file inputs), never inside them.
TASK_UPLOADS = {"t2v": (), "style": ("style_image",), "audio": ("audio",), "interpolate": ("first_frame", "last_frame")}
UPLOADS = ("style_image", "audio", "first_frame", "last_frame")
#: The "Model" fields (`pipelines.model_options`: the CLI's --video-parts / --lora), checked where they are loaded.
MODEL_FIELDS = ("video_parts", "lora")
#: Fields only some tasks take.
TASK_ONLY = {"t2v_reward": ("t2v",), "reward_prompt": ("t2v",), "lvlm_policy": ("t2v",),
             "interpolation_mode": ("interpolate",)}
#: Each field's kind: text, int, float, bool, a choice (`CHOICES`), params (a dict of method parameters).
#: A `GenerationRequest` field not named here is taken with the kind of its default (a new switch needs no entry).
KINDS = {
    "prompt": "text", "negative_prompt": "text", "t2v_reward": "choice", "reward_prompt": "text",
    "lvlm_policy": "choice", "interpolation_mode": "choice", "method": "choice", "params": "params", "seed": "int",
    "steps": "int", "cfg": "float", "eta": "float", "mg_scale": "float", "mg_normalized": "bool",
    "cfg_schedule": "bool", "frames": "int", "size": "int", "video_parts": "text", "lora": "text",
}
#: Fields whose null means something (their default): the optional texts and the LVLM policy.
NULLABLE = ("negative_prompt", "reward_prompt", "lvlm_policy", "video_parts", "lora")
_NOT_FIELDS = ("task",) + UPLOADS


def choices(name: str) -> Optional[list]:
    if name == "method":
        from ..guidance import METHODS

        return list(METHODS)
    if name == "interpolation_mode":
        return list(INTERPOLATION_MODES)
    if name == "t2v_reward":
        from ..tasks import T2V_REWARDS

        return list(T2V_REWARDS)
    if name == "lvlm_policy":
        from rewards.lvlm import POLICIES

        return list(POLICIES)
    return None


def _kind(name: str) -> str:
    if name in KINDS:
        return KINDS[name]
    f = GenerationRequest.__dataclass_fields__[name]
    default = f.default if f.default is not MISSING else None
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(type(default), "any")


def tab_fields(task: str) -> list[str]:
    """The named fields a task's request takes, in the order the docs list them."""
    names = [n for n in KINDS if task in TASK_ONLY.get(n, (task,))]
    extra = [f.name for f in dataclass_fields(GenerationRequest) if f.name not in KINDS and f.name not in _NOT_FIELDS]
    return names + extra


def _constant_defaults() -> dict:
    req = GenerationRequest()
    out = {f.name: getattr(req, f.name) for f in dataclass_fields(GenerationRequest) if f.name not in _NOT_FIELDS}
    out.update({"eta": DEFAULT_ETA, "reward_prompt": "", "video_parts": "", "lora": ""})
    return out


#: The defaults that depend on neither the task nor the preset (`GenerationRequest`'s, η, the empty Model fields).
CONSTANT_DEFAULTS = _constant_defaults()


def field_defaults(task: str, preset=None) -> dict:
    """THE table: every named field of `task`'s request and its default on `preset` (steps, CFG, frames and size are
    None without a preset: the preset's own at validation). `params` {} = the method's defaults."""
    from ..presets import task_default_method

    out = {n: CONSTANT_DEFAULTS.get(n) for n in tab_fields(task)}
    out["method"] = task_default_method(task)[0]
    out["params"] = {}
    for name in ("steps", "cfg", "frames", "size"):
        value = getattr(preset, f"default_{name}", None)
        out[name] = None if value is None else (float(value) if name == "cfg" else int(value))
    return out


def method_defaults(method: str, task: str, preset=None) -> dict:
    """A method's parameters as a request that leaves them out gets them (`resolve_params`)."""
    from .validation import resolve_params

    return resolve_params(method, {}, preset, task)


def parse_fields_object(value, name: str = "request") -> dict:
    """The named-fields object as a client sends it: a dict, or its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise RequestError(name, "expected a JSON object of named fields, e.g. {\"prompt\": \"...\", "
                                     "\"steps\": 4}; got text that is not JSON") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(name, f"expected an object of named fields, e.g. {{\"prompt\": \"...\", \"steps\": 4}}, "
                                 f"got {_shown(value)}")
    return value


def check_fields(task: str, data, preset=None, name: str = "request") -> dict:
    """`data` (named fields; a dict or its JSON text) checked and completed: every field of the task, each of its
    kind, the ones left out from `field_defaults`. `RequestError` naming the field on an unknown field, an upload
    inside the object, a wrong type or a null where a value is needed."""
    data = parse_fields_object(data, name)
    defaults = field_defaults(task, preset)
    for key in data:
        if key in UPLOADS:
            where = (f"send it as the endpoint's `{key}` file input" if key in TASK_UPLOADS.get(task, ())
                     else f"the {task} task takes no {key}")
            raise RequestError(str(key), f"is an upload, not a named field: {where}")
        if key not in defaults:
            raise RequestError(str(key)[:60], f"unknown field for the {task} task; its fields: {', '.join(defaults)} "
                                              "(docs/api.md)")
    out = dict(defaults)
    for key, value in data.items():
        out[key] = _checked(key, value, defaults[key])
    return out


def _checked(name: str, value, default) -> Any:
    kind = _kind(name)
    if value is None:
        if name in NULLABLE or kind in ("text", "any") or default is None:
            return default
        raise RequestError(name, f"is null; give a value, or leave the field out for its default ({default!r})")
    if kind == "text":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise RequestError(name, f"expected text, got {_shown(value)}")
        return value
    if kind in ("int", "float"):
        return parse_number(value, name, int if kind == "int" else float)
    if kind == "bool":
        return parse_bool(value, name)
    if kind == "choice":
        options = choices(name) or []
        if isinstance(value, str) and value.strip() in options:
            return value.strip()
        raise RequestError(name, f"{_shown(value)} is not one of {options}")
    if kind == "params":
        if not isinstance(value, dict):
            raise RequestError(name, "expected an object of method parameters, e.g. {\"step_size\": 0.5}, got "
                                     f"{_shown(value)}")
        return dict(value)
    return value


def to_request(task: str, fields: dict, uploads: Optional[dict] = None) -> GenerationRequest:
    """The `GenerationRequest` of checked fields (`check_fields`) and the task's uploads (paths or media)."""
    known = GenerationRequest.__dataclass_fields__
    kw = {k: v for k, v in fields.items() if k in known}
    kw["reward_prompt"] = kw.get("reward_prompt") or None
    kw["negative_prompt"] = kw.get("negative_prompt") or ""
    kw.update({k: v for k, v in (uploads or {}).items() if k in UPLOADS})
    return GenerationRequest(task=task, **kw)
