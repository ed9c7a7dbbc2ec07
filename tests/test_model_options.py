"""Trained video parts and LoRAs a user can load (issue #18): a tiny HARIVO model trained for a few steps, then
generated with through the CLI, `evaluate`, the Python API and the app's handler; another family is refused."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from pipelines.training import load_config

PROMPT = "a red circle moving left to right on a black background"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`final/` of a 2-step run of the tiny config (the tiny preset's own image model, seed 0)."""
    from pipelines.training.loop import train

    out = tmp_path_factory.mktemp("harivo-tiny")
    cfg = load_config("tiny", {"out": str(out / "run"), "threads": 1, "steps": 2, "ckpt_every": 2,
                               "batch_size": 1, "num_frames": 4, "w_dc": 0.0})
    res = train(cfg, quiet=True)
    final = out / "run" / "final"
    assert res["final"] == str(final) and (final / "frame_tokens" / "config.json").is_file()
    return final


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    peft = pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from pipelines.testing import tiny_components

    def make(folder, **kw):
        unet = tiny_components(**kw)["unet"]
        unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                         target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        with torch.no_grad():
            for n, p in unet.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
        StableDiffusionPipeline.save_lora_weights(
            str(folder), unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)))
        return folder / "pytorch_lora_weights.safetensors"

    root = tmp_path_factory.mktemp("loras")
    return make(root / "fits"), make(root / "other", cross_attention_dim=32)


def _other_family(trained, tmp_path):
    """The trained parts with temporal layers declared for wider UNet blocks (another model family)."""
    bad = tmp_path / "other-family"
    shutil.copytree(trained, bad)
    cfg_path = bad / "motion_adapter" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["block_out_channels"] = [32, 64]
    cfg_path.write_text(json.dumps(cfg))
    return bad


def _cli(*args):
    from pipelines.cli import main

    return main([str(a) for a in args])


def _generate(tmp_path, name, *extra):
    out, rep = tmp_path / f"{name}.mp4", tmp_path / f"{name}.json"
    rc = _cli("generate", "--preset", "tiny", "--task", "t2v", "--prompt", PROMPT, "--method", "none", "--steps", 2,
              "--frames", 4, "--seed", 3, "--quiet", "--out", out, "--report", rep, *extra)
    return rc, out, rep


def test_cli_generates_with_trained_parts_and_a_lora(trained, lora_file, tmp_path, capsys):
    rc, plain, _ = _generate(tmp_path, "plain")
    assert rc == 0
    rc, mine, rep = _generate(tmp_path, "parts", "--video-parts", trained)
    assert rc == 0, capsys.readouterr().err
    report = json.loads(rep.read_text())
    assert report["model"] == {"video_parts": str(trained.resolve()), "loras": []}
    rc, styled, rep = _generate(tmp_path, "lora", "--video-parts", trained, "--lora", f"{lora_file[0]}:0.5")
    assert rc == 0, capsys.readouterr().err
    assert json.loads(rep.read_text())["model"]["loras"] == [{"path": str(lora_file[0].resolve()), "scale": 0.5}]
    assert mine.stat().st_size > 0 and styled.stat().st_size > 0
    rc, lora_only, _ = _generate(tmp_path, "lora-only", "--lora", lora_file[0])  # the LoRA on the preset's own UNet
    assert rc == 0 and lora_only.read_bytes() != plain.read_bytes()
    # the live preset was not changed by any of them: the plain run repeats exactly
    rc, again, _ = _generate(tmp_path, "again")
    assert rc == 0 and again.read_bytes() == plain.read_bytes()


def test_cli_refuses_another_family_and_bad_paths_with_exit_2(trained, lora_file, tmp_path, capsys):
    bad = _other_family(trained, tmp_path)
    rc, out, rep = _generate(tmp_path, "bad", "--video-parts", bad)
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists() and not rep.exists()
    assert err.startswith("error: --video-parts:") and "another model family" in err and "(32, 64)" in err
    rc, *_ = _generate(tmp_path, "run", "--video-parts", trained.parent)  # the run folder, not its final/
    assert rc == 2 and "use its final/ folder" in capsys.readouterr().err
    rc, *_ = _generate(tmp_path, "nolora", "--lora", tmp_path / "missing.safetensors")
    assert rc == 2 and "error: --lora: file not found" in capsys.readouterr().err
    rc, *_ = _generate(tmp_path, "wronglora", "--lora", lora_file[1])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --lora:") and "does not fit" in err


def test_python_api_and_pipeline_accept_the_trained_generator(trained):
    from pipelines.frame_tokens import FrameTokens, HarivoFrameTokens
    from pipelines.presets import load_preset

    plain = load_preset("tiny")
    mine = load_preset("tiny", video_parts=str(trained))
    assert mine is not plain and plain.pipe.frame_tokens is None
    assert isinstance(mine.pipe.frame_tokens, HarivoFrameTokens) and isinstance(mine.pipe.frame_tokens, FrameTokens)
    assert load_preset("tiny", video_parts=str(trained)) is mine  # cached
    assert "frame_tokens" in mine.pipe.components  # registered, not a bare attribute
    with pytest.raises(ValueError, match="video_parts: folder not found"):
        load_preset("tiny", video_parts=str(trained / "nope"))


def test_lora_spec_parsing():
    from pipelines.model_options import ModelOptionError, parse_lora

    assert parse_lora("a/b.safetensors") == ("a/b.safetensors", 1.0)
    assert parse_lora("a/b.safetensors:0.7") == ("a/b.safetensors", 0.7)
    assert parse_lora("C:/x/b.safetensors") == ("C:/x/b.safetensors", 1.0)
    with pytest.raises(ModelOptionError, match="scale"):
        parse_lora("a:1e9")


