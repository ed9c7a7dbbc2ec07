"""The app's API of named fields (docs/api.md), on an app served in this process: every example of the docs runs as
written through gradio_client (and the raw HTTP one through httpx) and brings back a video; bad fields are refused
naming the field and the server keeps serving; the app, its API and the CLI read one table of defaults."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from pipelines import media
from pipelines.request import CONSTANT_DEFAULTS, DEFAULT_ETA, field_defaults, tab_fields

from .conftest import ROOT, free_port
from .waiting import call_result

pytestmark = pytest.mark.slow
DOC = ROOT / "docs" / "api.md"
DOC_URL = "http://127.0.0.1:7860/"
TASKS = {"t2v": "/text_to_video", "style": "/style_transfer", "audio": "/audio_alignment",
         "interpolate": "/frame_interpolation"}
PROMPT = "a red circle moving left to right on a black background"


def doc_blocks(lang: str) -> dict[str, str]:
    """The docs' code blocks of `lang`, by the heading above them."""
    out, heading, block = {}, None, None
    for line in DOC.read_text().splitlines():
        if block is not None:
            if line.startswith("```"):
                out[heading], block = "\n".join(block) + "\n", None
            else:
                block.append(line)
        elif line.startswith("```" + lang) and line.strip() == "```" + lang:
            block = []
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return out


@pytest.fixture(scope="module")
def served(preset, tmp_path_factory):
    """The app (`app.build_demo`, the test preset, examples off) served on 127.0.0.1 the way `app.main` serves it:
    the bounded queue, runs in their own folder, no raw error text."""
    import app
    from pipelines.studio.queueing import configure_queue
    from pipelines.studio.runs import RunStore

    runs = tmp_path_factory.mktemp("api-named") / "runs"
    demo = app.build_demo(preset, cache_examples="off", store=RunStore(runs, keep=16))
    configure_queue(demo, app.QUEUE_MAX_SIZE)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
                max_file_size=app.MAX_FILE_SIZE, allowed_paths=[str(runs)])
    yield demo, f"http://127.0.0.1:{port}"
    demo.close()


def _video(value) -> str:
    return value["video"] if isinstance(value, dict) else value


def _run_example(code: str, url: str, monkeypatch) -> dict:
    assert DOC_URL in code
    monkeypatch.chdir(ROOT)  # the examples name the app's example files from the repository's root
    scope: dict = {}
    exec(compile(code.replace(DOC_URL, url + "/"), str(DOC), "exec"), scope)  # noqa: S102 - the docs' own example
    return scope


@pytest.mark.parametrize("heading,task", [("Text to video", "t2v"), ("Style reference", "style"),
                                          ("Audio alignment", "audio"), ("Frame interpolation", "interpolate")])
def test_each_tabs_example_brings_back_its_video(served, heading, task, monkeypatch, capsys):
    scope = _run_example(doc_blocks("python")[heading], served[1], monkeypatch)
    report = json.loads(Path(scope["report"]).read_text())
    assert report["task"] == task and report["frames"] == 8 and report["steps"] == 4
    assert report["method"] == field_defaults(task)["method"]  # the examples keep (or name) the tab's method
    assert media.count_frames(_video(scope["video"])) == 8
    assert ("Audio:" in media.probe(_video(scope["video"]))) == (task == "audio")
    assert "before" in scope["summary"]


def test_the_style_example_sets_its_method_parameter(served, monkeypatch):
    scope = _run_example(doc_blocks("python")["Style reference"], served[1], monkeypatch)
    assert json.loads(Path(scope["report"]).read_text())["params"]["step_size"] == 5.0


def test_the_compare_example(served, monkeypatch):
    scope = _run_example(doc_blocks("python")["Compare with unguided"], served[1], monkeypatch)
    data = json.loads(Path(scope["report"]).read_text())
    assert (data["unguided"]["report"]["method"], data["guided"]["report"]["method"]) == ("none", "titan")
    assert data["guided"]["report"]["seed"] == 3 and "Same seed 3" in scope["table"]
    for v in (scope["unguided"], scope["guided"]):
        assert media.count_frames(_video(v)) == data["guided"]["report"]["frames"]


