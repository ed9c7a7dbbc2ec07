"""What a web client is told: every message goes through `scrub`, and every request through `guard`.

- An expected error (bad input) is a `gr.Error` naming its field (`handlers.fail`); `guard` passes it on scrubbed.
- Anything else (a bug, a library's exception, Gradio refusing a malformed value) becomes one short message with an
  id: `internal error (id 3f9c2a1b) ...`; the server log holds the traceback on a line with the same id. So no
  traceback, no exception text and no server path reaches a client, whatever `show_error` says.
- A file value naming a server path that no client uploaded (Gradio refuses it before any handler runs) is answered
  with the field named and nothing of the path.
"""
from __future__ import annotations

import re
import traceback
import uuid
from pathlib import Path

import gradio as gr

#: an absolute POSIX path of two parts or more (`/a/b`; not a URL's `//host/...`), or a Windows one (`C:\a\b`):
#: shown as its last part
_POSIX_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^/\s'\"]+/)+([^/\s'\"]*)")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\\\s'\"]+\\)+([^\\\s'\"]*)")
MAX_CHARS = 600  # a message longer than this is cut (a client's huge value echoed back, a runaway error text)
INTERNAL = ("internal error (id {id}): the server could not finish this request; the server's log holds the details "
            "under this id. Other requests are not affected: try again, or change the inputs")


def log(msg: str) -> None:
    print(f"[gvs] {msg}", flush=True)


def scrub(text) -> str:
    """A message safe to show a client: server paths reduced to their last part, a traceback cut off, the length
    bounded."""
    text = str(text)
    cut = text.find("Traceback (most recent call last)")
    if cut >= 0:
        text = text[:cut].rstrip() or "internal error"
    text = _WINDOWS_PATH.sub(r"\1", _POSIX_PATH.sub(r"\1", text))
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"


def internal_error(exc: BaseException, what: str = "request") -> gr.Error:
    """The client's answer to an unexpected exception; its traceback goes to the server log under the same id."""
    eid = uuid.uuid4().hex[:8]
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    log(f"internal error (id {eid}) in a {what}: {type(exc).__name__}\n{tb}")
    return gr.Error(INTERNAL.format(id=eid), print_exception=False)


def client_error(err: gr.Error) -> gr.Error:
    """`err` with its message scrubbed (an expected error: the field is named by whoever raised it)."""
    return gr.Error(scrub(getattr(err, "message", None) or str(err)), duration=getattr(err, "duration", None),
                    visible=getattr(err, "visible", True), title=getattr(err, "title", "Error"),
                    print_exception=False)


UPLOAD_FIELDS = ("style_image", "audio", "first_frame", "last_frame")


def _upload_field(block_fn) -> str:
    """The file fields of the event (their `field` names), for the message of a refused server path."""
    fields = [getattr(b, "field", None) for b in getattr(block_fn, "inputs", []) or []]
    return " / ".join(f for f in fields if f in UPLOAD_FIELDS) or "file"


