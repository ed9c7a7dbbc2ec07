"""A hostile client against a real app server on 127.0.0.1 (raw HTTP and gradio_client; one server for the module).

Each case sends what a careless or hostile client might (server paths and traversal in every text field, server
paths and URLs as file values, oversized and malformed uploads, wrong types and missing values on every endpoint,
concurrent cancels, a burst beyond the queue) and checks: what the client sees (a refusal naming the field, or an
HTTP status for what never reaches a handler), that no server file outside the app's own folders is opened (Linux
inotify on a canary folder the values point at), that no path, traceback or exception text of the server leaks
into a message, that no run is lost (every accepted request gets its answer) and that the next normal request
works. The last test prints the table recorded in docs/reliability.md:

    python -m pytest tests/test_hostile_clients.py -q -s
"""
from __future__ import annotations

import ctypes
import json
import os
import struct
import sys
import threading
from pathlib import Path

import pytest

from .conftest import ROOT, free_port, start_app
from .waiting import call_result, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                   reason="counts file opens with Linux inotify")]
PROMPT = "a red circle moving left to right on a black background"
SECRET = "gvs-canary-7c1e9b"  # the canary files' content: it must never reach a client
ENDPOINTS = ("/text_to_video", "/style_transfer", "/audio_alignment", "/frame_interpolation")
ALL_ENDPOINTS = ENDPOINTS + tuple(f"{e}_compare" for e in ENDPOINTS)
QUEUE_MAX_SIZE = 16  # app.QUEUE_MAX_SIZE (app.py is not imported here: it builds Gradio at import)
TABLE: dict[str, dict] = {}  # case -> {"tried", "clean", "runs", "opened", "leaks", "alive"}


# ------------------------------------------------------------------------------------------------ file-open probe
class OpenCounter:
    """Counts every open of a file or folder under `root` by any process (inotify IN_OPEN on each folder)."""

    IN_OPEN, IN_ACCESS = 0x20, 0x01

    def __init__(self, root: Path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, "inotify_init1 failed"
        folders = [root] + [Path(d) / n for d, dirs, _ in os.walk(root) for n in dirs]
        for folder in folders:
            wd = self.libc.inotify_add_watch(self.fd, str(folder).encode(), self.IN_OPEN | self.IN_ACCESS)
            assert wd >= 0, f"inotify_add_watch {folder}"
        self.events: list[str] = []

    def count(self) -> int:
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return len(self.events)
            i = 0
            while i < len(buf):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + length].rstrip(b"\0").decode(errors="replace")
                self.events.append(f"{name or '.'} mask={mask:#x}")
                i += 16 + length

    def close(self):
        os.close(self.fd)