def test_the_raw_http_example(served):
    """The curl lines of the docs, sent with httpx: the `data` body, then the event stream to its result."""
    import httpx

    lines = doc_blocks("bash")["Raw HTTP"].replace("\\\n", " ").splitlines()
    post = shlex.split(lines[0].replace(DOC_URL.rstrip("/"), served[1]))
    url, body = post[post.index("-X") + 2], json.loads(post[post.index("-d") + 1])
    event_id = httpx.post(url, json=body, timeout=60).json()["event_id"]
    got = call_result(url, event_id)
    assert got is not None and got[0] == "complete", got
    video = got[1][2]
    assert media.count_frames((video.get("video") or video)["path"]) == 8  # a FileData (inside {"video": ...})


@pytest.mark.parametrize("api,fields,message", [
    ("/text_to_video", {"prompt": PROMPT, "steps": "abc"}, "steps: expected a whole number, got 'abc'"),
    ("/text_to_video", {"prompt": PROMPT, "stpes": 4}, "stpes: unknown field for the t2v task; its fields: prompt"),
    ("/style_transfer", {"prompt": PROMPT, "cfg_schedule": "maybe"}, "cfg_schedule: expected true or false"),
    ("/audio_alignment", {"prompt": PROMPT, "params": [1]}, "params: expected an object of method parameters"),
    ("/frame_interpolation", {"prompt": PROMPT, "interpolation_mode": "sideways"},
     "interpolation_mode: 'sideways' is not one of ['both', 'reward', 'replacement']"),
    ("/text_to_video", {"prompt": PROMPT, "method": "titan", "params": {"scale": 1}},
     "param scale: unknown parameter for method 'titan'"),
    ("/text_to_video", {"prompt": PROMPT, "seed": None}, "seed: is null; give a value, or leave the field out"),
    ("/style_transfer", {"prompt": PROMPT, "style_image": "/etc/passwd"},
     "style_image: is an upload, not a named field: send it as the endpoint's `style_image` file input"),
    ("/text_to_video", "not json", "request: expected a JSON object of named fields"),
])
def test_a_bad_field_is_named_and_the_server_stays_up(served, api, fields, message):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(served[1], verbose=False)
    with pytest.raises(AppError) as e:
        client.predict(request=fields, api_name=api)
    assert str(e.value).startswith(message), str(e.value)
    out = client.predict(request={"prompt": PROMPT, "method": "none", "steps": 1}, api_name="/text_to_video")
    assert Path(_video(out[2])).is_file()


def test_one_table_of_defaults_for_the_app_its_api_and_the_cli(served, preset):
    """The widgets open on `field_defaults`, the API lists it as `request`'s default (and fills a left-out field
    from it), and the CLI's flags default to it."""
    from gradio_client import Client

    from pipelines.cli import build_parser

    demo, url = served
    api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]
    for task, endpoint in TASKS.items():
        table = field_defaults(task, preset)
        assert api[endpoint]["parameters"][0]["parameter_default"] == table
        assert api[f"{endpoint}_compare"]["parameters"][0]["parameter_default"] == table
        widgets = {b.field: b.value for b in _tab_blocks(demo, task) if getattr(b, "field", None) in table}
        assert widgets and all(widgets[k] == table[k] for k in widgets), (task, widgets, table)
        assert set(widgets) == set(table) - {"params", "lvlm_policy", "mg_normalized"}, task
        a = build_parser().parse_args(["generate", "--task", task, "--prompt", PROMPT, "--out", "o.mp4",
                                       "--report", "o.json"])
        assert a.method is None  # the CLI takes the task's method from the same table (`cmd_generate`)
        cli = {"negative_prompt": a.negative_prompt, "seed": a.seed, "mg_scale": a.mg_scale, "eta": a.eta,
               "cfg_schedule": a.cfg_schedule, "mg_normalized": a.mg_normalized, "t2v_reward": a.reward,
               "interpolation_mode": a.interpolation_mode, "steps": a.steps, "frames": a.frames}
        for k, v in cli.items():
            want = CONSTANT_DEFAULTS[k]
            assert v == want or (v is None and k in ("eta", "steps", "frames")), (k, v, want)
    assert CONSTANT_DEFAULTS["eta"] == DEFAULT_ETA


def _tab_blocks(demo, task: str):
    """Every block inside one tab."""
    tab = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == f"tab-{task}")
    stack, out = [tab], []
    while stack:
        b = stack.pop()
        out.append(b)
        stack.extend(getattr(b, "children", []) or [])
    return out


def test_the_docs_list_every_field():
    text = DOC.read_text()
    for task in TASKS:
        for name in tab_fields(task):
            assert f"| `{name}` |" in text, name