def check_request(block_fn, inputs) -> None:
    """What the app's events take, checked before Gradio reads anything: as many values as inputs, and each file
    field an uploaded file (Gradio's FileData of a path in its upload folder), never a server path or a URL for the
    server to fetch. Gradio refuses a path no client uploaded too (`InvalidPathError`); this check does not rely on
    it. `gr.Error` naming the field otherwise."""
    from gradio.utils import get_upload_folder

    blocks = list(getattr(block_fn, "inputs", None) or [])
    fields = [getattr(b, "field", None) for b in blocks]
    if not any(fields) or inputs is None:
        return  # not one of the app's request events (the page's own small events)
    if not isinstance(inputs, (list, tuple)) or len(inputs) < len(blocks):
        got = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
        raise gr.Error(f"request: this endpoint takes {len(blocks)} values in `data` (in the order of "
                       f"/gradio_api/info), got {got}", print_exception=False)
    root = Path(get_upload_folder()).resolve()
    for field, value in zip(fields, inputs):
        if field == "request":  # the API's named fields: a file never travels inside them (Gradio reads those too)
            _check_named_fields(value)
        if field not in UPLOAD_FIELDS or value is None:
            continue
        if hasattr(value, "model_dump"):  # a FileData object (example caching passes Gradio's own models)
            value = value.model_dump()
        path = value.get("path") if isinstance(value, dict) else None
        meta = value.get("meta") if isinstance(value, dict) else None
        if not isinstance(path, str) or not isinstance(meta, dict) or meta.get("_type") != "gradio.FileData":
            raise gr.Error(f"{field}: expected an uploaded file ({{\"path\": ..., \"meta\": {{\"_type\": "
                           f"\"gradio.FileData\"}}}} with the path /gradio_api/upload returned), got "
                           f"{'a ' + type(value).__name__ if not isinstance(value, dict) else 'another object'}",
                           print_exception=False)
        try:
            inside = root in Path(path).resolve().parents
        except (OSError, ValueError, RuntimeError):
            inside = False
        if "://" in path or path.startswith("data:") or not inside:
            log(f"refused: {field}: a file value that is not an upload")
            raise gr.Error(REFUSED_FILE.format(field=field), print_exception=False)


def _check_named_fields(value) -> None:
    """The API's `request` object holds no upload field and no file value at any depth: a file goes in the
    endpoint's file inputs, where the checks above apply."""
    if not isinstance(value, dict):
        return  # the request layer names what is wrong with it
    for key in value:
        if key in UPLOAD_FIELDS:
            log(f"refused: {key}: inside the named fields")
            raise gr.Error(f"{key}: is an upload, not a named field: send it as the endpoint's `{key}` file input",
                           print_exception=False)
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            meta = item.get("meta")
            if isinstance(meta, dict) and meta.get("_type") == "gradio.FileData" or depth > 32:
                log("refused: request: a file value inside the named fields")
                raise gr.Error("request: holds a file value; files go in the endpoint's file inputs (docs/api.md)",
                               print_exception=False)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


REFUSED_FILE = "{field}: takes an uploaded file only; a path on the server or a URL is refused (upload the file)"


def guard(demo) -> None:
    """Route every request of `demo` (API calls, the page's events, example caching) through the rules above, by
    wrapping `demo.process_api` (what Gradio's queue and routes call for each event and each streamed row)."""
    from gradio.exceptions import InvalidPathError

    try:
        from gradio.caching import CacheMissError
    except ImportError:  # an older Gradio without its probe cache
        class CacheMissError(Exception):
            pass

    original = demo.process_api
    if getattr(original, "_gvs_guarded", False):
        return

    def _fn(block_fn):
        if isinstance(block_fn, int):
            fns = getattr(demo, "fns", {})
            return fns.get(block_fn) if hasattr(fns, "get") else fns[block_fn]
        return block_fn

    async def process_api(*args, **kwargs):
        block_fn = kwargs.get("block_fn", args[0] if args else None)
        try:
            first = kwargs.get("iterator", args[4] if len(args) > 4 else None) is None  # not a streamed next row
            if first and not kwargs.get("explicit_call", False):  # explicit: the server's own call (Python API)
                check_request(_fn(block_fn), kwargs.get("inputs", args[1] if len(args) > 1 else None))
            return await original(*args, **kwargs)
        except CacheMissError:  # Gradio's own control flow (its probe cache), not an error
            raise
        except gr.Error as e:
            raise client_error(e) from None
        except InvalidPathError as e:
            field = _upload_field(_fn(block_fn))
            log(f"refused: {field}: a file value naming a path that was not uploaded ({scrub(e)})")
            raise gr.Error(REFUSED_FILE.format(field=field), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - whatever it is, the client gets the short message and the id
            raise internal_error(e) from None

    process_api._gvs_guarded = True
    demo.process_api = process_api
