"""`python -m pipelines generate|bench` (DESIGN.md contracts 3 and 5)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from pipelines import media

from .conftest import ROOT, test_preset_name

PROMPT = "a green circle bouncing on a black background"


def _cli(*args, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pipelines", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL)


def test_generate_audio_task(tmp_path, examples_dir):
    out, rep = tmp_path / "out.mp4", tmp_path / "report.json"
    r = _cli("generate", "--preset", test_preset_name(), "--task", "audio", "--prompt", PROMPT,
             "--audio", examples_dir / "impacts_long.wav", "--method", "none", "--mg-scale", "40", "--steps", 2,
             "--seed", 5, "--out", out, "--report", rep)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(rep.read_text())
    for k in ("method", "task", "preset", "device", "seconds", "peak_memory_bytes", "reward_per_step",
              "final_reward", "frames", "fps"):
        assert k in data
    assert data["task"] == "audio" and data["method"] == "none" and data["seed"] == 5
    assert data["mg_scale"] == 40 and len(data["reward_per_step"]) == 2
    assert any("longer than" in n for n in data["notices"])
    assert media.count_frames(out) == data["frames"]
    assert "Audio: aac" in media.probe(out)
    assert "step 2/2" in r.stderr


@pytest.mark.parametrize("args,flag", [
    (["--task", "style", "--method", "none"], "--style-image"),
    (["--task", "t2v", "--method", "magic"], "--method"),
    (["--task", "t2v", "--method", "titan", "--param", "bogus=1"], "--param bogus"),
    (["--task", "audio", "--method", "none", "--audio", "missing.wav"], "--audio"),
    (["--task", "t2v", "--method", "none", "--steps", "0"], "--steps"),
    (["--task", "t2v", "--method", "none", "--frames", "7"], "--frames"),
    (["--task", "interpolate", "--method", "none", "--first-frame", "assets/examples/first_frame.png"], "--last-frame"),
    (["--task", "audio", "--method", "none", "--audio", "assets/examples/impacts.wav", "--reward-prompt", "a red circle"],
     "--reward-prompt"),
])
def test_bad_input_exit_2(tmp_path, args, flag):
    out, rep = tmp_path / "o.mp4", tmp_path / "o.json"
    r = _cli("generate", "--preset", test_preset_name(), "--prompt", PROMPT, *args, "--steps", 2,
             "--out", out, "--report", rep) if "--steps" not in args else _cli(
        "generate", "--preset", test_preset_name(), "--prompt", PROMPT, *args, "--out", out, "--report", rep)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and flag in err_lines[0], r.stderr[-2000:]
    assert not out.exists() and not rep.exists()
    assert list(tmp_path.iterdir()) == []


def test_empty_prompt_exit_2(tmp_path):
    r = _cli("generate", "--preset", test_preset_name(), "--task", "t2v", "--prompt", "", "--method", "none",
             "--out", tmp_path / "o.mp4", "--report", tmp_path / "o.json")
    assert r.returncode == 2 and "--prompt" in r.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_reward_prompt_with_an_empty_prompt(tmp_path):
    rep = tmp_path / "o.json"
    r = _cli("generate", "--preset", test_preset_name(), "--task", "t2v", "--prompt", "", "--reward-prompt", PROMPT,
             "--method", "titan", "--steps", 2, "--out", tmp_path / "o.mp4", "--report", rep)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(rep.read_text())
    assert data["prompt"] == "" and data["reward_prompt"] == PROMPT
    tr = data["trust_region"]  # TITAN's steps go through the trust region: the report counts the capped ones
    assert tr["bounded"] >= 1 and 0 <= tr["capped"] <= tr["bounded"]


def test_generate_without_method_runs_the_tasks_default(tmp_path):
    """The CLI reads the app's table of task defaults: no --method runs the method the tab opens on."""
    from pipelines.presets import task_default_method

    rep = tmp_path / "o.json"
    r = _cli("generate", "--preset", test_preset_name(), "--task", "t2v", "--prompt", PROMPT, "--steps", 2,
             "--out", tmp_path / "o.mp4", "--report", rep)
    assert r.returncode == 0, r.stderr[-2000:]
    expected = task_default_method("t2v")[0]
    assert expected != "none"
    assert json.loads(rep.read_text())["method"] == expected
    assert f"method: {expected} (the t2v task's default" in r.stderr


@pytest.mark.skipif(importlib.util.find_spec("pipelines.bench") is None, reason="pipelines.bench not available")
def test_bench_prints_json_lines():
    size = "4x16" if test_preset_name() == "tiny" else "8x32"
    r = _cli("bench", "--preset", test_preset_name(), "--methods", "none", "--sizes", size, "--steps", 2)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip().startswith("{")]
    assert rows and all("seconds" in row and "peak_memory_bytes" in row for row in rows)


def test_bench_takes_method_parameters():
    size = "4x16" if test_preset_name() == "tiny" else "8x32"
    r = _cli("bench", "--preset", test_preset_name(), "--methods", "titan", "--sizes", size, "--steps", 2,
             "--param", "titan.objective_subset=true", "--param", "titan.step_size=2")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip().startswith("{")]
    assert rows and rows[0]["params"] == {"objective_subset": True, "step_size": 2.0}
    for bad, says in (("titan.step_size=abc", "--param titan.step_size"), ("titan.nope=1", "nope"),
                      ("titan=1", "METHOD.NAME=VALUE"), ("wizard.x=1", "wizard")):
        r = _cli("bench", "--preset", test_preset_name(), "--methods", "titan", "--sizes", size, "--steps", 2,
                 "--param", bad)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (bad, r.stderr[-800:])


def test_preset_help_lists_every_accepted_preset():
    """`--preset` help of generate and evaluate names every preset `load_preset` accepts (built from PRESET_NOTES)."""
    import re

    from pipelines.cli import build_parser
    from pipelines.presets import PRESETS, load_preset

    with pytest.raises(ValueError) as e:  # load_preset accepts exactly PRESETS: its error lists them
        load_preset("no-such-preset")
    assert re.search(r"choose one of (.*)$", str(e.value)).group(1).split(", ") == list(PRESETS)
    assert {"micro", "animatediff", "animatediff-lean", "animatediff-lcm", "sd15-random", "tiny", "auto"} <= set(PRESETS)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in ("generate", "evaluate"):
        parser = sub.choices[command]
        (action,) = [a for a in parser._actions if "--preset" in a.option_strings]
        names = set(re.findall(r"(?:^|; )([a-z0-9-]+):", action.help))
        assert names == set(PRESETS), (command, action.help)
        assert f"(default: {action.default})" in action.help
        flat = re.sub(r"\s+", "", parser.format_help())  # argparse wraps lines (also at hyphens)
        for name in PRESETS:
            assert f"{name}:" in flat, (command, name)
