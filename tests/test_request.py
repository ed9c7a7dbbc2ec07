"""The request + validation layer shared by the CLI and the app (pipelines/request/)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipelines import media
from pipelines.request import (
    MAX_PROMPT_CHARS, GenerationRequest, RequestError, finalize, parse_param_strings, resolve_params, run,
    summary_text, validate,
)

PROMPT = "a red circle moving left to right on a black background"


def _req(**kw):
    base = dict(task="t2v", prompt=PROMPT, method="none", steps=2)
    base.update(kw)
    return GenerationRequest(**base)


def _field(preset, **kw) -> str:
    with pytest.raises(RequestError) as e:
        validate(_req(**kw), preset)
    return e.value.field


def test_defaults_resolved(preset):
    p = validate(_req(steps=None), preset)
    assert p.frames == preset.default_frames and p.size == preset.default_size
    assert p.steps == preset.default_steps and p.cfg == preset.default_cfg
    assert p.request.prompt == PROMPT and p.guidance is None


@pytest.mark.parametrize("prompt", ["", "   ", None])
def test_empty_prompt(preset, prompt):
    assert _field(preset, prompt=prompt) == "prompt"


def test_overlong_prompt(preset):
    with pytest.raises(RequestError, match=str(MAX_PROMPT_CHARS)) as e:
        validate(_req(prompt="a " * 400), preset)
    assert e.value.field == "prompt"
    assert _field(preset, negative_prompt="x" * (MAX_PROMPT_CHARS + 1)) == "negative_prompt"


def test_long_prompt_truncation_notice(preset):
    words = " ".join(["red"] * 100)  # < 500 chars, > any tokenizer length here
    p = validate(_req(prompt=words), preset)
    assert any("tokenizer keeps only the first" in n for n in p.notices)


@pytest.mark.parametrize("kw,field", [
    ({"frames": 7}, "frames"), ({"size": 33}, "size"), ({"steps": 0}, "steps"), ({"steps": 10_000}, "steps"),
    ({"steps": "many"}, "steps"), ({"cfg": -1}, "cfg"), ({"cfg": float("nan")}, "cfg"), ({"mg_scale": -5}, "mg_scale"),
    ({"seed": -7}, "seed"), ({"seed": 2.5}, "seed"), ({"method": "magic"}, "method"), ({"task": "t2a"}, "task"),
    ({"interpolation_mode": "x"}, "interpolation_mode"),
])
def test_out_of_range_numbers(preset, kw, field):
    assert _field(preset, **kw) == field


def test_method_params(preset):
    defaults = resolve_params("titan", {})
    assert defaults and all(v is not None for v in defaults.values())
    with pytest.raises(RequestError) as e:
        resolve_params("titan", {"bogus": 1})
    assert e.value.field == "param bogus"
    from pipelines.guidance import method_params

    spec = next(s for s in method_params("titan") if s.kind in ("float", "int") and s.max is not None)
    with pytest.raises(RequestError) as e:
        resolve_params("titan", {spec.name: spec.max + 1000})
    assert e.value.field == f"param {spec.name}"
    assert resolve_params("titan", {spec.name: str(spec.default)})[spec.name] == pytest.approx(spec.default)
    assert parse_param_strings(["a=1", "b-c = x"]) == {"a": "1", "b_c": "x"}
    with pytest.raises(RequestError):
        parse_param_strings(["novalue"])


def test_missing_uploads(preset, examples_dir):
    assert _field(preset, task="style") == "style_image"
    assert _field(preset, task="audio") == "audio"
    assert _field(preset, task="interpolate", first_frame=examples_dir / "first_frame.png") == "last_frame"
    assert _field(preset, task="interpolate", last_frame=examples_dir / "last_frame.png") == "first_frame"


def test_corrupt_and_huge_uploads(preset, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert _field(preset, task="style", style_image=bad) == "style_image"
    txt = tmp_path / "song.mp3"
    txt.write_text("not audio " * 50)
    assert _field(preset, task="audio", audio=txt) == "audio"
    huge = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000)).save(huge)
    with pytest.raises(RequestError, match="above the limit"):
        validate(_req(task="style", style_image=huge), preset)


def test_silent_audio(preset, tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(16000 * 2, np.float32), 16000)
    with pytest.raises(RequestError, match="silent") as e:
        validate(_req(task="audio", audio=p), preset)
    assert e.value.field == "audio"


def test_long_audio_cropped(preset, examples_dir):
    p = validate(_req(task="audio", audio=examples_dir / "impacts_long.wav"), preset)
    assert len(p.audio.wave) == int(round(p.frames / p.fps * 16000))
    assert any("longer than" in n for n in p.notices)


def test_key_frames_of_different_sizes_resized(preset, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (64, 48), (255, 0, 0)).save(a)
    Image.new("RGBA", (20, 20), (0, 0, 255, 128)).save(b)
    p = validate(_req(task="interpolate", first_frame=a, last_frame=b), preset)
    assert any("centre-cropped and resized" in n for n in p.notices)


def test_unused_inputs_noticed(preset, examples_dir):
    p = validate(_req(style_image=examples_dir / "style_stripes.png"), preset)
    assert any("ignored" in n for n in p.notices)


def test_run_and_finalize(preset, examples_dir, tmp_path):
    p = validate(_req(task="audio", audio=examples_dir / "impacts.wav", seed=3), preset)
    gen = run(p, preset)
    events = list(gen)
    assert sum(not e.final for e in events) == p.steps and events[-1].final
    out, rep = tmp_path / "v.mp4", tmp_path / "r.json"
    report = finalize(gen, out, rep)
    data = json.loads(rep.read_text())
    for k in ("method", "task", "preset", "device", "seconds", "peak_memory_bytes", "reward_per_step",
              "final_reward", "frames", "fps", "params", "seed"):
        assert k in data, k
    assert data == json.loads(json.dumps(report))
    assert len(data["reward_per_step"]) == p.steps and data["frames"] == p.frames and data["seed"] == 3
    assert media.count_frames(out) == p.frames
    assert "Audio:" in media.probe(out)
    assert "before" in summary_text(report)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json", "v.mp4"]  # no temp files left


def test_finalize_is_atomic(preset, tmp_path, monkeypatch):
    p = validate(_req(), preset)
    gen = run(p, preset)
    for _ in gen:
        pass

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(media, "write_mp4", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        finalize(gen, tmp_path / "v.mp4", tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_should_stop_cancels(preset):
    from pipelines.sampler import Cancelled

    p = validate(_req(steps=4), preset)
    seen = []
    gen = run(p, preset, should_stop=lambda: len(seen) >= 1)
    with pytest.raises(Cancelled):
        for ev in gen:
            seen.append(ev)
    assert len(seen) <= 2 and gen.final_event is None


# ------------------------------------------------------------------------------------------------ reward prompt
REWARD_PROMPT = "a yellow square moving up on a gray background"


def test_reward_prompt_is_what_the_t2v_reward_scores(preset):
    p = validate(_req(reward_prompt=REWARD_PROMPT), preset)
    assert p.request.prompt == PROMPT and p.request.reward_prompt == REWARD_PROMPT
    assert p.setup.reward.prompt == REWARD_PROMPT  # the model sees PROMPT, the reward scores the other text
    assert validate(_req(), preset).setup.reward.prompt == PROMPT  # default: the prompt itself


def test_empty_prompt_is_allowed_only_with_a_reward_prompt(preset):
    assert _field(preset, prompt="") == "prompt"
    p = validate(_req(prompt="", method="titan", reward_prompt=REWARD_PROMPT), preset)
    assert p.request.prompt == "" and p.setup.reward.prompt == REWARD_PROMPT
    # unguided with an empty prompt is the baseline of reward-only guidance: allowed, and said so
    p = validate(_req(prompt="", reward_prompt=REWARD_PROMPT), preset)
    assert any("unconditioned" in n for n in p.notices)


def test_reward_prompt_is_refused_outside_t2v_and_checked_like_a_prompt(preset, examples_dir):
    assert _field(preset, task="audio", audio=examples_dir / "impacts.wav", reward_prompt=REWARD_PROMPT) == \
        "reward_prompt"
    assert _field(preset, reward_prompt="x" * (MAX_PROMPT_CHARS + 1)) == "reward_prompt"
    assert validate(_req(reward_prompt="   "), preset).request.reward_prompt is None  # blank = not given


def test_unconditioned_generation_differs_from_the_conditioned_one(preset, tmp_path):
    def frames(**kw):
        gen = run(validate(_req(seed=5, **kw), preset), preset)
        list(gen)
        return gen.final_event.frames

    cond = frames()
    uncond = frames(prompt="", reward_prompt=PROMPT)
    assert not np.allclose(np.asarray(cond), np.asarray(uncond), atol=1e-3)
    gen = run(validate(_req(prompt="", reward_prompt=PROMPT, seed=5), preset), preset)
    list(gen)
    report = finalize(gen, tmp_path / "v.mp4", tmp_path / "r.json")
    assert report["prompt"] == "" and report["reward_prompt"] == PROMPT


def test_lvlm_policy_is_checked_and_reaches_the_judge(preset, monkeypatch):
    assert _field(preset, lvlm_policy="maybe") == "lvlm_policy"
    monkeypatch.setenv("GVS_LVLM_URL", "http://127.0.0.1:9/v1")  # never called: the judge is only built
    monkeypatch.setenv("GVS_LVLM_MODEL", "fake")
    monkeypatch.setenv("GVS_LVLM_POLICY", "score")
    p = validate(_req(t2v_reward="lvlm", method="free2guide", lvlm_policy="binary"), preset)
    assert p.setup.reward.policy == "binary"  # the request's policy wins over the environment


def test_a_misconfigured_judge_names_the_reward_field(preset, monkeypatch):
    monkeypatch.delenv("GVS_LVLM_URL", raising=False)
    monkeypatch.delenv("GVS_LVLM_LOCAL_MODEL", raising=False)
    assert _field(preset, t2v_reward="lvlm", method="free2guide") == "t2v_reward"
    monkeypatch.setenv("GVS_LVLM_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("GVS_LVLM_MODEL", raising=False)
    assert _field(preset, t2v_reward="lvlm", method="free2guide") == "t2v_reward"  # "lvlm: no model name"


def test_one_interpolation_mode_default_everywhere():
    """CLI, app widget (reads the same constant), API request, task inputs and the evaluation's cases share one
    default interpolation constraint: `both`."""
    from pipelines.cli import build_parser
    from pipelines.evaluation import micro
    from pipelines.request import DEFAULT_INTERPOLATION_MODE, GenerationRequest
    from pipelines.tasks import TaskInputs

    assert DEFAULT_INTERPOLATION_MODE == "both"
    args = build_parser().parse_args(["generate", "--prompt", "a", "--task", "interpolate", "--method", "none",
                                      "--out", "v.mp4", "--report", "r.json"])
    assert args.interpolation_mode == DEFAULT_INTERPOLATION_MODE
    assert GenerationRequest(prompt="a").interpolation_mode == DEFAULT_INTERPOLATION_MODE
    assert TaskInputs(prompt="a").interpolation_mode == DEFAULT_INTERPOLATION_MODE
    assert {c.inputs["interpolation_mode"] for c in micro.cases("interpolate-agree")} == {DEFAULT_INTERPOLATION_MODE}


def test_trust_region_counts_and_summary():
    """The report counts the guided steps the trust region cut down, and the summary says so."""
    from pipelines.request.reports import trust_region_counts

    steps = [{}, {"shift_ratio": 1.0, "shift_ratio_raw": 3.2}, {"shift_ratio": 0.4, "shift_ratio_raw": 0.4},
             {"shift_ratio": 0.7}]  # unguided, capped, inside, Free²Guide (no bound)
    assert trust_region_counts(steps) == {"capped": 1, "bounded": 2}
    assert trust_region_counts([{}, {"shift_ratio": 0.5}]) is None
    report = {"task": "t2v", "method": "titan", "preset": "micro", "device": "cpu", "seconds": 1.0,
              "peak_memory_bytes": 0, "frames": 8, "fps": 4, "width": 32, "height": 32, "steps": 3, "seed": 0,
              "trust_region": {"capped": 1, "bounded": 2}}
    assert "trust region capped 1/2 guided steps" in summary_text(report)
    del report["trust_region"]
    assert "trust region" not in summary_text(report)
