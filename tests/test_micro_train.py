"""Micro-model training (`pipelines.training.micro_stages`): every stage runs a few steps at tiny sizes on CPU, its
loss falls on a fixed batch, resume reproduces an uninterrupted run, the exported folder loads as an AnimateDiff
pipeline, and the stages run on the training package's loop, checkpoints, logs and get_scheduler LR."""
import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.training import loop  # noqa: E402
from pipelines.training.loop import latest_checkpoint  # noqa: E402
from pipelines.training.micro_stages import Trainer, main  # noqa: E402

STEPS = {"clip": 15, "vae": 12, "unet": 12, "motion": 6, "joint": 6}


def _falls(losses, k=3):
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    assert np.isfinite(losses).all()
    return first, last


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("micro")
    tr = Trainer(root / "out", root / "work", size="tiny", seed=0, quiet=True, fixed_batch=True, ckpt_every=1000)
    losses = {s: tr.run(s, n) for s, n in STEPS.items()}
    tr.run("export")
    return root, losses


@pytest.mark.parametrize("stage", list(STEPS))
def test_stage_loss_falls(trained, stage):
    _, losses = trained
    assert len(losses[stage]) == STEPS[stage]
    first, last = _falls(losses[stage])
    assert last < first, (stage, first, last)


def test_logs_and_checkpoints_written(trained):
    root, _ = trained
    for s in STEPS:
        # the training package's run layout: <work>/<stage>/log.jsonl, rows numbered by completed steps
        rows = [json.loads(l) for l in (root / "work" / s / "log.jsonl").read_text().splitlines()]
        assert rows[0]["step"] == 1 and rows[-1]["step"] == STEPS[s]
        assert all(np.isfinite(r["loss"]) and r["lr"] > 0 for r in rows)
        ck_path = latest_checkpoint(root / "work" / s)
        assert ck_path.name == f"step_{STEPS[s]}.pt"
        ck = torch.load(ck_path, weights_only=True)  # tensors and numbers only: no code in the file is run
        side = json.loads(loop.checkpoint_sidecar(ck_path).read_text())
        assert ck["step"] == side["step"] == STEPS[s] and side["config"]["stage"] == s


