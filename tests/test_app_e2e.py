"""End to end: the app as a subprocess on 127.0.0.1, driven through gradio_client (all four endpoints, named fields:
one `request` object and the tab's uploads; docs/api.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import media

from .waiting import wait_until

pytestmark = pytest.mark.slow
PROMPT = "a red circle moving left to right on a black background"
STEPS = 3




@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


UPLOADS = ("style_image", "audio", "first_frame", "last_frame")


def submit(client, api_name, prompt=None, **kw):
    """A job of `api_name`: the uploads among `kw` as file inputs, the rest (and the prompt) as named fields."""
    files = {k: kw.pop(k) for k in UPLOADS if k in kw}
    fields = ({} if prompt is None else {"prompt": prompt}) | kw
    return client.submit(request=fields, api_name=api_name, **files)


def predict(client, api_name, prompt=None, **kw):
    return submit(client, api_name, prompt, **kw).result(timeout=300)


def _run(client, api_name, *args, **kw):
    kw.setdefault("method", "none")  # the plumbing under test; the tabs' default methods are slower
    kw.setdefault("steps", STEPS)
    job = submit(client, api_name, *args, **kw)
    result = job.result(timeout=300)
    return job, result


def _check_video(result, frames, audio=False):
    preview, plot, video, report, summary = result
    path = video["video"] if isinstance(video, dict) else video
    assert media.count_frames(path) == frames
    info = media.probe(path)
    assert "h264" in info and "yuv420p" in info
    assert ("Audio:" in info) == audio
    assert report and str(report).endswith(".json")
    assert "before" in summary and "after" in summary
    return path


ENDPOINTS = ("/text_to_video", "/style_transfer", "/audio_alignment", "/frame_interpolation")


def test_endpoints_listed(client):
    """The four endpoints and their _compare twins, and nothing else public; each takes `request` (named fields,
    listed with the tab's defaults) then the tab's uploads, a twin exactly its tab's; 5 and 7 outputs."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(api) == set(ENDPOINTS) | {f"{e}_compare" for e in ENDPOINTS}
    uploads = {"/text_to_video": [], "/style_transfer": ["style_image"], "/audio_alignment": ["audio"],
               "/frame_interpolation": ["first_frame", "last_frame"]}
    for e in ENDPOINTS:
        params = [(p["parameter_name"], p.get("parameter_default")) for p in api[e]["parameters"]]
        assert params == [(p["parameter_name"], p.get("parameter_default"))
                          for p in api[f"{e}_compare"]["parameters"]]
        assert [n for n, _ in params] == ["request"] + uploads[e]
        defaults = params[0][1]
        assert {"prompt", "method", "params", "seed", "steps", "frames", "size"} <= set(defaults)
        assert not set(defaults) & set(UPLOADS)
        assert (len(api[e]["returns"]), len(api[f"{e}_compare"]["returns"])) == (5, 7)


def test_start_up_says_ready(app_server):
    log = app_server[1].read_text()
    assert "[gvs] ready: examples lazy" in log and "[gvs] runs in " in log


def test_text_to_video_streams_while_it_runs(client):
    job, result = _run(client, "/text_to_video", PROMPT, frames=8)
    outs = job.outputs()
    # the first step is always streamed (more at most every STREAM_EVERY_S; none for the last step), then the final
    # row: a step's preview image before the video
    assert len(outs) >= 2 and "sampling 1/" in outs[0][-1], [o[-1] for o in outs]
    assert all(o[0] is not None for o in outs[1:])  # a preview image on every streamed row after the first
    _check_video(result, 8)


def test_text_to_video_with_the_prompt_only_in_the_reward(client):
    job, result = _run(client, "/text_to_video", "", reward_prompt=PROMPT, method="titan", frames=8)
    report = json.loads(Path(result[3]).read_text())
    assert report["prompt"] == "" and report["reward_prompt"] == PROMPT and report["method"] == "titan"


def test_style_transfer(client, examples_dir):
    from gradio_client import handle_file

    job, result = _run(client, "/style_transfer", PROMPT, style_image=handle_file(str(examples_dir / "style_stripes.png")))
    assert len(job.outputs()) >= 2  # its first step streamed, then the final row
    _check_video(result, 8)


def test_audio_alignment_muxes_audio(client, examples_dir):
    from gradio_client import handle_file

    job, result = _run(client, "/audio_alignment", "a green circle bouncing on a black background",
                       audio=handle_file(str(examples_dir / "impacts_long.wav")))
    _check_video(result, 8, audio=True)
    assert "longer than" in result[4]  # the crop notice is in the summary


def test_frame_interpolation(client, examples_dir):
    from gradio_client import handle_file

    job, result = _run(client, "/frame_interpolation", "a blue triangle moving left to right on a gray background",
                       first_frame=handle_file(str(examples_dir / "first_frame.png")),
                       last_frame=handle_file(str(examples_dir / "last_frame.png")))
    _check_video(result, 8)


def test_cancel_then_keeps_serving(client):
    job = submit(client, "/text_to_video", PROMPT, steps=100, method="none")
    wait_until(job.outputs, timeout=240, what="a first streamed step")
    job.cancel()
    wait_until(job.done, timeout=120, what="the cancelled job to end")
    assert len(job.outputs()) < 100
    _, result = _run(client, "/text_to_video", PROMPT)  # the slot is free again
    _check_video(result, 8)


@pytest.mark.parametrize("api,kw,field", [
    ("/text_to_video", {"prompt": ""}, "prompt"),
    ("/text_to_video", {"prompt": PROMPT, "steps": 0}, "steps"),
    ("/text_to_video", {"prompt": PROMPT, "frames": 7}, "frames"),
    ("/text_to_video", {"prompt": PROMPT, "seed": None}, "seed"),
    ("/text_to_video", {"prompt": PROMPT, "method": "magic"}, "method"),
    ("/text_to_video", {"prompt": PROMPT, "stpes": 3}, "stpes: unknown field"),
    ("/text_to_video", {"prompt": PROMPT, "params": {"scale": "x"}}, "param scale"),
    ("/style_transfer", {"prompt": PROMPT}, "style_image"),
    ("/audio_alignment", {"prompt": PROMPT}, "audio"),
    ("/frame_interpolation", {"prompt": PROMPT}, "first_frame"),
])
def test_bad_inputs_name_the_field(client, api, kw, field):
    with pytest.raises(Exception) as e:
        predict(client, api, **kw)
    assert field in str(e.value)


def test_bad_uploads_name_the_field(client, tmp_path):
    from gradio_client import handle_file

    txt = tmp_path / "notes.wav"
    txt.write_text("not audio at all " * 40)
    with pytest.raises(Exception, match="audio"):
        predict(client, "/audio_alignment", PROMPT, audio=handle_file(str(txt)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(Exception, match="style_image"):
        predict(client, "/style_transfer", PROMPT, style_image=handle_file(str(bad)))
    # and the server still serves
    _, result = _run(client, "/text_to_video", PROMPT)
    _check_video(result, 8)


def test_compare_endpoint_same_seed_and_eta(client):
    import json

    job = submit(client, "/text_to_video_compare", PROMPT, method="titan", steps=STEPS, seed=7, eta=0.5)
    preview, plot, unguided, guided, table, report, summary = job.result(timeout=300)
    paths = [v["video"] if isinstance(v, dict) else v for v in (unguided, guided)]
    assert paths[0] != paths[1] and all(media.count_frames(p) == 8 for p in paths)
    data = json.loads(open(report).read())
    u, g = data["unguided"]["report"], data["guided"]["report"]
    assert (u["method"], g["method"]) == ("none", "titan")
    assert u["seed"] == g["seed"] == 7 and u["eta"] == g["eta"] == 0.5 and u["steps"] == g["steps"] == STEPS
    assert "Same seed 7" in table and "none" in table and "titan" in table
    assert data["guided"]["metric"] is None or "value" in data["guided"]["metric"]


def test_compare_refuses_method_none(client):
    with pytest.raises(Exception, match="method"):
        predict(client, "/text_to_video_compare", PROMPT, method="none", steps=STEPS)


def test_text_to_video_with_trained_video_parts(client, app_server, tmp_path):
    """The Model accordion over the API: a HARIVO run of the test preset's own base, 1 step, written into the
    server's model folder and named relative to it as `video_parts` (the report names it so, never by a server
    path); another family is refused naming the field; a path outside the folder gets the one refusal."""
    from gradio_client.exceptions import AppError

    from pipelines.model_options import REFUSED
    from pipelines.training import load_config
    from pipelines.training.loop import train

    from .conftest import test_preset_name

    models = Path(app_server[1]).parent / "models"
    base = "micro" if test_preset_name() == "micro" else "tiny"
    cfg = load_config(base, {"out": str(models / "run"), "steps": 1, "batch_size": 1, "threads": 1,
                             "ckpt_every": 1, "w_dc": 0.0})
    final = Path(train(cfg, quiet=True)["final"])
    assert final == models / "run" / "final"
    job, result = _run(client, "/text_to_video", PROMPT, video_parts="run/final")
    text = Path(result[3]).read_text()
    report = json.loads(text)
    assert report["model"]["video_parts"] == "run/final" and str(models) not in text
    _check_video(result, report["frames"])
    other = load_config("tiny" if base == "micro" else "micro",
                        {"out": str(models / "other"), "steps": 1, "batch_size": 1, "threads": 1, "ckpt_every": 1,
                         "w_dc": 0.0, "w_trs": 0.0})
    train(other, quiet=True)
    with pytest.raises(AppError, match="video_parts: other/final was trained for another model family"):
        predict(client, "/text_to_video", PROMPT, method="none", steps=STEPS, video_parts="other/final")
    with pytest.raises(AppError) as e:
        predict(client, "/text_to_video", PROMPT, method="none", steps=STEPS, video_parts=str(final))
    assert str(e.value) == f"video_parts: {REFUSED}"
