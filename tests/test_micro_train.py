"""Micro training: every stage runs a few steps at tiny sizes on CPU, its loss falls on a fixed batch, resume
reproduces an uninterrupted run, and the exported folder loads as an AnimateDiff pipeline."""
import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.micro.train import Trainer, main  # noqa: E402

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
        rows = [json.loads(l) for l in (root / "work" / "logs" / f"{s}.jsonl").read_text().splitlines()]
        assert rows[0]["step"] == 0 and rows[-1]["step"] == STEPS[s] - 1
        assert all(np.isfinite(r["loss"]) for r in rows)
        ck = torch.load(root / "work" / "ckpt" / f"{s}.pt", weights_only=False)
        assert ck["step"] == STEPS[s]


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
    assert torch.load(tmp_path / "b_work" / "ckpt" / "vae.pt", weights_only=False)["step"] == 3
    b2 = Trainer(tmp_path / "b_out", tmp_path / "b_work", size="tiny", seed=1, quiet=True, resume=True)
    lb2 = b2.run("vae", 6)
    assert len(lb2) == 3
    np.testing.assert_allclose(lb1 + lb2, la, rtol=1e-4, atol=1e-6)
    sa = torch.load(tmp_path / "a_work" / "ckpt" / "vae.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "b_work" / "ckpt" / "vae.pt", weights_only=False)["model"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5)


def test_write_at_stop_writes_the_interrupted_stage(tmp_path):
    torch.set_num_threads(1)
    tr = Trainer(tmp_path / "out", tmp_path / "work", size="tiny", seed=1, quiet=True, stop_at=2, write_at_stop=True)
    assert len(tr.run("vae", 6)) == 2
    assert (tmp_path / "out" / "vae" / "config.json").is_file()
    assert torch.load(tmp_path / "work" / "ckpt" / "vae.pt", weights_only=False)["step"] == 2


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
    pre = [json.loads(x) for x in (tmp_path / "work" / "logs" / "text_aux_pretrain.jsonl").read_text().splitlines()]
    assert pre[-1]["loss"] < pre[0]["loss"] and pre[-1]["acc_motion"] > pre[0]["acc_motion"]
    joint = [json.loads(x) for x in (tmp_path / "work" / "logs" / "joint.jsonl").read_text().splitlines()]
    assert "acc_motion" in joint[0] and "eps" in joint[0]
    tr.run("export")
    sd = CLIPTextModel.from_pretrained(str(out / "text_encoder")).state_dict()
    assert not any("heads" in k for k in sd)


def test_joint_with_frame_tokens_exports_generator(trained, tmp_path):
    """--frame-tokens K: the joint stage trains HARIVO's frame-wise token generator with the UNet; export writes it
    with a model_index entry; GuidedAnimateDiffPipeline loads and uses it, plain AnimateDiffPipeline still loads."""
    import shutil

    from diffusers import AnimateDiffPipeline

    from pipelines.frame_tokens import FrameTokenGenerator
    from pipelines.pipeline import GuidedAnimateDiffPipeline

    root, _ = trained
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    tr = Trainer(out, tmp_path / "work", size="tiny", seed=0, quiet=True, fixed_batch=True, frame_tokens=3,
                 init_unet=root / "work" / "unet_joint")
    losses = tr.run("joint", 8)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    tr.run("export")
    index = json.loads((out / "model_index.json").read_text())
    assert index["frame_tokens"] == ["pipelines.frame_tokens", "FrameTokenGenerator"]
    gen = FrameTokenGenerator.from_pretrained(str(out / "frame_tokens"))
    assert gen.config.num_tokens == 3
    assert gen.net[-1].weight.abs().sum() > 0  # trained away from its zero initialisation
    assert (gen.text_scale != 1).any()  # standardisation statistics set from the training captions
    pipe = GuidedAnimateDiffPipeline.from_pretrained(str(out))
    assert isinstance(pipe.frame_tokens, FrameTokenGenerator)
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

    from pipelines.micro.train import WorldLatents

    root, _ = trained
    vae = AutoencoderKL.from_pretrained(str(root / "out" / "vae")).eval()
    return vae, WorldLatents(vae)


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
