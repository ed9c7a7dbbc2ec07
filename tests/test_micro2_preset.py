"""The `micro2` preset (assets/micro2, or GVS_MICRO2_DIR): the micro models trained on world 2. It loads offline,
generates the prompted colour, reads its world from its weights, and everything that reads the world (the caption
notice, the readers, the compare view, the report) takes world 2 from it; `micro` stays world 1."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from pipelines.micro import MICRO_DIR  # noqa: E402
from pipelines.micro.detector import detect  # noqa: E402
from pipelines.presets import (MICRO2_DIR, MICRO_WORLD_PRESETS, PRESET_DEFAULTS, PRESETS, is_micro_world,  # noqa: E402
                               load_preset, micro2_dir, micro_world)

have_weights = (MICRO2_DIR / "model_index.json").is_file() and (MICRO2_DIR / "unet").is_dir()
needs_weights = pytest.mark.skipif(not have_weights, reason="assets/micro2 not shipped")


@pytest.fixture(scope="module")
def preset():
    torch.set_num_threads(1)
    return load_preset("micro2", device="cpu")


def test_micro2_is_a_micro_world_preset_of_world_2():
    assert "micro2" in PRESETS and "micro2" in MICRO_WORLD_PRESETS and is_micro_world("micro2")
    assert "micro2" in PRESET_DEFAULTS
    assert micro_world("micro2") == 2
    assert micro_world("micro") == 1  # assets/micro is world 1's
    assert micro_world("animatediff") is None and micro_world(None) is None


@needs_weights
def test_loads_offline_with_world_from_weights(preset):
    from pipelines.micro.loading import world_of

    assert world_of(MICRO2_DIR) == 2
    assert preset.name == "micro2" and preset.world == 2 and micro_world(preset) == 2
    assert preset.clip == str(micro2_dir() / "clip")
    assert preset.default_size == 32 and preset.default_frames == 8
    assert load_preset("micro", device="cpu").world == 1  # micro is unchanged


@needs_weights
def test_generates_prompted_colour(preset):
    """A prompt that leaves the look open gets its colour (world 2's detector reads it), at two seeds."""
    for seed in (0, 1):
        video = preset.pipe("a red circle moving up", num_frames=8, num_inference_steps=20, guidance_scale=7.5,
                            generator=torch.Generator().manual_seed(seed), output_type="pt").frames
        assert tuple(video.shape) == (1, 8, 3, 32, 32)
        d = detect(video[0], world=2)
        assert d["colour"] == "red", (seed, d["colour"], d["background"])
        assert d.get("look") is not None  # world 2's detector reads a look


@needs_weights
def test_caption_notice_of_world_2(preset):
    """The request's notice is world 2's: a prompt with no look is valid and says the look is left to the sampler;
    on `micro` (world 1) the same prompt does not parse."""
    from pipelines.request import GenerationRequest, validate

    p = validate(GenerationRequest(task="t2v", prompt="a red circle moving up", method="none", steps=2), preset)
    assert p.world == 2
    notes = " ".join(p.notices)
    assert "background look is left to the sampler" in notes, notes
    full = "a red circle moving up on teal and beige wide vertical stripes"
    assert not any("prompt:" in n for n in validate(GenerationRequest(task="t2v", prompt=full, method="none",
                                                                      steps=2), preset).notices)
    micro = load_preset("micro", device="cpu")
    p1 = validate(GenerationRequest(task="t2v", prompt="a red circle moving up", method="none", steps=2), micro)
    assert p1.world == 1 and any("does not parse" in n for n in p1.notices), p1.notices


def test_missing_or_world1_folder_is_refused_with_its_name(tmp_path, monkeypatch):
    missing = tmp_path / "no_micro2"
    monkeypatch.setenv("GVS_MICRO2_DIR", str(missing))
    with pytest.raises(ValueError, match="no_micro2.*does not exist"):
        load_preset("micro2", device="cpu")
    if (MICRO_DIR / "model_index.json").is_file():  # world 1's weights are not micro2's
        monkeypatch.setenv("GVS_MICRO2_DIR", str(MICRO_DIR))
        with pytest.raises(ValueError, match="not trained on world 2"):
            load_preset("micro2", device="cpu")


@needs_weights
def test_style_run_reports_what_reference_and_video_read_as(preset):
    """A style run on micro2 says in its report and summary what the reference and the video's background read as
    (`detector.style_reading`); micro (world 1) does not."""
    from pipelines.evaluation.micro import look_reference
    from pipelines.micro.looks import Look
    from pipelines.request import GenerationRequest, build_report, run, summary_text, validate

    ref = look_reference(Look.make("stripes", ("navy", "silver"), 90, "wide"))
    for p, world in ((preset, 2), (load_preset("micro", device="cpu"), 1)):
        prompt = "a red circle moving up" if world == 2 else "a red circle moving up on a black background"
        gen = run(validate(GenerationRequest(task="style", prompt=prompt, style_image=ref, method="none", steps=2),
                           p), p)
        for _ in gen:
            pass
        report = build_report(gen)
        if world == 2:
            assert report["style_reading"].startswith("your reference reads as silver and navy wide vertical "
                                                      "stripes"), report["style_reading"]
            assert "the video's background reads as" in report["style_reading"]
            assert "style: your reference reads as" in summary_text(report)
        else:
            assert "style_reading" not in report
