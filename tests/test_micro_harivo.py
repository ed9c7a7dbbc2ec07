"""The `micro-harivo` preset (issue #18): the micro image model with HARIVO-trained video parts, shipped from a
training run by `pipelines.training.ship`. A 2-step micro run made here stands in for `assets/micro-harivo/`
(`GVS_MICRO_HARIVO_DIR` points the preset at it)."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not (ROOT / "assets" / "micro" / "model_index.json").exists(),
                                reason="needs the micro weights (assets/micro)")

PROMPT = "a red circle moving left to right on a black background"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(run folder, shipped folder, ship record): 2 steps of the micro config, shipped with the dtype check."""
    from pipelines.training import load_config
    from pipelines.training.loop import train
    from pipelines.training.ship import ship

    root = tmp_path_factory.mktemp("micro-harivo")
    cfg = load_config("micro", {"out": str(root / "run"), "steps": 2, "threads": 1, "ckpt_every": 2,
                                "batch_size": 2, "queue_size": 8})
    assert train(cfg, quiet=True)["final"] == str(root / "run" / "final")
    record = ship(root / "run", root / "micro-harivo", steps=4, log=lambda s: None)
    return root / "run", root / "micro-harivo", record


@pytest.fixture
def harivo_env(shipped, monkeypatch):
    monkeypatch.setenv("GVS_MICRO_HARIVO_DIR", str(shipped[1]))
    return shipped[1]


def test_ship_copies_only_what_loading_needs_in_fp16(shipped):
    from pipelines.training.ship import TOLERANCE

    run, dest, record = shipped
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["frame_tokens/config.json", "frame_tokens/diffusion_pytorch_model.safetensors", "harivo.json",
                     "mapping/config.json", "mapping/diffusion_pytorch_model.safetensors",
                     "motion_adapter/config.json", "motion_adapter/diffusion_pytorch_model.safetensors", "ship.json"]
    assert record["dtype"] == "fp16" and record["max_pixel_difference"] <= TOLERANCE
    assert json.loads((dest / "ship.json").read_text())["dtype"] == "fp16"
    size = sum(p.stat().st_size for p in dest.rglob("*.safetensors"))
    full = sum(p.stat().st_size for p in (run / "final").rglob("*.safetensors"))
    assert size < 0.55 * full  # half the fp32 bytes