# ------------------------------------------------------------------------------------------------ the server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with a model folder holding a symlink that leads out to the canary folder, and the canary folder
    (a secret text, a lure of trained parts, a LoRA name, an image, an audio clip) that every hostile value names."""
    d = tmp_path_factory.mktemp("hostile")
    canary = d / "canary"
    (canary / "parts" / "motion_adapter").mkdir(parents=True)
    (canary / "secret.txt").write_text(SECRET)
    (canary / "parts" / "motion_adapter" / "config.json").write_text(json.dumps({"secret": SECRET}))
    (canary / "parts" / "motion_adapter" / "diffusion_pytorch_model.safetensors").write_text(SECRET)
    (canary / "lora.safetensors").write_text(SECRET)
    (canary / "img.png").write_bytes((ROOT / "assets" / "examples" / "first_frame.png").read_bytes())
    (canary / "a.wav").write_bytes((ROOT / "assets" / "examples" / "impacts.wav").read_bytes())
    models = d / "models"
    models.mkdir()
    (models / "out").symlink_to(canary, target_is_directory=True)
    (models / "secret.safetensors").symlink_to(canary / "lora.safetensors")
    log = d / "app.log"
    proc, url = start_app(free_port(), log, extra=("--cache-examples", "off", "--model-dir", str(models)))
    from gradio_client import Client

    client = Client(url, verbose=False)
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    probe = OpenCounter(canary)
    yield {"url": url, "client": client, "info": info, "canary": canary, "models": models, "log": log,
           "probe": probe, "dir": d}
    probe.close()
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except Exception:  # noqa: BLE001
        proc.kill()


def _data(server, api, **values):
    """The `data` of a raw call: one object of named fields (the values that are not file inputs; the server fills
    the rest from the tab's defaults), then the endpoint's file inputs in the order /gradio_api/info lists them."""
    files = [p["parameter_name"] for p in server["info"][api]["parameters"]][1:]
    return [{k: v for k, v in values.items() if k not in files}] + [values.get(f) for f in files]


def _fields(**values) -> dict:
    return {"request": values}


def call(server, api, data, timeout=240.0):
    """A raw HTTP call (`POST /gradio_api/call/<api>`, then its event stream): ("complete", outputs),
    ("error", message) or ("http <status>", body)."""
    import httpx

    r = httpx.post(f"{server['url']}/gradio_api/call{api}", json={"data": data}, timeout=60)
    if r.status_code != 200:
        return f"http {r.status_code}", r.text
    event_id = r.json()["event_id"]
    event = None
    with httpx.stream("GET", f"{server['url']}/gradio_api/call{api}/{event_id}", timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event in ("complete", "error"):
                data = json.loads(line[len("data: "):])
                if event == "error":
                    return "error", (data or {}).get("error") if isinstance(data, dict) else data
                return "complete", data
    return "closed", None


def upload(server, name: str, content: bytes):
    """A file uploaded as the page does (`POST /gradio_api/upload`): its FileData, or the HTTP status on refusal."""
    import httpx

    r = httpx.post(f"{server['url']}/gradio_api/upload", files={"files": (name, content)}, timeout=120)
    if r.status_code != 200:
        return r.status_code
    return {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


LEAK_MARKERS = ("Traceback", 'File "', "TypeError", "ValueError", "KeyError", "AttributeError", "RuntimeError",
                "ValidationError", "InvalidPathError", "not supported between", "object has no attribute")


def leaks(server, text, echo_ok: bool = False) -> list[str]:
    """What a message must never hold: the canary's content, a traceback or exception text, a server folder (the
    test's own folder too, unless the client sent it and `echo_ok`: a report repeats the prompt it was given)."""
    text = json.dumps(text) if not isinstance(text, str) else text
    markers = LEAK_MARKERS + (SECRET, str(ROOT), str(server["models"])) + (() if echo_ok else (str(server["dir"]),))
    return [m for m in markers if m in text]


class Case:
    """One row of the table: every value tried, how many were refused cleanly, leaks, files opened."""

    def __init__(self, server, name: str):
        self.server, self.name = server, name
        self.tried = self.clean = self.runs = 0
        self.leaked: list = []
        self.opened0 = server["probe"].count()

    def refused(self, outcome, prefix: str, value=None) -> None:
        """`outcome` must be a refusal: an error message starting with `prefix` (the field), or an HTTP status
        (`prefix` = "http 413" ...)."""
        self.tried += 1
        kind, message = outcome
        self.leaked += leaks(self.server, message)
        ok = (kind == "error" and isinstance(message, str) and message.startswith(prefix)) or kind == prefix
        assert ok, (self.name, value, outcome)
        self.clean += 1

    def answered(self, outcome, value=None) -> None:
        """`outcome` must be a finished run whose texts (status, summary) and JSON report leak nothing."""
        self.tried += 1
        kind, data = outcome
        assert kind == "complete", (self.name, value, outcome)
        self.leaked += leaks(self.server, [x for x in data if isinstance(x, str)])
        reports = [x["path"] for x in data if isinstance(x, dict) and str(x.get("path", "")).endswith(".json")]
        assert reports, data
        self.leaked += leaks(self.server, Path(reports[0]).read_text(), echo_ok=True)
        self.runs += 1

    def finish(self) -> None:
        opened = self.server["probe"].count() - self.opened0
        alive = normal_run(self.server)
        TABLE[self.name] = {"tried": self.tried, "clean": self.clean, "runs": self.runs, "opened": opened,
                            "leaks": len(self.leaked), "alive": alive}
        assert self.clean + self.runs == self.tried
        assert opened == 0, self.server["probe"].events[-10:]
        assert not self.leaked, self.leaked
        assert alive


def normal_run(server) -> bool:
    """The next normal request: a cheap text-to-video run through gradio_client, its video written."""
    result = server["client"].predict(request={"prompt": PROMPT, "method": "none", "steps": 1},
                                      api_name="/text_to_video")
    video = result[2]["video"] if isinstance(result[2], dict) else result[2]
    return Path(video).is_file() and Path(video).stat().st_size > 0


# ------------------------------------------------------------------------------------------------ the cases
def _path_values(server) -> list:
    """Server paths, traversal and tricks for a text field that names a model."""
    canary, models = server["canary"], server["models"]
    rel = os.path.relpath(canary, models)  # ../canary
    return [str(canary / "parts"), str(canary / "lora.safetensors"), str(canary / "missing"), "/etc/passwd",
            "/etc", f"{rel}/parts", f"{rel}/lora.safetensors", "../../../../../../etc/passwd", "out/parts",
            "out/lora.safetensors", "secret.safetensors", "out/../out/parts", "./../canary", "~/.ssh/id_rsa",
            "~root", "C:\\Windows\\win.ini", "..\\..\\etc\\passwd", "file:///etc/passwd", "http://127.0.0.1:1/x",
            "missing/final", "a\x00b", "x" * 5000]


def test_model_fields_refuse_server_paths_with_one_message(server):
    """video_parts and lora, on every endpoint: each path outside the model folder (existing or not, through a
    symlink or `..`) gets the same message naming the field, and nothing under the canary folder is opened."""
    from pipelines.model_options import REFUSED

    case = Case(server, "model fields: server paths, traversal, symlinks out")
    values = _path_values(server)
    for field in ("video_parts", "lora"):
        for value in values:
            outcome = call(server, "/text_to_video", _data(server, "/text_to_video", **{
                "prompt": PROMPT, "method": "none", "steps": 1, field: value}))
            case.refused(outcome, f"{field}: {REFUSED}", value)
            assert outcome[1] == f"{field}: {REFUSED}", (value, outcome)  # the same words, whether it exists
    for api in ALL_ENDPOINTS[1:]:  # the same rule on every other endpoint
        for field, value in (("video_parts", str(server["canary"] / "parts")), ("lora", "out/lora.safetensors")):
            case.refused(call(server, api, _data(server, api, **{"prompt": PROMPT, "method": "titan", "steps": 1,
                                                                 field: value})), f"{field}: {REFUSED}", (api, value))
    case.finish()


def test_prompts_carrying_paths_are_only_text(server):
    """A path in the prompt, negative prompt or reward prompt is text: the run finishes and opens nothing."""
    case = Case(server, "prompt fields: paths as text")
    canary = server["canary"]
    for value in (str(canary / "secret.txt"), "../../../../etc/passwd"):
        outcome = call(server, "/text_to_video", _data(server, "/text_to_video", prompt=value, method="none",
                                                         steps=1, negative_prompt=value, reward_prompt=value))
        case.answered(outcome, value)
    case.finish()


def test_file_fields_take_uploads_only(server):
    """Every file field, raw API values: a server path (absolute, traversal, through the upload folder), a URL for
    the server to fetch, a bare string, a FileData without its meta, a number: refused naming the field. A file
    field sent inside the named fields (as text or a FileData) is refused the same way."""
    case = Case(server, "file fields: server paths, URLs, wrong shapes")
    canary = server["canary"]
    upload_dir = server["dir"] / "gradio-cache"
    meta = {"_type": "gradio.FileData"}
    values = [{"path": str(canary / "img.png"), "meta": meta}, {"path": str(canary / "a.wav"), "meta": meta},
              {"path": str(upload_dir / ".." / "canary" / "img.png"), "meta": meta},
              {"path": "../../../../etc/passwd", "meta": meta}, {"path": "/etc/passwd", "meta": meta},
              {"path": f"{server['url']}/gradio_api/info", "meta": meta}, {"path": "file:///etc/passwd", "meta": meta},
              {"path": str(canary / "img.png")}, {"url": "http://127.0.0.1:1/x.png", "meta": meta},
              str(canary / "img.png"), 42, ["a"]]
    uses = {"/style_transfer": ("style_image",), "/audio_alignment": ("audio",),
            "/frame_interpolation": ("first_frame", "last_frame")}
    for api, fields in uses.items():
        for field in fields:  # every value on the style image, the main kinds on the other fields
            for value in values if field == "style_image" else values[:2] + values[5:6] + values[-3:-2]:
                case.refused(call(server, api, _data(server, api, **{"prompt": PROMPT, "method": "none", "steps": 1,
                                                                     field: value})), f"{field}: ", (field, value))
            # a file field inside the named fields (a server path as text, a FileData): refused, nothing opened
            for value in (str(canary / "img.png"), values[0]):
                data = [{"prompt": PROMPT, "method": "none", "steps": 1, field: value}] + [None] * len(fields)
                case.refused(call(server, api, data), f"{field}: is an upload, not a named field", (field, value))
            # a file value anywhere else inside them (a method parameter, a text field): refused before Gradio
            for where in ({"params": {"step_size": values[0]}}, {"negative_prompt": [values[0]]}):
                data = [{"prompt": PROMPT, "method": "titan", "steps": 1, **where}] + [None] * len(fields)
                case.refused(call(server, api, data), "request: holds a file value", (field, where))
    case.finish()


def test_oversized_and_malformed_uploads(server, tmp_path):
    """Above the 20 MB limit: HTTP 413 at upload. Uploaded but not media (garbage PNG, text as WAV, empty file, a
    decompression bomb's header): refused naming the field."""
    case = Case(server, "uploads: oversized and malformed")
    case.tried += 1
    assert upload(server, "big.png", b"\0" * (21 * 2**20)) == 413
    case.clean += 1
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # a few kB on disk, 400 Mpx decoded
    bad = {"style_image": [("bad.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 50), ("empty.png", b""),
                           ("bomb.png", bomb.read_bytes()), ("notes.png", b"plain text, not an image")],
           "audio": [("notes.wav", b"not audio at all " * 40), ("empty.wav", b""),
                     ("short.wav", b"RIFF\x24\0\0\0WAVEfmt ")]}
    apis = {"style_image": "/style_transfer", "audio": "/audio_alignment"}
    for field, files in bad.items():
        for name, content in files:
            fd = upload(server, name, content)
            assert isinstance(fd, dict), (name, fd)
            api = apis[field]
            case.refused(call(server, api, _data(server, api, **{"prompt": PROMPT, "method": "none", "steps": 1,
                                                                 field: fd})), f"{field}: ", name)
    case.finish()


def _wrong_values(server, api):
    """(field, value, expected message prefix) on one endpoint."""
    return [("steps", "abc", "steps: expected a whole number, got 'abc'"), ("steps", [1], "steps: expected a whole"),
            ("steps", "2.5", "steps: must be a whole number"), ("seed", {"x": 1}, "seed: expected a whole number"),
            ("cfg", "1e999", "cfg: must be finite"), ("cfg", True, "cfg: expected a number"),
            ("frames", "999", "frames: 999 is not available in this preset"),
            ("size", [32], "size: expected a whole number, got a list"),
            ("method", 5, "method: 5 is not one of"), ("prompt", ["x"], "prompt: expected text"),
            ("eta", "x", "eta: expected a number"), ("mg_scale", None, "mg_scale: is null"),
            ("cfg_schedule", "maybe", "cfg_schedule: expected true or false"),
            ("seed", "1" * 400, "seed: "), ("prompt", "x" * 1_000_000, "prompt: is 1000000 characters"),
            ("negative_prompt", "y " * 300_000, "negative_prompt: is 599999 characters"),
            ("stpes", 3, "stpes: unknown field"), ("params", [1], "params: expected an object"),
            ("params", {"nope": 1}, "param nope: unknown parameter"), ("params", {"update": ["x"]}, "param update:")]


def test_wrong_types_and_missing_values_on_every_endpoint(server):
    """Every endpoint: numbers, choices and text of the wrong type, unknown fields and method parameters get the
    field named in plain words; no values, or a `request` that is not an object of named fields, get `request: ...`;
    a body that is not JSON or has no list gets an HTTP 4xx."""
    import httpx

    case = Case(server, "wrong types, missing values (8 endpoints)")
    for api in ALL_ENDPOINTS:
        method = "titan" if api.endswith("_compare") else "none"
        wrong = _wrong_values(server, api)
        # every kind on two endpoints (one of each handler), the main ones on the six others
        for field, value, want in wrong if api in ("/text_to_video", "/style_transfer_compare") else wrong[:1] + \
                wrong[4:5] + wrong[6:10:2]:
            case.refused(call(server, api, _data(server, api, **{"prompt": PROMPT, "method": method, "steps": 1,
                                                                 field: value})), want, (api, field, value))
        case.refused(call(server, api, []), "request: this endpoint takes", (api, "[]"))
        files = [None] * (len(server["info"][api]["parameters"]) - 1)
        for value, want in ((PROMPT, "request: expected a JSON object"), (5, "request: expected an object"),
                            ([PROMPT], "request: expected an object"), ('{"steps": "abc"}', "steps: expected")):
            case.refused(call(server, api, [value] + files), want, (api, value))
        for body in (b"{not json", b'{"data": 5}', b'{"nodata": []}'):
            r = httpx.post(f"{server['url']}/gradio_api/call{api}", content=body,
                           headers={"content-type": "application/json"}, timeout=30)
            case.tried += 1
            assert 400 <= r.status_code < 500, (api, body, r.status_code)
            case.leaked += leaks(server, r.text)
            case.clean += 1
    # numbers and choices arriving as text are parsed: the run finishes with them
    frames = str(server["info"]["/text_to_video"]["parameters"][0]["parameter_default"]["frames"])
    case.answered(call(server, "/text_to_video", _data(server, "/text_to_video", prompt=PROMPT, method="none",
                                                       steps="1", seed="3", frames=frames, cfg="7.5",
                                                       cfg_schedule="false")), "text numbers")
    case.finish()


def test_concurrent_cancels(server):
    """Three clients (three sessions): a running job cancelled from four threads at once, another client's queued
    job cancelled at the same moment, and a third client's normal job queued behind them: the running one stops
    early, the normal one finishes with its video (no run lost), nothing leaks. (Gradio's cancel is keyed on the
    session and endpoint: one session's two jobs on one endpoint would be cancelled together.)"""
    from gradio_client import Client

    clients = [server["client"]] + [Client(server["url"], verbose=False) for _ in range(2)]
    case = Case(server, "concurrent cancels")
    long = clients[0].submit(api_name="/text_to_video", **_fields(prompt=PROMPT, method="none", steps=200))
    wait_until(long.outputs, timeout=240, what="the long job's first streamed step")
    queued = clients[1].submit(api_name="/text_to_video", **_fields(prompt=PROMPT, method="none", steps=200))
    normal = clients[2].submit(api_name="/text_to_video", **_fields(prompt=PROMPT, method="none", steps=1))
    threads = [threading.Thread(target=job.cancel) for job in (long, long, long, long, queued, queued)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    case.tried += len(threads) + 1
    wait_until(long.done, timeout=120, what="the cancelled job to end")
    wait_until(queued.done, timeout=120, what="the cancelled queued job to end")
    assert len(long.outputs()) < 200
    case.clean += len(threads)
    result = normal.result(timeout=300)  # the run queued behind both is not lost
    video = result[2]["video"] if isinstance(result[2], dict) else result[2]
    assert Path(video).is_file() and not leaks(server, result[4])
    case.runs += 1
    case.finish()


def test_a_burst_beyond_the_queue(server):
    """With the slot held by a long job, more requests than the queue holds: the excess is refused at once (HTTP
    503, queue full); every accepted request gets its answer (the valid ones their video, the bad ones their
    field-named refusal) once the long job is cancelled; then a normal request works."""
    import httpx

    client = server["client"]
    case = Case(server, f"burst beyond the queue ({QUEUE_MAX_SIZE} + 8)")
    hold = client.submit(api_name="/text_to_video", **_fields(prompt=PROMPT, method="none", steps=200))
    wait_until(hold.outputs, timeout=240, what="the holding job's first streamed step")
    accepted, refused = [], 0
    for i in range(QUEUE_MAX_SIZE + 8):
        valid = i < 3
        data = _data(server, "/text_to_video", prompt=PROMPT, method="none", steps=1 if valid else "abc", seed=i)
        r = httpx.post(f"{server['url']}/gradio_api/call/text_to_video", json={"data": data}, timeout=60)
        if r.status_code == 503:  # (an accepted one is counted when its answer comes)
            case.tried += 1
            refused += 1
            case.leaked += leaks(server, r.text)
            case.clean += 1
        else:
            assert r.status_code == 200, r.text
            accepted.append((valid, r.json()["event_id"]))
    assert refused >= 1 and len(accepted) <= QUEUE_MAX_SIZE, (refused, len(accepted))
    hold.cancel()
    wait_until(hold.done, timeout=120, what="the holding job to end")
    for valid, event_id in accepted:  # every accepted request is answered: none lost
        got = call_result(f"{server['url']}/gradio_api/call/text_to_video", event_id)
        assert got is not None
        if valid:
            case.answered(got)
        else:
            case.refused((got[0], (got[1] or {}).get("error")), "steps: expected a whole number")
    case.finish()


def test_file_values_that_were_not_uploaded_are_refused_by_gradio_and_by_the_app(tmp_path):
    """Pinned, on a bare Blocks with one of the app's image fields: Gradio itself refuses a raw API file value
    (FileData) naming a server path no client uploaded, and the handler never runs. The same value without its
    `meta` gets past Gradio to the handler (Gradio 6.31): the app's own check (`messages.guard`, which every app
    event goes through) refuses both, so an upgrade or a custom component cannot open a server file either way."""
    import gradio as gr

    from pipelines.studio.messages import guard
    from pipelines.studio.widgets import Image

    secret = tmp_path / "secret.png"
    secret.write_bytes((ROOT / "assets" / "examples" / "first_frame.png").read_bytes())
    ran = []

    def fn(path):
        ran.append(path)
        return "opened"

    def serve(guarded: bool):
        with gr.Blocks() as demo:
            img, out = Image(type="filepath", field="style_image"), gr.Textbox()
            gr.Button().click(fn, img, out, api_name="look")
        if guarded:
            guard(demo)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True,
                    quiet=True)
        return demo, {"url": f"http://127.0.0.1:{port}"}

    with_meta = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
    demo, server = serve(guarded=False)
    try:
        outcome = call(server, "/look", [with_meta])
        assert outcome[0] == "error" and "not uploaded by a user" in str(outcome[1]), outcome
        assert ran == []
        outcome = call(server, "/look", [{"path": str(secret)}])  # no meta: Gradio lets it through
        assert outcome == ("complete", ["opened"]) and len(ran) == 1, outcome
    finally:
        demo.close()
    ran.clear()
    demo, server = serve(guarded=True)
    try:
        for value in (with_meta, {"path": str(secret)}):
            outcome = call(server, "/look", [value])
            assert outcome[0] == "error" and str(outcome[1]).startswith("style_image: "), outcome
            assert str(secret) not in str(outcome[1])
        assert ran == []
    finally:
        demo.close()


def test_zz_print_the_table(server):
    """The table of the cases above (docs/reliability.md records it)."""
    assert TABLE, "run the whole module: the table is filled by the cases"
    head = (f"| {'case':<52} | {'inputs tried':>12} | {'refused cleanly':>15} | {'runs finished':>13} | "
            f"{'server files opened':>19} | {'leaks':>5} | {'server alive':>12} |")
    lines = [head, "|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|"]
    rows = list(TABLE.items())
    total = {k: sum(r[k] for r in TABLE.values()) for k in ("tried", "clean", "runs", "opened", "leaks")}
    total["alive"] = all(r["alive"] for r in TABLE.values())
    for name, row in rows + [("total", total)]:
        lines.append(f"| {name:<52} | {row['tried']:>12} | {row['clean']:>15} | {row['runs']:>13} | "
                     f"{row['opened']:>19} | {row['leaks']:>5} | {'yes' if row['alive'] else 'NO':>12} |")
    internal = server["log"].read_text().count("internal error (id ")
    lines.append(f"server log: {internal} internal errors (each would be a short message with an id)")
    print("\n" + "\n".join(lines))
    assert total["opened"] == 0 and total["leaks"] == 0 and total["tried"] == total["clean"] + total["runs"]
