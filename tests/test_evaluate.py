"""`python -m pipelines evaluate`: exact suite metrics on clips with known answers, method specs, rows, resume,
summary, plots, and a 2-process sharded run that equals the 1-process run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.evaluation import cli, micro, specs
from pipelines.evaluation import grid as gr
from pipelines.micro import world

ROOT = Path(__file__).resolve().parents[1]


def _case(suite, cid):
    return next(c for c in micro.cases(suite) if c.id == cid)


# ------------------------------------------------------------------------------------------ metrics, known answers
def test_style_metric_reads_the_background_class():
    case = _case("style", "striped-0")
    striped, _ = world.render_clip("red", "square", "moving up", "striped", seed=0)
    black, _ = world.render_clip("red", "square", "moving up", "black", seed=0)
    assert micro.metrics("style", case, torch.as_tensor(striped))["style_changed"] == 1.0
    assert micro.metrics("style", case, np.asarray(black))["style_changed"] == 0.0


def test_interpolation_metrics_on_straight_static_and_jumping_paths():
    case = _case("interpolate", "k0")
    (x0, y0), (x1, y1) = micro.KEY_POSITIONS[0]
    c, s = world.HELD_OUT[0][:2]
    line = [(round(x0 + (x1 - x0) * k / 7), round(y0 + (y1 - y0) * k / 7)) for k in range(8)]
    straight = micro.metrics("interpolate", case, world.render_positions(c, s, "gray", line))
    assert straight["endpoint_px"] < 0.5 and straight["monotone"] == 1.0 and straight["jerk_px"] < 1.5
    static = micro.metrics("interpolate", case, world.render_positions(c, s, "gray", [line[0]] * 8))
    assert static["endpoint_px"] == pytest.approx(np.hypot(x1 - x0, y1 - y0) / 2, abs=0.5)
    # exact endpoints but a static interior that jumps at the end: what replacement alone gave
    jump = micro.metrics("interpolate", case, world.render_positions(c, s, "gray", [line[0]] * 7 + [line[-1]]))
    assert jump["endpoint_px"] < 0.5 and jump["jerk_px"] > 2 * straight["jerk_px"]
    # monotone, but not a path: smooth reads it (the straight line is smooth), and the joint figure fails it
    assert jump["monotone"] == 1.0 and jump["smooth"] == 0.0 and straight["smooth"] == 1.0
    assert jump["max_step_px"] == pytest.approx(np.hypot(x1 - x0, y1 - y0), abs=1.0)
    assert straight["target"] == straight["joint"] == 1.0
    assert jump["fidelity"] == 1.0 and jump["target"] == jump["joint"] == 0.0
    back = micro.metrics("interpolate", case, world.render_positions(c, s, "gray", line[:4] + line[:3] + line[-1:]))
    assert back["monotone"] == 0.0


def test_audio_metric_is_exact_at_the_frame_and_penalises_extra_contacts():
    case = _case("audio", "phase1")
    assert case.target["impacts"] == [1, 5]
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(200):  # bouncing clips of every phase
        clip, meta = world.render_clip("red", "circle", "bouncing", "black", rng=rng)
        seen[tuple(meta["impact_frames"])] = micro.metrics("audio", case, clip)
    assert seen[(1, 5)]["sync_iou"] == 1.0
    assert seen[(2, 6)]["sync_iou"] == 0.0 and seen[(2, 6)]["sync_iou_1"] == 1.0  # one frame late
    # chance: a regular bounce of random phase meets the exact frames in one phase of four
    assert np.mean([m["sync_iou"] for m in seen.values()]) == pytest.approx(0.25, abs=0.01)


def test_mg_metrics_on_a_static_and_a_moving_clip():
    case = _case("mg", "m0")
    c, s, m = world.HELD_OUT[0]
    moving = np.asarray(world.render_clip(c, s, m, "black", seed=1)[0])
    static = np.repeat(moving[:1], 8, 0)
    a, b = micro.metrics("mg", case, moving), micro.metrics("mg", case, static)
    assert b["change"] == 0.0 < a["change"]
    assert a["one_object"] == 1.0 and a["colour_kept"] == 1.0 and a["accuracy"] == 1.0
    two = moving.copy()
    two[:, :, 0:4, 0:4] = np.asarray(world.COLOURS["green"], np.float32)[None, :, None, None]
    assert micro.metrics("mg", case, two)["one_object"] == 0.0


def test_cases_are_what_the_docstring_says():
    t2v = micro.cases("t2v-hard")
    assert len(t2v) == len(world.HELD_OUT) and all(c.cfg == micro.T2V_HARD_CFG for c in t2v)
    reward_only = micro.cases("t2v-reward")  # the model's prompt is empty; the reward's prompt names the target
    assert all(c.prompt == "" and world.parse_caption(c.inputs["reward_prompt"])["colour"] == c.target["colour"]
               for c in reward_only) and len(reward_only) == len(world.HELD_OUT)
    style = micro.cases("style")
    assert {c.target["background"] for c in style} == {"striped", "checkered"}
    assert all(world.parse_caption(c.prompt)["background"] in ("black", "gray") for c in style)
    interp = micro.cases("interpolate")
    assert len(interp) == 4 and {c.inputs["interpolation_mode"] for c in interp} == {"both"}
    audio = micro.cases("audio")
    assert sorted(c.target["impacts"][0] for c in audio) == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------------ method specs
def test_method_specs_split_method_and_request_settings():
    assert specs.split_specs("none,titan[update=rms,step_size=0.1],mpgd") == [
        "none", "titan[update=rms,step_size=0.1]", "mpgd"]
    name, params, req = specs.parse_spec("titan[update=rms,step_size=0.1,eta=0,mg=40,fill=tile,per_frame=true]")
    assert name == "titan"
    assert params == {"update": "rms", "step_size": 0.1, "fill": "tile", "per_frame": True}
    assert req == {"eta": 0, "mg_scale": 40}
    assert specs.parse_spec("none[mode=both]")[2] == {"interpolation_mode": "both"}
    with pytest.raises(ValueError, match="method spec"):
        specs.parse_spec("magic")
    with pytest.raises(ValueError, match="key=value"):
        specs.parse_spec("titan[fast]")


# ----------------------------------------------------------------------------------------------- runs and resume
ARGS = ["--suite", "style,audio", "--methods", "none,titan[step_size=0.5]", "--seeds", "2", "--cases", "1",
        "--steps", "3", "--threads", "1"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def test_grid_writes_rows_summary_and_plots_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert cli.main(ARGS + ["--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2  # suites × methods × seeds
    assert {r["suite"] for r in rows} == {"style", "audio"}
    assert all(r["eta"] == rows[0]["eta"] for r in rows)  # one η for every method, none included
    assert all("style_changed" in r["metrics"] for r in rows if r["suite"] == "style")
    assert all("sync_iou" in r["metrics"] and r["seconds"] > 0 and r["peak_memory_bytes"] > 0
               for r in rows if r["suite"] == "audio")
    md = (out / "summary.md").read_text()
    assert "### style" in md and "titan[step_size=0.5]" in md and "delta_vs_none" in md
    assert (out / "summary.csv").read_text().count("\n") == 1 + 4
    assert (out / "plots" / "style.png").stat().st_size > 1000
    # resume: nothing runs again
    monkeypatch.setattr(gr, "run_cell", lambda *a, **k: pytest.fail("a finished cell ran again"))
    assert cli.main(ARGS + ["--out", str(out)]) == 0
    assert len((out / "rows.jsonl").read_text().splitlines()) == 8
    assert "0 for process 0/1" in capsys.readouterr().err
    # --summarize rebuilds the tables from every row without running anything
    (out / "summary.md").unlink()
    assert cli.main(["--suite", "style", "--summarize", "--out", str(out)]) == 0
    assert "### audio" in (out / "summary.md").read_text()


def test_bad_suite_and_spec_are_refused(tmp_path, capsys):
    assert cli.main(["--suite", "style", "--summarize", "--out", str(tmp_path)]) == 2
    assert "no rows" in capsys.readouterr().err
    assert cli.main(["--suite", "nope", "--out", str(tmp_path)]) == 2
    assert "--suite" in capsys.readouterr().err
    assert cli.main(["--suite", "style", "--methods", "none,wizard", "--out", str(tmp_path)]) == 2
    assert "wizard" in capsys.readouterr().err
    for bad in ("titan=1", "titan.step_size", ".step_size=1"):
        assert cli.main(["--suite", "style", "--methods", "none", "--param", bad, "--out", str(tmp_path)]) == 2
        assert "--param: expected METHOD.NAME=VALUE" in capsys.readouterr().err


def test_two_process_sharded_run_equals_one_process_run(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    cmd = [sys.executable, "-m", "pipelines", "evaluate", *ARGS]
    subprocess.run(cmd + ["--out", str(one)], check=True, env=_env(), cwd=ROOT, capture_output=True, timeout=600)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                "-m", "pipelines", "evaluate", *ARGS, "--out", str(two)]
    res = subprocess.run(torchrun, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "for process 1/2" in res.stderr and "for process 0/2" in res.stderr
    assert not list(two.glob("rows.rank*.jsonl"))  # merged by process 0

    def load(p):
        return {r["key"]: r for r in map(json.loads, (p / "rows.jsonl").read_text().splitlines())}

    a, b = load(one), load(two)
    assert a.keys() == b.keys() and len(a) == 8
    for k in a:
        assert a[k]["metrics"] == b[k]["metrics"]
        assert a[k]["final_reward"] == pytest.approx(b[k]["final_reward"], rel=1e-5, abs=1e-6)


def test_per_task_defaults_reach_the_request():
    from pipelines.presets import load_preset
    from pipelines.request import GenerationRequest, validate

    preset = load_preset("micro", device="cpu")
    t2v = validate(GenerationRequest(task="t2v", prompt="a red circle moving up on a black background",
                                     method="titan"), preset)
    style = validate(GenerationRequest(task="style", prompt="a red circle moving up on a black background",
                                       method="titan", style_image=micro.reference_image("striped")), preset)
    assert t2v.params["step_size"] == 0.1 and style.params["step_size"] == 5.0
    own = validate(GenerationRequest(task="t2v", prompt="a red circle moving up on a black background",
                                     method="titan", params={"step_size": 2.5}), preset)
    assert own.params["step_size"] == 2.5  # the user's value wins
    audio = validate(GenerationRequest(task="audio", prompt="a red circle bouncing on a black background",
                                       method="free2guide", **micro.cases("audio")[0].inputs), preset)
    f2g_t2v = validate(GenerationRequest(task="t2v", prompt="a red circle moving up on a black background",
                                         method="free2guide"), preset)
    assert audio.params["guided_fraction"] == 0.5 and f2g_t2v.params["guided_fraction"] == 1.0


def test_reward_only_suite_runs_the_model_unconditioned_and_scores_the_caption():
    from pipelines.presets import load_preset

    preset = load_preset("micro")
    case = micro.cases("t2v-reward")[0]
    cell = gr.Cell("t2v-reward", case, "none", 0, 1.0, 2, 8)
    row = gr.run_cell(cell, preset)
    assert set(row["metrics"]) >= {"colour", "shape", "motion", "accuracy"}
    # the reward scored the caption, not the empty prompt the model saw
    from pipelines.request import Generation, GenerationRequest, validate

    g = Generation(validate(GenerationRequest(task="t2v", prompt="", method="none", steps=2, seed=0,
                                              **case.inputs), preset), preset, preview_every=0)
    assert g.prepared.setup.reward.prompt == case.inputs["reward_prompt"] and g.prepared.request.prompt == ""


def test_agreeing_key_frames_are_paths_the_world_draws_and_the_prompt_names():
    cs = micro.cases("interpolate-agree")
    assert len(cs) == 4
    for case, ((p0, p1), motion) in zip(cs, micro.AGREE_KEYS):
        assert world.parse_caption(case.prompt)["motion"] == motion
        paths, _ = world.enumerate_trajectories(motion)
        assert any(tuple(p[0]) == p0 and tuple(p[-1]) == p1 for p in paths)
    # the metric reads a rendered clip of that very path as on its keys, smooth and monotone
    (p0, p1), motion = micro.AGREE_KEYS[0]
    xs = np.linspace(p0[0], p1[0], 8).round().astype(int)
    cap = world.parse_caption(cs[0].prompt)
    clip = world.render_positions(cap["colour"], cap["shape"], "gray", [(int(x), p0[1]) for x in xs])
    m = micro.metrics("interpolate-agree", cs[0], torch.as_tensor(clip))
    assert m["endpoint_px"] < 0.5 and m["monotone"] == 1.0 and m["jerk_px"] < 1.0
    assert m["smooth"] == m["target"] == m["joint"] == 1.0


@pytest.mark.parametrize("suite", ["interpolate-agree", "interpolate"])
def test_the_interpolation_joint_fails_a_path_that_holds_still_then_jumps_or_drags_a_halo(suite):
    """The joint figure judges the path: ends on the keys, one clean object in every frame and monotone is not
    enough when the object holds still and jumps (smooth), or carries a glow of another colour (halo)."""
    case = micro.cases(suite)[0]
    cap = world.parse_caption(case.prompt)
    p0, p1 = (micro.AGREE_KEYS[0][0] if suite == "interpolate-agree" else micro.KEY_POSITIONS[0])
    glide = [(round(p0[0] + (p1[0] - p0[0]) * k / 7), round(p0[1] + (p1[1] - p0[1]) * k / 7)) for k in range(8)]
    render = lambda path: world.render_positions(cap["colour"], cap["shape"], "gray", path)  # noqa: E731
    good = micro.metrics(suite, case, render(glide))
    assert good["joint"] == 1.0 and good["smooth"] == 1.0 and good["halo_px"] == 0.0
    # holds at the first key for 4 frames, then jumps to the glide's frame 4; holds for 6, then jumps to the last key
    for path in ([glide[0]] * 4 + glide[4:], [glide[0]] * 6 + [glide[-1]] * 2):
        m = micro.metrics(suite, case, render(path))
        assert m["ends_max_px"] < 0.5 and m["fidelity"] == 1.0
        assert m["monotone"] == 1.0 and m["smooth"] == 0.0 and m["joint"] == 0.0, m["max_step_px"]
    from tests.test_readers import _halo

    halo = micro.metrics(suite, case, _halo(render(glide), range(2, 6), "yellow" if cap["colour"] != "yellow"
                                             else "blue"))
    assert halo["smooth"] == 1.0 and halo["ends_max_px"] < 0.5 and halo["residual"] <= 0.05
    assert halo["clean"] == 0.0 and halo["joint"] == 0.0


def test_process_shares_stay_disjoint_and_complete_when_one_process_starts_late():
    cells = gr.grid(["style"], ["none", "titan"], [0, 1], 1.0, 3, 8, max_cases=1)
    first = gr.shard(cells, set(), process_index=0, num_processes=2)
    # process 1 starts after process 0 has written all its rows: it still runs exactly the other half
    late = gr.shard(cells, {c.key for c in first}, process_index=1, num_processes=2)
    assert {c.key for c in first} | {c.key for c in late} == {c.key for c in cells}
    assert not {c.key for c in first} & {c.key for c in late}
    # resume: finished cells are skipped
    assert gr.shard(cells, {cells[0].key}, process_index=0, num_processes=1) == cells[1:]


def test_each_tabs_example_is_a_case_of_its_suite_and_the_grid_selects_it_by_id(examples_dir):
    from pipelines.studio.examples import example_rows

    for task, suite in micro.EXAMPLE_SUITES.items():
        cs = micro.example_cases(task)
        assert len(cs) == len(example_rows(task)) >= 1 and cs[0].id == "example"
        assert micro.suite_cases(suite, 8, "example") == cs[:1]
        cells = gr.grid([suite], ["none"], [0, 1], 1.0, 3, 8, max_cases="example")
        assert [c.case.id for c in cells] == ["example"] * 2
    interp = micro.example_cases("interpolate")[0]
    first = world.parse_caption(interp.prompt)
    assert first["motion"] == "moving left to right" and interp.target["last"][0] - interp.target["first"][0] > 15
    audio = micro.example_cases("audio")[0]
    assert audio.target["impacts"] == [2, 6]  # the thumps of impacts.wav at 0.5 s and 1.5 s, 4 fps
    # a style reference that is not one of the world's patterns is no case of the style suite
    row = ["a white square moving up on a black background", str(examples_dir / "style_stripes.png"), "titan", 0, 0]
    with pytest.raises(ValueError, match="not one of the world's patterns"):
        micro.example_cases("style", rows=[row])
    assert micro.reference_pattern(examples_dir / "style_world_checkered.png") == "checkered"
    with pytest.raises(ValueError, match="--cases: 'k9' is not a case of the interpolate suite"):
        micro.suite_cases("interpolate", 8, "k0,k9")
    assert [c.id for c in micro.suite_cases("interpolate", 8, 2)] == ["k0", "k1"]