def test_ship_refuses_a_folder_without_parts_and_an_existing_destination(shipped, tmp_path, capsys):
    from pipelines.training.ship import main

    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no motion_adapter/config.json" in capsys.readouterr().err
    assert main([str(shipped[0]), str(shipped[1])]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err


def test_load_preset_micro_harivo_puts_the_trained_parts_under_the_micro_image_model(harivo_env):
    from pipelines.frame_tokens import HarivoFrameTokens
    from pipelines.presets import PRESET_DEFAULTS, PRESETS, is_micro_world, load_preset

    preset = load_preset("micro-harivo", device="cpu")
    micro = load_preset("micro", device="cpu")
    assert preset.name == "micro-harivo" and str(harivo_env) in preset.reason
    assert isinstance(preset.pipe.frame_tokens, HarivoFrameTokens)
    assert isinstance(micro.pipe.frame_tokens, HarivoFrameTokens)  # one generator class for both presets ...
    assert preset.pipe.frame_tokens is not micro.pipe.frame_tokens  # ... trained separately; micro's untouched
    assert preset.pipe.unet is not micro.pipe.unet and preset.pipe.vae is micro.pipe.vae  # shared companions
    assert preset.pipe.unet.dtype == torch.float32  # fp16 files, loaded at the image model's dtype
    assert hasattr(preset.pipe.unet, "_harivo_mapping")
    assert (preset.fps, preset.default_frames, preset.default_steps, preset.clip) == \
        (micro.fps, micro.default_frames, micro.default_steps, micro.clip)
    assert PRESET_DEFAULTS["micro-harivo"] == PRESET_DEFAULTS["micro"] and "micro-harivo" in PRESETS
    assert is_micro_world("micro-harivo") and not is_micro_world("tiny")
    assert load_preset("micro-harivo", device="cpu") is preset  # cached


def _generate(tmp_path, preset, name):
    from pipelines.cli import main

    out, rep = tmp_path / f"{name}.mp4", tmp_path / f"{name}.json"
    rc = main(["generate", "--preset", preset, "--task", "t2v", "--prompt", PROMPT, "--method", "none", "--steps",
               "4", "--frames", "8", "--seed", "1", "--device", "cpu", "--quiet", "--out", str(out),
               "--report", str(rep)])
    return rc, out, rep


def test_cli_generates_an_8_frame_video_that_differs_from_micro(harivo_env, tmp_path, capsys):
    import imageio.v3 as iio

    rc, out, rep = _generate(tmp_path, "micro-harivo", "harivo")
    assert rc == 0, capsys.readouterr().err
    report = json.loads(rep.read_text())
    assert (report["preset"], report["frames"]) == ("micro-harivo", 8)
    rc, plain, _ = _generate(tmp_path, "micro", "micro")
    assert rc == 0
    a, b = iio.imread(out).astype(float), iio.imread(plain).astype(float)
    assert a.shape[0] == b.shape[0] == 8
    assert abs(a - b).mean() > 1.0  # other temporal layers and frame tokens: another video


def test_a_missing_folder_is_a_clear_error(monkeypatch, tmp_path, capsys):
    from pipelines.presets import load_preset

    missing = tmp_path / "no-parts-here"
    monkeypatch.setenv("GVS_MICRO_HARIVO_DIR", str(missing))
    with pytest.raises(ValueError, match="no-parts-here does not exist.*python -m pipelines.training.ship"):
        load_preset("micro-harivo", device="cpu")
    rc, out, rep = _generate(tmp_path, "micro-harivo", "x")
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists() and not rep.exists()
    assert err.startswith("error: --preset: micro-harivo:") and str(missing) in err and err.count("\n") == 1
    import app

    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # app.main leaves the threads as they are
    assert app.main(["--preset", "micro-harivo", "--device", "cpu"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_auto_and_the_app_arguments(monkeypatch):
    import app
    from pipelines.presets import choose_auto

    monkeypatch.delenv("GVS_PRESET", raising=False)
    assert app.parse_args(["--preset", "micro-harivo"]).preset == "micro-harivo"
    with pytest.raises(SystemExit):
        app.parse_args(["--preset", "nope"])
    assert choose_auto(0)[0] == "micro"  # auto keeps choosing micro (the default is decided on measurements)


def test_micro_model_evaluation_and_the_suites_take_the_preset(harivo_env, tmp_path):
    from pipelines.cli import main as cli
    from pipelines.evaluation.grid import grid
    from pipelines.evaluation.micro_model import main

    out = tmp_path / "eval.json"
    threads = torch.get_num_threads()
    try:
        assert main(["--preset", "micro-harivo", "--steps", "2", "--seeds", "1", "--seen", "1", "--threads", "1",
                     "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    assert res["model"] == "micro-harivo" and res["summary"]["held-out"]["videos"] == 9
    assert main(["--preset", "tiny"]) == 2
    ev = tmp_path / "ev"
    assert cli(["evaluate", "--suite", "t2v-hard", "--preset", "micro-harivo", "--methods", "none", "--seeds", "1",
                "--cases", "1", "--device", "cpu", "--out", str(ev)]) == 0
    rows = [json.loads(x) for x in (ev / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["preset"] == "micro-harivo" and "content" in rows[0]["metrics"]
    # its cells are its own: a micro run in the same folder would not be taken as done
    micro_keys = {c.key for c in grid(["t2v-hard"], ["none"], [0], rows[0]["eta"], rows[0]["steps"], 8, 1)}
    assert rows[0]["key"] not in micro_keys


def test_the_ablation_scores_a_shipped_preset_as_a_reference_row(harivo_env):
    from pipelines.training.ablation import REFERENCE_NAME, _reference_pipe, main, reference_rows

    assert reference_rows(True) == [(-1, REFERENCE_NAME, None, "micro")]  # the old flag: the micro row as before
    rows = reference_rows(["micro", "micro-harivo", "micro"])
    assert [r[3] for r in rows] == ["micro", "micro-harivo"] and "micro-harivo" in rows[1][1]
    assert _reference_pipe("micro-harivo").frame_tokens is not None
    with pytest.raises(ValueError, match="micro-world"):
        _reference_pipe("tiny")
    assert main(["--references-only"]) == 2  # nothing to score
