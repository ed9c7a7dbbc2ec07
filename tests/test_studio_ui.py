"""The app's pieces without a server: status lines, ranges of sliders against validation, tab defaults, reports,
the micro prompt notice, the preview grid, history, torch threads."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipelines import media
from pipelines.request import (
    CFG_RANGE, ETA_RANGE, MG_RANGE, STEPS_RANGE, GenerationRequest, RequestError, build_report, check_step_range,
    run, validate,
)
from pipelines.ui import (
    PLOT_COLOR, PLOT_SERIES, PLOT_X, PLOT_Y, StatusTracker, add_history, configure_torch_threads, empty_plot_data,
    raw_path, reward_plot_data, series_name, settings_from_report,
)

PROMPT = "a red circle moving left to right on a black background"


def _ev(index, total, phase="sample", reward=None, seconds=0.0):
    return SimpleNamespace(index=index, total=total, phase=phase, reward=reward, seconds=seconds)


def test_status_has_phases_eta_and_cancel():
    t = StatusTracker()
    assert "optimising x_T 1/3" in t.update(_ev(1, 3, "optimize", seconds=2.0))
    s = t.update(_ev(2, 3, "optimize", seconds=4.0))
    assert "optimising x_T 2/3" in s and "≈ 2 s left in the optimisation" in s
    s = t.update(_ev(0, 20, "sample", reward=0.248973, seconds=4.5))
    assert "sampling 1/20" in s and "reward 0.249" in s and "≈ 10 s left" in s  # 0.5 s/step x 19
    t.update(_ev(4, 20, seconds=6.5))
    assert t.cancelled().startswith("cancelled at step 5/20")
    assert StatusTracker().cancelled() == "cancelled before the first step"


def test_app_sliders_match_validation(preset):
    import app

    demo = app.build_demo(preset, cache_examples="off")
    ranges = {"steps": STEPS_RANGE, "cfg": CFG_RANGE, "mg_scale": MG_RANGE, "eta": ETA_RANGE}
    seen = {}
    for block in demo.blocks.values():
        field = getattr(block, "field", None)
        if field in ranges:
            seen[field] = (block.minimum, block.maximum)
            assert (block.minimum, block.maximum) == tuple(ranges[field]), field
        if field in ("param start_step", "param end_step"):  # bounded by the preset's default steps
            lo, hi = block.minimum, block.maximum
            name = field.split()[1]
            check_step_range({name: int(lo)}, preset.default_steps)
            check_step_range({name: int(hi)}, preset.default_steps)
            with pytest.raises(RequestError, match=name):
                check_step_range({name: int(hi) + 1}, preset.default_steps)
    assert set(seen) == set(ranges)
    for name, (lo, hi) in ranges.items():  # the request layer takes the slider's ends and refuses beyond them
        kw = {"steps": 1} if name != "steps" else {}
        validate(GenerationRequest(prompt=PROMPT, **{**kw, name: hi}), preset)
        with pytest.raises(RequestError, match=name):
            validate(GenerationRequest(prompt=PROMPT, **{**kw, name: hi + 1}), preset)


def test_tabs_open_on_a_method_that_does_something():
    from pipelines.guidance import METHODS
    from pipelines.presets import TASK_DEFAULT_METHODS
    from pipelines.request import TASK_NAMES

    assert set(TASK_DEFAULT_METHODS) == set(TASK_NAMES)
    for task, (method, reason) in TASK_DEFAULT_METHODS.items():
        assert method in METHODS
        if task in ("style", "audio"):
            assert method != "none", task  # an upload must do something
        cited = re.search(r"bench/[A-Za-z_]+\.md", reason)  # the table the choice comes from, which exists
        assert cited and (Path(__file__).resolve().parents[1] / cited.group(0)).is_file(), reason


def test_report_has_no_empty_entries_and_a_boolean_cfg_schedule(preset):
    prep = validate(GenerationRequest(prompt=PROMPT, steps=2, frames=8, cfg_schedule=False), preset)
    gen = run(prep, preset)
    for _ in gen:
        pass
    rep = build_report(gen)
    assert rep["cfg_schedule"] is False
    assert "rewards_per_step" not in rep  # `none` has no per-step diagnostics: no list of empty {}
    assert "interpolation_mode" not in rep and rep["t2v_reward"] == "clip"
    json.dumps(rep)


def test_micro_prompt_notice_names_the_world():
    from pipelines.micro.world import caption_notice

    assert caption_notice(PROMPT) is None
    note = caption_notice("a cat playing piano")
    for word in ("cat", "piano", "red", "triangle", "bouncing", "striped"):
        assert word in note


def test_step_range_bounded_by_steps():
    check_step_range({"start_step": 19, "end_step": -20}, 20)
    with pytest.raises(RequestError, match="start_step"):
        check_step_range({"start_step": 20}, 20)
    with pytest.raises(RequestError, match="end_step"):
        check_step_range({"end_step": -21}, 20)


@pytest.mark.parametrize("side,tile", [(32, 128), (512, 128)])
def test_preview_grid_is_readable_at_any_size(side, tile):
    frames = np.random.default_rng(0).random((8, 3, side, side)).astype(np.float32)
    img = media.preview_grid(frames, tile=tile, cols=4)
    assert img.size == (4 * tile + 3 * 4, 2 * tile + 4)


def test_reward_plot_data_rows_per_series_and_step():
    data = reward_plot_data({"unguided": [0.25, None, 0.4], "guided": [0.3, 0.5]})
    assert list(data.columns) == [PLOT_X, PLOT_Y, PLOT_COLOR]
    assert data.values.tolist() == [[1, 0.25, "unguided"], [3, 0.4, "unguided"], [1, 0.3, "guided"],
                                    [2, 0.5, "guided"]]  # None skipped, steps counted from 1
    assert str(data[PLOT_X].dtype) == "int64"  # integer steps on the axis


def test_every_plot_value_names_both_series():
    """The page fixes the chart's colours from the series in the value it draws the chart with (first value,
    resize, tab shown again): every value names every series a run can draw, with NaN rewards where it has none."""
    for data in (empty_plot_data(), reward_plot_data({"guided": [0.3, 0.5]}), reward_plot_data({})):
        assert set(data[PLOT_COLOR]) == set(PLOT_SERIES)
    one = reward_plot_data({"guided": [0.3, 0.5]})
    assert one[one[PLOT_COLOR] == "unguided"][PLOT_Y].isna().all()
    assert one[one[PLOT_COLOR] == "guided"][PLOT_Y].tolist() == [0.3, 0.5]
    assert {series_name(m) for m in ("none", "titan", "free2guide", "doodl")} == set(PLOT_SERIES)


def test_a_cached_plot_loads_back_as_plot_data(tmp_path):
    """Gradio reads a cached example's plot back as JSON text, which the page cannot draw; ours gives plot data."""
    from gradio.components.native_plot import PlotData

    from pipelines.studio.widgets import LinePlot

    plot = LinePlot(x=PLOT_X, y=PLOT_Y, color=PLOT_COLOR)
    saved = plot.flag(plot.postprocess(reward_plot_data({"guided": [0.25, 0.5]})), str(tmp_path))
    back = plot.read_from_flag(saved)
    assert isinstance(back, PlotData) and back.data == [[1, 0.25, "guided"], [2, 0.5, "guided"], [1, None, "unguided"]]

