"""Gradio components whose errors name their field, and the check an upload gets when it arrives."""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from .. import media
from ..request import style_image_notice
from .handlers import fail, log

UPLOADS = {"style_image": "image", "audio": "audio", "first_frame": "image", "last_frame": "image"}
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
            if getattr(self, "precision", None) == 0 and isinstance(payload, float) and not payload.is_integer():
                # a whole-number field: refuse 1.5 as the request layer refuses steps 2.5, instead of rounding it
                fail(self.field, f"must be a whole number, got {payload!r}")
            try:
                return super().preprocess(payload)
            except Exception as e:  # gr.Error, ValueError, PIL errors ...
                msg = user_message(getattr(e, "message", None) or str(e) or type(e).__name__)
                fail(self.field, msg)

    Named.__name__ = Named.__qualname__ = base.__name__
    # Gradio serialises a component's props by reading its __init__ signature: keep the base's
    Named.__init__.__signature__ = inspect.signature(base.__init__)
    return Named


Textbox, Slider, Number, Dropdown, Checkbox, Image, Audio = (
    _named(gr.Textbox), _named(gr.Slider), _named(gr.Number), _named(gr.Dropdown), _named(gr.Checkbox),
    _named(gr.Image), _named(gr.Audio),
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
