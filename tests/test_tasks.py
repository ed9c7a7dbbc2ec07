"""Tasks turn user inputs into rewards and constraints, with clear errors for bad inputs."""
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.presets import load_preset
from pipelines.tasks import LatentReplacement, TaskInputs, build_task
from rewards.audio import AVSyncReward
from rewards.interpolation import InterpolationReward
from rewards.style import StyleReward
from rewards.text import TextAlignmentReward


@pytest.fixture(scope="module")
def tiny():
    return load_preset("tiny", device="cpu")


def _img(colour, size=(20, 12)):
    return Image.new("RGB", size, colour)


def test_each_task_builds_its_reward(tiny):
    sr = 16000
    wave = np.zeros(2 * sr, np.float32)
    wave[sr // 2 : sr // 2 + 200] = 0.8
    setups = {
        "t2v": build_task(tiny, "t2v", TaskInputs(prompt="a red circle"), 8, 16, 16),
        "style": build_task(tiny, "style", TaskInputs(prompt="a red circle", style_image=_img("blue")), 8, 16, 16),
        "audio": build_task(tiny, "audio", TaskInputs(prompt="a red circle", audio=(wave, sr)), 8, 16, 16),
        "interpolate": build_task(tiny, "interpolate", TaskInputs(prompt="a red circle", first_frame=_img("red"),
                                                                  last_frame=_img("blue")), 8, 16, 16),
    }
    assert isinstance(setups["t2v"].reward, TextAlignmentReward)
    assert isinstance(setups["style"].reward, StyleReward)
    assert tuple(setups["style"].reward.reference.shape) == (3, 16, 16)
    assert isinstance(setups["audio"].reward, AVSyncReward)
    interp = setups["interpolate"]
    assert isinstance(interp.reward, InterpolationReward)
    assert interp.reward.required_frames(8) == [0, 7]
    assert isinstance(interp.hooks[0], LatentReplacement)
    frames = torch.rand(8, 3, 16, 16)
    for s in setups.values():
        assert s.reward(frames).shape == (8,)


def test_long_audio_is_cropped_with_a_notice(tiny):
    sr = 16000
    wave = (np.random.default_rng(0).standard_normal(10 * sr) * 0.1).astype(np.float32)
    setup = build_task(tiny, "audio", TaskInputs(prompt="x", audio=(wave, sr)), 8, 16, 16)
    assert any("cropped" in n for n in setup.notices)


@pytest.mark.parametrize(
    "task, inputs, message",
    [
        ("t2v", TaskInputs(prompt="   "), "prompt"),
        ("style", TaskInputs(prompt="a"), "style_image"),
        ("audio", TaskInputs(prompt="a"), "audio"),
        ("audio", TaskInputs(prompt="a", audio=(np.zeros(16000, np.float32), 16000)), "silent"),
        ("audio", TaskInputs(prompt="a", audio=(np.full(100, np.nan, np.float32), 16000)), "invalid"),
        ("interpolate", TaskInputs(prompt="a", first_frame=Image.new("RGB", (4, 4))), "last_frame"),
        ("interpolate", TaskInputs(prompt="a", last_frame=Image.new("RGB", (4, 4))), "first_frame"),
        ("dance", TaskInputs(prompt="a"), "task"),
    ],
)
def test_bad_task_inputs(tiny, task, inputs, message):
    with pytest.raises(ValueError, match=message):
        build_task(tiny, task, inputs, 8, 16, 16)


def test_replacement_makes_the_endpoints_exact(tiny):
    pipe = tiny.pipe
    first, last = _img((255, 0, 0), (16, 16)), _img((0, 0, 255), (16, 16))
    setup = build_task(tiny, "interpolate", TaskInputs(prompt="a red circle", first_frame=first, last_frame=last,
                                                        interpolation_mode="replacement"), 6, 16, 16)
    events = list(pipe.stream("a red circle", num_frames=6, height=16, width=16, num_inference_steps=4,
                              generator=torch.Generator().manual_seed(0), hooks=setup.hooks, reward=setup.reward))
    video = events[-1].frames
    hook = setup.hooks[0]
    with torch.no_grad():
        expected = pipe.decode_latents(hook.latents, 16)[0].permute(1, 0, 2, 3) / 2 + 0.5
    assert torch.allclose(video[[0, 5]], expected.clamp(0, 1), atol=1e-5)
    # (the tiny random VAE cannot reconstruct the images themselves; the micro preset test checks that)
    plain = list(pipe.stream("a red circle", num_frames=6, height=16, width=16, num_inference_steps=4,
                             generator=torch.Generator().manual_seed(0)))[-1]
    assert not torch.allclose(plain.frames[[0, 5]], video[[0, 5]], atol=1e-3)


def test_titan_under_both_moves_the_frames_replacement_keeps(tiny):
    """With replacement overwriting the key frames after every step, TITAN's padded guess (the reward's own frames)
    would be a silent no-op; its step goes to the free frames instead, and changes them."""
    from pipelines.guidance import make_guidance

    pipe = tiny.pipe
    first, last = _img((255, 0, 0), (16, 16)), _img((0, 0, 255), (16, 16))
    setup = build_task(tiny, "interpolate", TaskInputs(prompt="a red circle", first_frame=first, last_frame=last,
                                                        interpolation_mode="both"), 6, 16, 16)

    def run(guidance):
        events = list(pipe.stream("a red circle", num_frames=6, height=16, width=16, num_inference_steps=4,
                                  generator=torch.Generator().manual_seed(0), hooks=setup.hooks, reward=setup.reward,
                                  guidance=guidance))
        return events[-1].frames

    plain = run(None)
    guided = run(make_guidance("titan", step_size=1.0, update="noise"))
    assert torch.allclose(plain[[0, 5]], guided[[0, 5]], atol=1e-5)  # the keys stay exact
    assert (guided[1:5] - plain[1:5]).abs().max() > 1e-3  # the free frames moved


def test_presets_are_loaded_once_and_unknown_names_fail():
    assert load_preset("tiny", device="cpu") is load_preset("tiny", device="cpu")
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("sdxl")


def test_t2v_reward_choices(tiny, monkeypatch):
    from rewards.ensemble import EnsembleReward
    from rewards.lvlm import LVLMJudge

    monkeypatch.delenv("GVS_LVLM_URL", raising=False)
    monkeypatch.delenv("GVS_LVLM_LOCAL_MODEL", raising=False)
    with pytest.raises(ValueError, match="GVS_LVLM_URL"):
        build_task(tiny, "t2v", TaskInputs(prompt="a red circle", t2v_reward="lvlm"), 8, 16, 16)
    with pytest.raises(ValueError, match="t2v_reward"):
        build_task(tiny, "t2v", TaskInputs(prompt="a red circle", t2v_reward="vibes"), 8, 16, 16)
    monkeypatch.setenv("GVS_LVLM_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GVS_LVLM_MODEL", "judge")
    judge = build_task(tiny, "t2v", TaskInputs(prompt="a red circle", t2v_reward="lvlm"), 8, 16, 16).reward
    assert isinstance(judge, LVLMJudge) and not judge.differentiable
    ens = build_task(tiny, "t2v", TaskInputs(prompt="a red circle", t2v_reward="clip+lvlm borda"), 8, 16, 16).reward
    assert isinstance(ens, EnsembleReward) and not ens.differentiable
    # a gradient method cannot use a black-box judge: the pipeline says so before sampling
    from pipelines.guidance import make_guidance

    with pytest.raises(ValueError, match="free2guide"):
        list(tiny.pipe.stream("a red circle", num_frames=4, height=16, width=16, num_inference_steps=2,
                              guidance=make_guidance("titan"), reward=judge))