def test_history_keeps_last_runs_and_reloads_settings(tmp_path):
    hist = []
    for i in range(10):
        rep = {"method": "titan", "seed": i, "steps": 20, "prompt": PROMPT, "params": {"scale": 1.5},
               "reward_after": 0.5, "eta": 1.0, "cfg_schedule": False, "frames": 8}
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps(rep))
        hist = add_history(hist, path, None, tmp_path / "x.png", limit=8)
    assert len(hist) == 8 and "seed 9" in hist[0]["caption"]
    s = settings_from_report(json.loads((tmp_path / "r9.json").read_text()))
    assert s["seed"] == 9 and s["titan__scale"] == 1.5 and s["cfg_schedule"] is False


def test_raw_path_reads_every_raw_component_value():
    assert raw_path("/tmp/a.json") == "/tmp/a.json"
    assert raw_path({"path": "/tmp/g/image.png", "url": "http://x/file=/tmp/g/image.png"}) == "/tmp/g/image.png"
    assert raw_path({"video": {"path": "/tmp/g/v.mp4"}, "subtitles": None}) == "/tmp/g/v.mp4"
    # what the page sent for the preview after a Cancel (the run skipped that output): no file, not an error
    assert raw_path({"__type__": "update", "url": "http://x/gradio_api/file=/tmp/g/image.png"}) is None
    assert raw_path(None) is None and raw_path("") is None and raw_path({"path": None}) is None


def test_torch_threads_follow_the_cores(monkeypatch):
    import os

    import torch

    n = torch.get_num_threads()
    try:
        got, why = configure_torch_threads(env={})
        assert got == len(os.sched_getaffinity(0)) and "cores" in why
        got, why = configure_torch_threads(env={"OMP_NUM_THREADS": "1"})
        assert "OMP_NUM_THREADS" in why
    finally:
        torch.set_num_threads(n)


def test_history_reload_sets_or_clears_the_reward_prompt():
    base = {"task": "t2v", "prompt": "", "method": "titan", "params": {}}
    assert settings_from_report({**base, "reward_prompt": PROMPT})["reward_prompt"] == PROMPT
    assert settings_from_report(base)["reward_prompt"] == ""  # a run without one clears a stale value
    assert "reward_prompt" not in settings_from_report({**base, "task": "style"})