def test_app_handler_generates_with_trained_parts_and_names_a_bad_folder(trained, tmp_path):
    """The app takes names inside its model folder: the report names the model by that name, never a server path;
    another family is refused naming the field; without a model folder the fields are off."""
    import gradio as gr

    from pipelines.presets import load_preset
    from pipelines.studio.handlers import Studio
    from pipelines.studio.history import settings_from_report
    from pipelines.studio.runs import RunStore

    models = tmp_path / "models"
    shutil.copytree(trained, models / "mine" / "final")
    _other_family(trained, models)  # models/other-family
    preset = load_preset("tiny")
    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=4), model_dir=models)
    kw = dict(prompt=PROMPT, method="none", mg_scale=0, seed=0, steps=2, cfg=7.5, frames=4, size=16, eta=1.0,
              video_parts="mine/final", lora="")
    outs = list(studio.generate("t2v", kw))
    text = open(outs[-1][3]).read()
    report = json.loads(text)
    assert report["model"] == {"video_parts": "mine/final", "loras": []} and str(tmp_path) not in text
    assert settings_from_report(report)["video_parts"] == "mine/final"  # a history click reloads the name
    assert studio.preset is preset and preset.pipe.frame_tokens is None
    with pytest.raises(gr.Error, match="video_parts: other-family was trained for another model family") as e:
        list(studio.generate("t2v", {**kw, "video_parts": "other-family"}))
    assert str(tmp_path) not in e.value.message
    off = Studio(preset, store=RunStore(tmp_path / "runs-off", keep=4))
    with pytest.raises(gr.Error, match="video_parts: loading models is off on this server"):
        list(off.generate("t2v", {**kw, "video_parts": "mine/final"}))
    with pytest.raises(gr.Error, match="lora: loading models is off"):
        list(off.generate("t2v", {**kw, "video_parts": "", "lora": str(trained)}))


def test_web_names_stay_inside_the_model_folder_with_one_answer(trained, lora_file, tmp_path):
    """`parse_options(root=...)`: a name relative to the folder works; an absolute path, `..`, `~`, a missing name, a
    symlink out (the name or anything under it) all get the same words, whether or not the target exists."""
    from pipelines.model_options import REFUSED, ModelOptionError, parse_options

    models = tmp_path / "models"
    shutil.copytree(trained, models / "parts")
    shutil.copy(lora_file[0], models / "style.safetensors")
    (models / "link-out").symlink_to(trained, target_is_directory=True)  # a folder that leads out
    leaky = models / "leaky"
    shutil.copytree(trained, leaky)
    (leaky / "frame_tokens" / "secret").symlink_to("/etc/hostname")  # a file under it that leads out
    (tmp_path / "outside.safetensors").write_bytes(lora_file[0].read_bytes())
    (models / "pickle.bin").write_bytes(b"x")
    ok = parse_options("parts", "style.safetensors:0.5", root=models)
    assert ok.report() == {"video_parts": "parts", "loras": [{"path": "style.safetensors", "scale": 0.5}]}
    assert "video parts parts" in ok.describe() and str(tmp_path) not in ok.describe()
    refused = {"video_parts": [str(models / "parts"), str(trained), "../" + trained.name, "parts/../../outside",
                               "~/parts", "missing", "/etc", "link-out", "leaky", "C:\\x", "parts\\..\\..", ""],
               "lora": [str(lora_file[0]), "../outside.safetensors", "/etc/passwd", "nope.safetensors",
                        "link-out/x"]}
    answers = set()
    for field, names in refused.items():
        for name in names:
            if not name:
                assert parse_options(None, "", root=models).is_default
                continue
            with pytest.raises(ModelOptionError) as e:
                parse_options(name if field == "video_parts" else None, name if field == "lora" else "", root=models)
            assert e.value.field == field and e.value.message == REFUSED, (name, e.value.message)
            answers.add(e.value.message)
    assert answers == {REFUSED}
    with pytest.raises(ModelOptionError, match="not a .safetensors file"):  # inside, but a pickle format
        parse_options(None, "pickle.bin", root=models)
    # the CLI (root=None) still takes any path, and says what it found
    assert parse_options(str(trained)).video_parts == str(trained.resolve())


def test_evaluate_runs_with_trained_parts(trained, tmp_path, capsys):
    from pipelines.evaluation.grid import evaluate
    from pipelines.model_options import parse_options

    out = tmp_path / "ev"
    rows = evaluate(["t2v"], ["none"], [0], out, preset_name="tiny", device="cpu", steps=2, frames=4, max_cases=1,
                    model_options=parse_options(str(trained)), log=lambda s: None,
                    metrics_config=_tiny_metrics())
    lines = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert lines and all("video parts" in r["model"] for r in lines)
    assert rows is not None
    rc = _cli("evaluate", "--suite", "t2v", "--preset", "tiny", "--methods", "none", "--seeds", "1", "--out",
              tmp_path / "ev2", "--video-parts", _other_family(trained, tmp_path))
    assert rc == 2 and "--video-parts" in capsys.readouterr().err


def _tiny_metrics():
    from rewards.metrics import MetricsConfig
    from rewards.testing import tiny_clip

    return MetricsConfig(clip=tiny_clip(seed=3), style_clip=tiny_clip(seed=4))
