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
