"""Consistent number rules and messages that name their field once."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.request import GenerationRequest, RequestError, validate

PROMPT = "a red circle moving left to right on a black background"


def test_a_whole_number_field_refuses_a_fraction_like_steps_does(preset):
    import gradio as gr

    from pipelines.studio.widgets import Number

    seed = Number(value=0, precision=0, field="seed")
    assert seed.preprocess(3.0) == 3
    with pytest.raises(gr.Error) as e:
        seed.preprocess(1.5)
    assert e.value.message == "seed: must be a whole number, got 1.5"
    with pytest.raises(RequestError, match=r"^steps: must be a whole number, got 2\.5$"):
        validate(GenerationRequest(prompt=PROMPT, steps=2.5), preset)


def test_a_message_names_its_field_once():
    e = RequestError("t2v_reward", "t2v_reward: the LVLM judge is not configured")
    assert str(e) == "t2v_reward: the LVLM judge is not configured" and e.message.startswith("the LVLM")


def test_a_tiny_style_image_gets_a_notice(preset, tmp_path):
    tiny = tmp_path / "dot.png"
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tiny)
    prep = validate(GenerationRequest(task="style", prompt=PROMPT, style_image=str(tiny), steps=1), preset)
    assert any("style_image is only 1x1 px" in n for n in prep.notices)
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(big)
    prep = validate(GenerationRequest(task="style", prompt=PROMPT, style_image=str(big), steps=1), preset)
    assert not any("px:" in n for n in prep.notices)


def test_text_numbers_and_choices_are_parsed_or_refused_naming_the_field():
    """API clients send numbers as text: "16" is the choice 16, "3" three steps; "abc" is refused with the field
    named in plain words (not Python's `'<' not supported ...`)."""
    import gradio as gr

    from pipelines.request import parse_number
    from pipelines.studio.widgets import Checkbox, Dropdown, Number, Slider, Textbox

    frames = Dropdown(choices=[8, 12, 16], value=8, field="frames")
    assert frames.preprocess("16") == 16 and frames.preprocess(12) == 12
    steps = Slider(minimum=1, maximum=200, step=1, value=4, field="steps")
    assert steps.preprocess("3") == 3 and Number(value=0.5, field="cfg").preprocess(" 2.5 ") == 2.5
    assert Checkbox(value=False, field="cfg_schedule").preprocess("false") is False
    assert Textbox(field="prompt").preprocess(7) == "7"
    for widget, bad, want in (
        (steps, "abc", "steps: expected a whole number, got 'abc'"),
        (steps, "2.5", "steps: must be a whole number, got '2.5'"),
        (Number(value=0, precision=0, field="seed"), [1], "seed: expected a whole number, got a list"),
        (Slider(minimum=0, maximum=30, value=7.5, field="cfg"), {"a": 1}, "cfg: expected a number, got a dict"),
        (steps, True, "steps: expected a whole number, got True"),
        (frames, "15", "frames: '15' is not one of [8, 12, 16]"),
        (Checkbox(value=False, field="cfg_schedule"), "maybe", "cfg_schedule: expected true or false, got 'maybe'"),
        (Textbox(field="prompt"), ["x"], "prompt: expected text, got a list"),
    ):
        with pytest.raises(gr.Error) as e:
            widget.preprocess(bad)
        assert e.value.message == want
    with pytest.raises(RequestError, match=r"^steps: expected a whole number, got 'x'$"):
        parse_number("x", "steps", int)


def test_messages_are_scrubbed_and_an_unexpected_error_gets_an_id_matching_the_log(capsys):
    from pipelines.studio.messages import internal_error, scrub

    assert scrub("video_parts: folder not found: /srv/secret/models/a") == "video_parts: folder not found: a"
    assert scrub(r"bad C:\Users\me\x.png") == "bad x.png"
    assert scrub("see http://127.0.0.1:7860/gradio_api/info") == "see http://127.0.0.1:7860/gradio_api/info"
    assert scrub("step 3/10") == "step 3/10" and len(scrub("x" * 5000)) <= 600
    assert "Traceback" not in scrub('boom\nTraceback (most recent call last):\n  File "/a/b.py"')
    try:
        raise KeyError("/srv/secret/thing")
    except KeyError as exc:
        err = internal_error(exc)
    out = capsys.readouterr().out
    eid = err.message.split("(id ")[1].split(")")[0]
    assert len(eid) == 8 and "/srv/secret" not in err.message and "KeyError" not in err.message
    assert f"internal error (id {eid})" in out and "Traceback" in out and "/srv/secret/thing" in out


def test_an_unexpected_error_in_a_run_reaches_the_client_as_an_id_only(preset, tmp_path, monkeypatch, capsys):
    """A bug inside a run (here the sampler raising with a server path in its text): the API error and the page's
    status line carry one short message with an id; the server log has the traceback under that id; the next run
    works."""
    import gradio as gr

    from pipelines.studio import handlers
    from pipelines.studio.handlers import Studio
    from pipelines.studio.runs import RunStore

    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=4))
    kw = dict(prompt=PROMPT, method="none", mg_scale=0, seed=0, steps=1, cfg=7.5, frames=8,
              size=preset.default_size, eta=1.0)
    real = handlers.run

    def broken(*a, **k):
        raise RuntimeError("boom in /srv/secret/weights.bin")

    monkeypatch.setattr(handlers, "run", broken)
    tok, _ = studio.begin()
    with pytest.raises(gr.Error) as e:
        list(studio.generate("t2v", kw, token=tok))
    msg = e.value.message
    assert msg.startswith("internal error (id ") and "secret" not in msg and "RuntimeError" not in msg
    eid = msg.split("(id ")[1].split(")")[0]
    assert studio.failure_text(tok) == f"not run: {msg}"
    log = capsys.readouterr().out
    assert f"internal error (id {eid})" in log and "boom in /srv/secret/weights.bin" in log and "Traceback" in log
    monkeypatch.setattr(handlers, "run", real)
    assert list(studio.generate("t2v", kw))[-1][2].endswith(".mp4")
