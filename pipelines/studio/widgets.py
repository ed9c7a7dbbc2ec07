"""Gradio components whose errors name their field, and the check an upload gets when it arrives."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from .. import media
from ..request import RequestError, parse_bool, parse_number, style_image_notice
from .handlers import fail, log
from .messages import scrub

UPLOADS = {"style_image": "image", "audio": "audio", "first_frame": "image", "last_frame": "image"}
#: number fields whose request value is a whole number (their widgets may be sliders)
WHOLE_NUMBERS = ("steps", "seed", "frames", "size")
user_message = scrub  # a message safe to show a user (pipelines.studio.messages)
#: method parameters bounded by the chosen steps (in "Advanced"; their sliders follow the Steps slider)
RANGE_PARAMS = ("start_step", "end_step")


def range_bounds(name: str, steps: int) -> tuple[int, int]:
    """The slider bounds of a guided-step-range parameter for `steps` sampling steps."""
    steps = max(1, int(steps or 1))
    return (0, steps - 1) if name == "start_step" else (-steps, steps)


def parse_payload(component, payload):
    """A value as an API client may send it, in the component's own type: numbers and choices arriving as text are
    parsed ("16" for frames, "3" for steps), a wrong type is refused naming the field (`fail`)."""
    field = component.field
    try:
        if isinstance(component, (gr.Number, gr.Slider)):
            whole = getattr(component, "precision", None) == 0 or field in WHOLE_NUMBERS
            if isinstance(payload, str) or isinstance(payload, bool) or not isinstance(payload, (int, float)):
                return parse_number(payload, field, int if whole else float)
            return payload
        if isinstance(component, gr.Checkbox):
            return parse_bool(payload, field)
        if isinstance(component, gr.Dropdown) and not getattr(component, "multiselect", False):
            values = [c[1] if isinstance(c, (tuple, list)) else c for c in (component.choices or [])]
            if payload in values or getattr(component, "allow_custom_value", False):
                return payload
            if isinstance(payload, (str, int, float)) and not isinstance(payload, bool):
                for v in values:  # "16" for the choice 16, 16 for the choice "16"
                    if str(v) == str(payload).strip():
                        return v
            shown = repr(payload)[:40] if isinstance(payload, (str, int, float)) else f"a {type(payload).__name__}"
            fail(field, f"{shown} is not one of {values}")
        if isinstance(component, gr.Textbox):
            if isinstance(payload, (int, float)) and not isinstance(payload, bool):
                return str(payload)
            if not isinstance(payload, str):
                fail(field, f"expected text, got a {type(payload).__name__}")
    except RequestError as e:
        fail(e.field, e.message)
    return payload


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
            if getattr(self, "precision", None) == 0 and isinstance(payload, float) and not payload.is_integer():
                # a whole-number field: refuse 1.5 as the request layer refuses steps 2.5, instead of rounding it
                fail(self.field, f"must be a whole number, got {payload!r}")
            payload = parse_payload(self, payload)
            try:
                return super().preprocess(payload)
            except Exception as e:  # gr.Error, ValueError, PIL errors ...
                msg = scrub(getattr(e, "message", None) or str(e) or type(e).__name__)
                fail(self.field, msg)

    Named.__name__ = Named.__qualname__ = base.__name__
    # Gradio serialises a component's props by reading its __init__ signature: keep the base's
    Named.__init__.__signature__ = inspect.signature(base.__init__)
    return Named


Textbox, Slider, Number, Dropdown, Checkbox, Image, Audio, Json = (
    _named(gr.Textbox), _named(gr.Slider), _named(gr.Number), _named(gr.Dropdown), _named(gr.Checkbox),
    _named(gr.Image), _named(gr.Audio), _named(gr.JSON),
)


class LinePlot(gr.LinePlot):
    """Gradio's LinePlot whose cached example outputs load back: Gradio reads a cached plot as its JSON text, which
    the page cannot draw (`Cannot read properties of undefined (reading 'indexOf')` after an example click)."""

    is_template = True  # keeps LinePlot's frontend

    def read_from_flag(self, payload):
        from gradio.components.native_plot import PlotData

        if isinstance(payload, str) and payload.strip().startswith("{"):
            return PlotData(**json.loads(payload))
        return super().read_from_flag(payload)


LinePlot.__init__.__signature__ = inspect.signature(gr.LinePlot.__init__)


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
            note = style_image_notice(img, field) if field == "style_image" else None
            if note:
                gr.Warning(note)
                msg += f"\nnote: {note}"
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