def test_export_loads_as_animatediff(trained):
    from diffusers import AnimateDiffPipeline, UNetMotionModel

    root, _ = trained
    out = root / "out"
    index = json.loads((out / "model_index.json").read_text())
    assert index["motion_adapter"] == [None, None] and index["unet"] == ["diffusers", "UNetMotionModel"]
    vae_cfg = json.loads((out / "vae" / "config.json").read_text())
    assert len(vae_cfg["block_out_channels"]) == 3 and vae_cfg["scaling_factor"] > 0
    pipe = AnimateDiffPipeline.from_pretrained(str(out))
    assert isinstance(pipe.unet, UNetMotionModel)
    video = pipe("a red square moving up on a black background", num_frames=8, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert tuple(video.shape) == (1, 8, 3, 32, 32)
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(str(out / "clip"))
    assert clip.config.vision_config.image_size == 32 and clip.config.vision_config.num_hidden_layers >= 3
    # the video model's text encoder is the CLIP text tower
    te = pipe.text_encoder.state_dict()
    ct = clip.text_model.state_dict()
    key = next(k for k in ct if "token_embedding" in k)
    tkey = next(k for k in te if k.endswith(key))
    assert torch.equal(te[tkey], ct[key])


def test_resume_matches_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    a = Trainer(tmp_path / "a_out", tmp_path / "a_work", size="tiny", seed=1, quiet=True)
    la = a.run("vae", 6)
    b = Trainer(tmp_path / "b_out", tmp_path / "b_work", size="tiny", seed=1, quiet=True, stop_at=3)
    lb1 = b.run("vae", 6)
    assert len(lb1) == 3 and not (tmp_path / "b_out" / "vae").exists()
    assert torch.load(latest_checkpoint(tmp_path / "b_work" / "vae"), weights_only=True)["step"] == 3
    b2 = Trainer(tmp_path / "b_out", tmp_path / "b_work", size="tiny", seed=1, quiet=True, resume=True)
    lb2 = b2.run("vae", 6)
    assert len(lb2) == 3
    np.testing.assert_allclose(lb1 + lb2, la, rtol=1e-4, atol=1e-6)
    rows = [json.loads(x) for x in (tmp_path / "b_work" / "vae" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 3, 4, 6]  # the resumed log continues (first and last step of each run)
    # only the last checkpoint is kept
    kept = sorted(c.name for c in (tmp_path / "b_work" / "vae" / "checkpoints").iterdir())
    assert kept == ["step_6.json", "step_6.pt"]
    sa = torch.load(latest_checkpoint(tmp_path / "a_work" / "vae"), weights_only=True)["trained"]
    sb = torch.load(latest_checkpoint(tmp_path / "b_work" / "vae"), weights_only=True)["trained"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5)


def test_write_at_stop_writes_the_interrupted_stage(tmp_path):
    torch.set_num_threads(1)
    tr = Trainer(tmp_path / "out", tmp_path / "work", size="tiny", seed=1, quiet=True, stop_at=2, write_at_stop=True)
    assert len(tr.run("vae", 6)) == 2
    assert (tmp_path / "out" / "vae" / "config.json").is_file()
    assert torch.load(latest_checkpoint(tmp_path / "work" / "vae"), weights_only=True)["step"] == 2


def test_cli_rejects_unknown_stage(capsys):
    assert main(["--stages", "nope", "--out", "/nonexistent/x", "--work", "/nonexistent/y"]) == 2
    assert "nope" in capsys.readouterr().err


def test_v_loss_weighting_continues_from_unet(trained, tmp_path):
    root, _ = trained
    tr = Trainer(root / "out", tmp_path / "work", size="tiny", seed=0, quiet=True, fixed_batch=True,
                 loss_weight="v", init_unet=root / "work" / "unet_joint")
    losses = tr.run("joint", 6)
    assert len(losses) == 6 and np.isfinite(losses).all()
    assert (tmp_path / "work" / "unet_joint" / "config.json").is_file()


def test_joint_with_text_finetune_exports_text_encoder(trained, tmp_path):
    from transformers import CLIPTextModel

    root, _ = trained
    out = tmp_path / "out"
    import shutil

    shutil.copytree(root / "out", out)
    tr = Trainer(out, tmp_path / "work", size="tiny", seed=0, quiet=True, fixed_batch=True, train_text=True,
                 init_unet=root / "work" / "unet_joint")
    before = CLIPTextModel.from_pretrained(str(out / "text_encoder")).state_dict()
    losses = tr.run("joint", 8)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    tr.run("export")
    after = CLIPTextModel.from_pretrained(str(out / "text_encoder")).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the text tower was fine-tuned


def test_joint_text_aux_loss_separates_motion_words(trained, tmp_path):
    """--text-aux-weight: linear heads on the text encoder's mean hidden state learn the caption's motion (after a
    short text-only pre-training); the heads are not exported, the text encoder is."""
    import shutil

    from transformers import CLIPTextModel

    root, _ = trained
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    tr = Trainer(out, tmp_path / "work", size="tiny", seed=0, quiet=True, fixed_batch=True, train_text=True,
                 init_unet=root / "work" / "unet_joint", text_aux_weight=1.0, text_aux_pretrain=60,
                 text_lr_scale=0.5, t_sampling="high")
    losses = tr.run("joint", 4)
    assert len(losses) == 4 and np.isfinite(losses).all()
    pre = [json.loads(x) for x in (tmp_path / "work" / "text_aux_pretrain" / "log.jsonl").read_text().splitlines()]
    assert pre[-1]["loss"] < pre[0]["loss"] and pre[-1]["acc_motion"] > pre[0]["acc_motion"]
    joint = [json.loads(x) for x in (tmp_path / "work" / "joint" / "log.jsonl").read_text().splitlines()]
    assert "acc_motion" in joint[0] and "eps" in joint[0]
    tr.run("export")
    sd = CLIPTextModel.from_pretrained(str(out / "text_encoder")).state_dict()
    assert not any("heads" in k for k in sd)


def test_joint_with_frame_tokens_exports_generator(trained, tmp_path):
    """--frame-tokens K: the joint stage trains HARIVO's frame-wise token generator with the UNet; export writes it
    with a model_index entry; GuidedAnimateDiffPipeline loads and uses it, plain AnimateDiffPipeline still loads."""
    import shutil

    from diffusers import AnimateDiffPipeline

    from pipelines.frame_tokens import HarivoFrameTokens
    from pipelines.pipeline import GuidedAnimateDiffPipeline

    root, _ = trained
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    tr = Trainer(out, tmp_path / "work", size="tiny", seed=0, quiet=True, fixed_batch=True, frame_tokens=3,
                 init_unet=root / "work" / "unet_joint", freeze_image=True)
    losses = tr.run("joint", 8)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    tr.run("export")
    # --freeze-image: the image layers are the initial UNet's, the motion modules trained
    from diffusers import UNetMotionModel

    before = UNetMotionModel.from_pretrained(str(root / "work" / "unet_joint")).state_dict()
    after = UNetMotionModel.from_pretrained(str(out / "unet")).state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all("motion_modules" in k for k in moved)
    index = json.loads((out / "model_index.json").read_text())
    assert index["frame_tokens"] == ["pipelines.frame_tokens", "HarivoFrameTokens"]  # the paper's generator
    gen = HarivoFrameTokens.from_pretrained(str(out / "frame_tokens"))
    assert gen.config.num_tokens == 3 and gen.config.text_length == 24
    assert gen.layers[-1][0].weight.abs().sum() > 0  # trained away from its zero initialisation
    pipe = GuidedAnimateDiffPipeline.from_pretrained(str(out))
    assert isinstance(pipe.frame_tokens, HarivoFrameTokens)
    seen = []
    pipe.unet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["encoder_hidden_states"].shape),
                                        with_kwargs=True)
    video = pipe("a red square moving up on a black background", num_frames=6, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert tuple(video.shape) == (1, 6, 3, 32, 32)
    assert seen and all(s[0] == 2 * 6 and s[1] == 24 + 3 for s in seen)  # (cfg · frames, tokens + K)
    plain = AnimateDiffPipeline.from_pretrained(str(out))
    assert not hasattr(plain, "frame_tokens")
    # an export without the generator removes a stale one
    tr2 = Trainer(out, root / "work", size="tiny", seed=0, quiet=True)
    tr2.run("export")
    assert not (out / "frame_tokens").exists()
    assert "frame_tokens" not in json.loads((out / "model_index.json").read_text())



@pytest.fixture(scope="module")
def world_latents(trained):
    from diffusers import AutoencoderKL

    from pipelines.training.micro_data import WorldLatents

    root, _ = trained
    vae = AutoencoderKL.from_pretrained(str(root / "out" / "vae")).eval()
    return vae, WorldLatents(vae)


def test_freeze_unet_trains_the_frame_tokens_alone(trained, tmp_path):
    """--freeze-unet (micro's paper-token stage): the UNet is exported bit for bit as it came in; only the generator moved,
    starting from the one --init-frame-tokens names."""
    import shutil

    from diffusers import UNetMotionModel

    from pipelines.frame_tokens import HarivoFrameTokens

    root, _ = trained
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    torch.manual_seed(1)
    init = HarivoFrameTokens(dim=32, text_length=24, num_tokens=3, max_frames=32)
    init.save_pretrained(str(tmp_path / "init"))
    tr = Trainer(out, tmp_path / "work", size="tiny", seed=0, quiet=True, fixed_batch=True, frame_tokens=3,
                 init_unet=root / "work" / "unet_joint", freeze_unet=True, init_frame_tokens=tmp_path / "init")
    tr.run("joint", 4)
    tr.run("export")
    before = UNetMotionModel.from_pretrained(str(root / "work" / "unet_joint")).state_dict()
    after = UNetMotionModel.from_pretrained(str(out / "unet")).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    gen = HarivoFrameTokens.from_pretrained(str(out / "frame_tokens"))
    assert any(not torch.equal(a, b) for a, b in zip(init.state_dict().values(), gen.state_dict().values()))
    with pytest.raises(ValueError, match="makes 3 tokens per frame, --frame-tokens asks for 2"):
        bad = Trainer(out, tmp_path / "work2", size="tiny", quiet=True, frame_tokens=2,
                      init_unet=root / "work" / "unet_joint", freeze_unet=True, init_frame_tokens=tmp_path / "init")
        bad.run("joint", 1)


def test_world_latents_table_is_the_vae_encoding(world_latents):
    from pipelines.micro import world

    vae, wl = world_latents
    a = {"colour": "red", "shape": "circle", "motion": "moving left to right", "background": "checkered"}
    z = wl.clip(a, 8, np.random.default_rng(3))  # (c, f, h, w)
    # find the path and encode the rendered clip
    paths, _ = world.enumerate_trajectories(a["motion"], 8)
    zk = wl.z[wl.keys.index(("red", "circle", "checkered"))]
    idx, _ = wl.paths(a["motion"], 8)
    j = next(i for i in range(len(idx)) if torch.equal(zk[idx[i]].permute(1, 0, 2, 3), z))
    frames = torch.from_numpy(world.render_positions("red", "circle", "checkered", [tuple(p) for p in paths[j]]))
    with torch.no_grad():
        enc = vae.encode(frames * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    torch.testing.assert_close(z.permute(1, 0, 2, 3), enc, rtol=1e-4, atol=1e-5)


def test_world_latents_posterior_mean_limits(world_latents):
    """Exact posterior mean: the clip itself at low noise, the caption's prior mean at (near) pure noise."""
    _, wl = world_latents
    a = {"colour": "green", "shape": "square", "motion": "moving up", "background": "gray"}
    rng = np.random.default_rng(0)
    z = wl.clip(a, 8, rng)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    ab = 0.999
    m = wl.posterior_mean(a, ab ** 0.5 * z + (1 - ab) ** 0.5 * noise, ab)
    torch.testing.assert_close(m, z, rtol=1e-4, atol=1e-4)
    idx, logp = wl.paths(a["motion"], 8)
    zk = wl.z[wl.keys.index(("green", "square", "gray"))]
    prior = (logp.exp()[:, None, None, None, None] * zk[idx]).sum(0).permute(1, 0, 2, 3)  # (c, f, h, w)
    ab = 1e-9
    m = wl.posterior_mean(a, ab ** 0.5 * z + (1 - ab) ** 0.5 * noise, ab)
    torch.testing.assert_close(m, prior.float(), rtol=1e-3, atol=1e-4)
    # in between: closer to the clip than the prior is
    ab = 0.3
    m = wl.posterior_mean(a, ab ** 0.5 * z + (1 - ab) ** 0.5 * noise, ab)
    assert (m - z).norm() < (prior.float() - z).norm()


def test_joint_posterior_target_v_prediction(trained, tmp_path):
    """--x0-target posterior --prediction v_prediction --t-sampling layout: the joint stage trains on table clips
    with exact posterior targets, its loss falls, and export writes a v-prediction scheduler the pipeline uses."""
    import shutil

    from pipelines.pipeline import GuidedAnimateDiffPipeline

    root, _ = trained
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    tr = Trainer(out, tmp_path / "work", size="tiny", seed=0, quiet=True, fixed_batch=True, x0_target="posterior",
                 prediction="v_prediction", t_sampling="layout", frame_tokens=2,
                 init_unet=root / "work" / "unet_joint")
    losses = tr.run("joint", 8)
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < np.mean(losses[:3])
    tr.run("export")
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction"
    pipe = GuidedAnimateDiffPipeline.from_pretrained(str(out))
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    video = pipe("a red square moving up on a black background", num_frames=8, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert torch.isfinite(video).all()
    with pytest.raises(ValueError, match="x0_target"):
        Trainer(out, tmp_path / "w2", size="tiny", x0_target="nope")
    with pytest.raises(ValueError, match="prediction"):
        Trainer(out, tmp_path / "w3", size="tiny", prediction="nope")


# ----------------------------------------------------------------------- one loop, one checkpoint format, one LR
def _former_lr_at(step, total, base, warmup=50):
    """The micro trainer's own LR function before it moved onto get_scheduler (kept here as the reference)."""
    import math

    if step < warmup:
        return base * (step + 1) / warmup
    decay_start = int(total * 0.6)
    if step < decay_start:
        return base
    frac = (step - decay_start) / max(1, total - decay_start)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@pytest.mark.parametrize("total", [1, 6, 15, 100, 800, 2500])
def test_stage_lr_schedule_is_the_former_formula_through_get_scheduler(total):
    from pipelines.training.schedule import warmup_stable_cosine

    warmup = min(50, max(1, total // 10))
    f = warmup_stable_cosine(total, warmup)
    for s in sorted({0, warmup - 1, warmup, int(0.6 * total), total // 2, total - 2, total - 1} & set(range(total))):
        assert 5e-4 * f(s) == pytest.approx(_former_lr_at(s, total, 5e-4, warmup), rel=1e-12, abs=0), s


def test_stage_logs_the_scheduled_lr(trained):
    from pipelines.training.micro_models import SIZES

    root, _ = trained
    rows = [json.loads(l) for l in (root / "work" / "clip" / "log.jsonl").read_text().splitlines()]
    base = SIZES["tiny"]["lr_clip"]
    for r in rows:
        assert r["lr"] == pytest.approx(_former_lr_at(r["step"] - 1, STEPS["clip"], base, 1), rel=1e-12)


def test_micro_stages_and_harivo_share_the_loop_and_checkpoint_format(trained, tmp_path, monkeypatch):
    """One loop: the micro stages call `loop.run_steps`, as HARIVO's `train` does; one format: a micro stage's
    checkpoint has the keys of a HARIVO checkpoint and `loop.load_checkpoint` restores it into a fresh model."""
    from diffusers import UNet2DConditionModel

    from pipelines.training import loop, micro_stages
    from pipelines.training.config import load_config
    from pipelines.training.micro_models import SIZES, build_unet2d

    assert micro_stages.run_steps is loop.run_steps
    calls = []
    real = loop.run_steps

    def spy(*a, **kw):
        calls.append(kw["desc"])
        return real(*a, **kw)

    monkeypatch.setattr(loop, "run_steps", spy)
    cfg = load_config("tiny", {"out": str(tmp_path / "harivo"), "threads": 1, "steps": 1, "batch_size": 1,
                               "num_frames": 3})
    loop.train(cfg, quiet=True)
    assert calls == ["harivo"]
    harivo = torch.load(latest_checkpoint(tmp_path / "harivo"), weights_only=True)

    root, _ = trained
    ck = latest_checkpoint(root / "work" / "unet")
    micro = torch.load(ck, weights_only=True)
    assert set(micro) == set(harivo) == {"step", "trained", "opt"}
    assert loop.checkpoint_sidecar(ck).is_file() and loop.read_checkpoint(ck)["config"]["stage"] == "unet"
    fresh = build_unet2d(SIZES["tiny"], 32)
    opt = torch.optim.AdamW(fresh.parameters())
    assert loop.load_checkpoint(ck, fresh, opt) == STEPS["unet"]
    saved = UNet2DConditionModel.from_pretrained(str(root / "work" / "unet2d")).state_dict()
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_resume_from_a_checkpoint_in_the_former_layout(tmp_path):
    """`<work>/ckpt/<stage>.pt` with `{"step", "model", "opt", "extra"}` (the micro trainer's own format before the
    move) still resumes, to the same losses as an uninterrupted run."""
    torch.set_num_threads(1)
    la = Trainer(tmp_path / "a_out", tmp_path / "a_work", size="tiny", seed=2, quiet=True).run("vae", 4)
    Trainer(tmp_path / "b_out", tmp_path / "b_work", size="tiny", seed=2, quiet=True, stop_at=2).run("vae", 4)
    ck_path = latest_checkpoint(tmp_path / "b_work" / "vae")
    ck = torch.load(ck_path, weights_only=True)
    (tmp_path / "b_work" / "ckpt").mkdir()
    torch.save({"step": ck["step"], "model": ck["trained"], "opt": ck["opt"], "extra": {}},
               tmp_path / "b_work" / "ckpt" / "vae.pt")
    ck_path.unlink()
    lb = Trainer(tmp_path / "b_out", tmp_path / "b_work", size="tiny", seed=2, quiet=True, resume=True).run("vae", 4)
    np.testing.assert_allclose(lb, la[2:], rtol=1e-4, atol=1e-6)


def test_entry_points_are_the_training_package(capsys):
    """`python -m pipelines train-micro` and `python -m pipelines.training micro-models` run the training package's
    stages (the former `python -m pipelines.micro.train` entry is gone: no module re-exports them)."""
    import importlib.util

    from pipelines import cli
    from pipelines.training import micro_stages
    from pipelines.training.__main__ import main as training_main

    assert importlib.util.find_spec("pipelines.micro.train") is None
    for run in (lambda a: cli.main(["train-micro", *a]), micro_stages.main,
                lambda a: training_main(["micro-models", *a])):
        assert run(["--stages", "nope", "--out", "/nonexistent/x", "--work", "/nonexistent/y"]) == 2
        assert "nope" in capsys.readouterr().err
