"""The real path on CPU: the `sd15-random` preset (the animatediff set-up: DDIM linspace, fps 8, CLIP ViT-B/16
geometry for text and style, ImageBind for audio; random weights at a small width, GVS_SD15_RANDOM_SIZE=small)
through the CLI for every task, with each tab's default method. Checks the task's real reward class, that every
reward tensor sits on the pipeline's device and dtype, that previews stream, and that the report is filled."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

EX = Path(__file__).resolve().parents[1] / "assets" / "examples"
STEPS = 3
INPUTS = {
    "t2v": [],
    "style": ["--style-image", str(EX / "style_stripes.png")],
    "audio": ["--audio", str(EX / "impacts.wav")],
    "interpolate": ["--first-frame", str(EX / "first_frame.png"), "--last-frame", str(EX / "last_frame.png")],
}
REWARD = {"t2v": "TextAlignmentReward", "style": "StyleReward", "audio": "ImageBindReward",
          "interpolate": "InterpolationReward"}


@pytest.fixture
def small_sd15(monkeypatch):
    monkeypatch.setenv("GVS_SD15_RANDOM_SIZE", "small")
    monkeypatch.delenv("IMAGEBIND_CKPT", raising=False)
    from pipelines.presets import load_preset

    return load_preset("sd15-random", device="cpu")


def test_sd15_random_has_the_animatediff_set_up(small_sd15):
    p = small_sd15
    cfg = p.pipe.scheduler.config
    assert (cfg.timestep_spacing, cfg.beta_schedule, cfg.beta_start, cfg.beta_end, cfg.steps_offset) == \
        ("linspace", "linear", 0.00085, 0.012, 1)
    assert p.fps == 8 and p.audio_reward == "imagebind" and p.imagebind is not None
    from pipelines.presets import ANIMATEDIFF_METHOD_DEFAULTS, ANIMATEDIFF_TASK_METHOD_DEFAULTS

    assert p.method_defaults == ANIMATEDIFF_METHOD_DEFAULTS and p.task_method_defaults == ANIMATEDIFF_TASK_METHOD_DEFAULTS
    assert (p.clip.image_size, p.clip.model.config.vision_config.patch_size) == (224, 16)
    assert p.imagebind.image_size == 224 and p.imagebind.audio_num_mel_bins == 128


@pytest.mark.parametrize("task", list(INPUTS))
def test_cli_real_path_every_task(task, small_sd15, tmp_path, monkeypatch, capsys):
    from pipelines import cli, tasks
    from pipelines.presets import task_default_method

    preset = small_sd15
    device, dtype = preset.reward_placement()
    built, previews = [], []
    real_build = tasks.build_task

    def spy_build(*a, **kw):
        setup = real_build(*a, **kw)
        built.append(setup)
        return setup

    monkeypatch.setattr(tasks, "build_task", spy_build)
    stream = type(preset.pipe).stream

    def spy_stream(self, *a, **kw):
        for ev in stream(self, *a, **kw):
            if not ev.final:
                previews.append(ev.preview)
            yield ev

    monkeypatch.setattr(type(preset.pipe), "stream", spy_stream)
    method = task_default_method(task)[0]
    frames = 8 if task == "audio" else 4  # the example clip's first impact comes after 0.5 s (4 frames at 8 fps)
    out, rep = tmp_path / "v.mp4", tmp_path / "r.json"
    rc = cli.main(["generate", "--preset", "sd15-random", "--device", "cpu", "--task", task, "--prompt",
                   "a red ball bouncing on a gray floor", "--method", method, "--steps", str(STEPS), "--frames", str(frames),
                   "--size", "16", "--out", str(out), "--report", str(rep), *INPUTS[task]])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "preset: sd15-random" in err and "ImageBind is unavailable" not in err
    (setup,) = built
    assert type(setup.reward).__name__ == REWARD[task]
    wrong = [(n, t.dtype, t.device) for n, t in setup.reward.placement()
             if t.is_floating_point() and (t.device != device or t.dtype != dtype)]
    assert not wrong, wrong
    assert len(previews) == STEPS and all(isinstance(p, torch.Tensor) and p.shape[0] == frames for p in previews)
    report = json.loads(rep.read_text())
    assert report["preset"] == "sd15-random" and report["task"] == task and report["method"] == method
    assert report["device"] == "cpu" and report["fps"] == 8 and report["frames"] == frames
    assert report["seconds"] > 0 and report["peak_memory_bytes"] > 0 and report["eta"] is not None
    assert len(report["reward_per_step"]) == STEPS and all(r is not None for r in report["reward_per_step"])
    assert isinstance(report["final_reward"], float)
    assert out.stat().st_size > 0
