"""HARIVO training package (pipelines/training): modules, losses, loop, resume, 2-process DDP, personalised bases."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines.training import (ContrastiveProjection, HarivoFrameTokens, LossWeights, MappingNetwork,
                                build_video_unet, bypass_temporal, dc_loss, image_unet_from_video, load_config,
                                reg_loss, swap_image_unet, trs_loss)
from pipelines.training.modules import motion_modules

ROOT = Path(__file__).resolve().parents[1]


def _tiny_unet2d(seed=0):
    from pipelines.testing import tiny_components

    return tiny_components(seed=seed)["unet"]


def _randomise_temporal(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in motion_modules(unet):
            m.proj_out.weight.copy_(torch.randn(m.proj_out.weight.shape, generator=g) * 0.1)


# ------------------------------------------------------------------------------------------------- modules
def test_mapping_network_starts_as_identity_and_keeps_shape():
    torch.manual_seed(0)
    m = MappingNetwork(channels=4, hidden=8, heads=2, head_dim=8)
    x = torch.randn(2, 4, 5, 6, 6)
    assert torch.equal(m(x), x)  # zero-initialised output linear: exact identity
    assert torch.count_nonzero(m.proj_out.weight) == 0
    with torch.no_grad():
        m.proj_out.weight.normal_()
    y = m(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    # frames interact (3D conv + temporal attention): changing frame 0 moves frame 3
    x2 = x.clone()
    x2[:, :, 0] += 1
    assert not torch.allclose(m(x2)[:, :, 3], y[:, :, 3])
    with pytest.raises(ValueError, match="latents"):
        m(torch.randn(2, 3, 5, 6, 6))


def test_frame_token_generator_shapes():
    gen = HarivoFrameTokens(dim=16, text_length=12, num_tokens=3, max_frames=8)
    text = torch.randn(2, 12, 16)
    tok = gen(text, 5)
    assert tok.shape == (2, 5, 3, 16)
    enc = gen.expand(text, 5)
    assert enc.shape == (10, 15, 16)
    assert torch.equal(enc[7, :12], text[1]) and torch.equal(enc[7, 12:], tok[1, 2])  # video 1, frame 2
    assert not torch.allclose(tok[:, 0], tok[:, 1])  # frame-wise: frames differ
    with pytest.raises(ValueError, match="max_frames"):
        gen(text, 9)
    with pytest.raises(ValueError, match="text tokens"):
        gen(torch.randn(2, 10, 16), 4)


def test_contrastive_projection_shape():
    p = ContrastiveProjection(32, 4)
    assert p(torch.randn(3, 32, 4, 4)).shape == (3, 32)
    with pytest.raises(ValueError, match="bottleneck"):
        p(torch.randn(3, 32, 8, 8))


def test_untrained_video_model_equals_image_model_per_frame():
    unet2d = _tiny_unet2d()
    video = build_video_unet(unet2d)
    x = torch.randn(2, 4, 3, 8, 8)
    text = torch.randn(2, 16, 16)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        out = video(x, t, encoder_hidden_states=text.repeat_interleave(3, 0)).sample
        for b in range(2):
            per = unet2d(x[b].permute(1, 0, 2, 3), t[b], encoder_hidden_states=text[b:b + 1].expand(3, -1, -1)).sample
            torch.testing.assert_close(out[b], per.permute(1, 0, 2, 3), atol=1e-5, rtol=1e-5)
        # only the temporal layers train; once non-zero they couple frames, and bypassing them gives the image model
        assert all(p.requires_grad == ("motion_modules" in n) for n, p in video.named_parameters())
        _randomise_temporal(video)
        moved = video(x, t, encoder_hidden_states=text.repeat_interleave(3, 0)).sample
        assert not torch.allclose(moved, out, atol=1e-4)
        # the bypass skips the motion modules' compute, not just their output: none of their layers runs
        from pipelines.training.modules import motion_modules

        calls = []
        hooks = [m.proj_in.register_forward_hook(lambda *a: calls.append(1)) for m in motion_modules(video)]
        with bypass_temporal(video):
            back = video(x, t, encoder_hidden_states=text.repeat_interleave(3, 0)).sample
        torch.testing.assert_close(back, out, atol=1e-5, rtol=1e-5)
        assert calls == []
        again = video(x, t, encoder_hidden_states=text.repeat_interleave(3, 0)).sample  # restored afterwards
        assert len(calls) == len(hooks) and torch.equal(again, moved)


def test_image_part_of_the_micro_unet_round_trips():
    from diffusers import UNetMotionModel

    from pipelines.micro import MICRO_DIR

    video = UNetMotionModel.from_pretrained(str(MICRO_DIR / "unet"))
    unet2d = image_unet_from_video(video)
    x, text, t = torch.randn(1, 4, 2, 8, 8), torch.randn(2, 24, 128), torch.tensor([300])
    with torch.no_grad(), bypass_temporal(video):
        out = video(x, t, encoder_hidden_states=text).sample
    with torch.no_grad():
        per = unet2d(x[0].permute(1, 0, 2, 3), t, encoder_hidden_states=text).sample
    torch.testing.assert_close(out[0], per.permute(1, 0, 2, 3), atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------------------------------------------- losses
def test_trs_loss_zero_for_identical_frames_and_weights_later_layers_more():
    a = torch.softmax(torch.randn(2, 1, 2, 6, 6), -1).expand(2, 4, 2, 6, 6)
    assert float(trs_loss([a, a])) == 0.0
    b = torch.softmax(torch.randn(2, 4, 2, 6, 6), -1)
    first, last = float(trs_loss([b, a])), float(trs_loss([a, b]))
    assert first > 0 and last > 0
    assert last == pytest.approx(2 * first, rel=1e-5)  # λ_i = i/N: layer 2 of 2 weighs twice layer 1
    # per query the L1 distance of two distributions is at most 2
    one_hot = torch.eye(6)[None, None, None].expand(1, 2, 1, 6, 6).clone()
    one_hot[0, 1] = torch.roll(torch.eye(6), 1, 1)
    assert float(trs_loss([one_hot])) == pytest.approx(2.0)


def test_reg_loss_zero_when_equal_or_at_t_max():
    a, b = torch.randn(3, 4, 2, 8, 8), torch.randn(3, 4, 2, 8, 8)
    t = torch.tensor([0, 400, 999])
    assert float(reg_loss(a, a, t, 1000)) == 0.0
    assert float(reg_loss(a, b, t, 1000)) > 0
    assert float(reg_loss(a, b, torch.tensor([1000, 1000, 1000]), 1000)) == 0.0  # λ_T = 0
    lo = reg_loss(a[:1], b[:1], torch.tensor([900]), 1000)
    hi = reg_loss(a[:1], b[:1], torch.tensor([100]), 1000)
    assert float(hi) == pytest.approx(9 * float(lo), rel=1e-5)  # λ_t = 1 − t/T


def test_dc_loss_minimal_for_matching_pairs_far_from_negatives():
    z = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    assert float(dc_loss(z, z, None, 0.1)) == pytest.approx(-10.0, abs=1e-5)  # −⟨z, z⟩/τ, its minimum
    other = torch.randn(4, 8)
    assert float(dc_loss(z, other, None, 0.1)) > -10.0 + 1e-3
    near_q = z + 0.01 * torch.randn(4, 8)
    far_q = -z
    assert float(dc_loss(z, z, far_q, 0.1)) < float(dc_loss(z, z, near_q, 0.1))
    assert float(dc_loss(z, other, near_q, 0.1)) > float(dc_loss(z, z, far_q, 0.1))


def test_loss_weights_reject_negative():
    with pytest.raises(ValueError, match="trs"):
        LossWeights(trs=-1)


# ------------------------------------------------------------------------------------------------- the loop
def _tiny_cfg(tmp_path, **over):
    base = {"out": str(tmp_path / "run"), "threads": 1, "steps": 2, "ckpt_every": 1, "batch_size": 1,
            "num_frames": 3}
    base.update(over)
    return load_config("tiny", base)


def test_objective_untrained_reg_is_zero_and_training_lowers_the_loss(tmp_path):
    from pipelines.training.loop import build_objective, load_base

    cfg = _tiny_cfg(tmp_path, frame_tokens="none")
    base = load_base(cfg)
    torch.manual_seed(0)
    obj = build_objective(cfg, base)
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(2, 4, 3, 16, 16, generator=g)
    text = torch.randn(2, 16, 16, generator=g)
    noise = torch.randn(z0.shape, generator=g)
    t = torch.tensor([200, 600])
    pair = torch.tensor([[0, 2], [1, 0]])
    with torch.no_grad():
        first = obj(z0, text, noise, t, pair)
    assert set(first) == {"simple", "trs", "reg", "dc", "total"}
    assert float(first["reg"]) < 1e-10  # untrained: video model == image model with mapping, per frame
    queue = obj.queue.clone(), obj.queue_len.clone(), obj.queue_ptr.clone()

    def evaluate():
        saved = obj.queue.clone(), obj.queue_len.clone(), obj.queue_ptr.clone()
        obj.queue.copy_(queue[0]), obj.queue_len.copy_(queue[1]), obj.queue_ptr.copy_(queue[2])
        with torch.no_grad():
            v = float(obj(z0, text, noise, t, pair)["total"])
        obj.queue.copy_(saved[0]), obj.queue_len.copy_(saved[1]), obj.queue_ptr.copy_(saved[2])
        return v

    before = evaluate()
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=1e-3)
    for _ in range(12):
        loss = obj(z0, text, noise, t, pair)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert after < before - 1e-3, (before, after)
    # the frozen image model did not move; the mapping network did
    assert all(not p.requires_grad for n, p in obj.unet.named_parameters() if "motion_modules" not in n)
    assert torch.count_nonzero(obj.mapping.proj_out.weight) > 0


def test_resume_is_exact(tmp_path):
    from pipelines.training.loop import latest_checkpoint, train

    straight = train(_tiny_cfg(tmp_path / "a"), quiet=True)
    cfg = _tiny_cfg(tmp_path / "b")
    train(cfg, stop_at=1, quiet=True)
    assert latest_checkpoint(Path(cfg.out)).name == "step_1.pt"
    resumed = train(_tiny_cfg(tmp_path / "b"), resume=True, quiet=True)
    assert resumed["steps"] == 1
    sa = {k: v for k, v in straight["model"].state_dict().items()}
    sb = resumed["model"].state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert straight["log"][-1]["total"] == resumed["log"][-1]["total"]


def test_checkpoints_load_with_weights_only_and_code_in_a_file_is_refused(tmp_path):
    """A checkpoint is tensors and numbers (`weights_only=True`) plus a JSON sidecar; one in the former format (its
    config inside) still resumes; a pickle that would run code is refused with a clear error, never executed."""
    from pipelines.training.loop import checkpoint_sidecar, load_checkpoint, read_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    path = tmp_path / "checkpoints" / "step_3.pt"
    save_checkpoint(path, 3, model, opt, {"stage": "x", "lr": 1e-3})
    assert set(torch.load(path, weights_only=True)) == {"step", "trained", "opt"}
    assert json.loads(checkpoint_sidecar(path).read_text()) == {"step": 3, "config": {"stage": "x", "lr": 1e-3}}
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters())
    assert load_checkpoint(path, fresh, fresh_opt) == 3 and torch.equal(fresh.weight, model.weight)
    old = tmp_path / "old.pt"  # the former format: one file, the config inside (plain data: loads weights-only)
    torch.save({"step": 5, "trained": dict(model.named_parameters()), "opt": opt.state_dict(),
                "config": {"stage": "x"}}, old)
    assert load_checkpoint(old, torch.nn.Linear(3, 2)) == 5 and read_checkpoint(old)["config"] == {"stage": "x"}
    hostile = tmp_path / "hostile.pt"
    torch.save({"step": 1, "trained": {}, "opt": {}, "config": _Ran()}, hostile)
    _Ran.count = 0
    with pytest.raises(ValueError, match="cannot be read safely.*weights_only=True"):
        load_checkpoint(hostile, torch.nn.Linear(3, 2))
    assert _Ran.count == 0


class _Ran:
    """An object whose unpickling would count: a checkpoint must never unpickle it."""

    count = 0

    def __setstate__(self, state):
        type(self).count += 1


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown training config key"):
        load_config("tiny", {"no_such": 1})
    with pytest.raises(FileNotFoundError, match="not found"):
        load_config("nope")
    with pytest.raises(ValueError, match="frame_tokens"):
        load_config("tiny", {"frame_tokens": "mine"})
    r = subprocess.run([sys.executable, "-m", "pipelines.training", "--config", "tiny", "--set", "steps=0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "steps must be" in r.stderr


def _tiny_pipe(seed=0):
    from pipelines import GuidedAnimateDiffPipeline
    from pipelines.testing import tiny_components

    c = tiny_components(seed=seed)
    pipe = GuidedAnimateDiffPipeline(**c)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.slow
def test_two_process_accelerate_launch_completes_and_loads(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "pipelines.training",
           "--config", "tiny", "--out", str(out), "--quiet", "--set", "steps=2", "--set", "batch_size=1",
           "--set", "num_frames=3", "--set", "ckpt_every=1"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    reports = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 2 and all(x["processes"] == 2 for x in reports)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2] and all({"simple", "trs", "reg", "dc"} <= set(x) for x in log)
    # the checkpoint loads into a fresh objective, and the exported parts into a pipeline
    from pipelines.training.loop import build_objective, load_base, load_checkpoint, load_video_parts

    cfg = load_config(str(out / "config.json"))
    obj = build_objective(cfg, load_base(cfg))
    assert load_checkpoint(out / "checkpoints" / "step_2.pt", obj) == 2
    assert torch.count_nonzero(obj.mapping.proj_out.weight) > 0
    pipe = load_video_parts(_tiny_pipe(), out / "final")
    got = {n: p for n, p in pipe.unet.named_parameters() if "motion_modules" in n}
    want = {n: p for n, p in obj.unet.named_parameters() if "motion_modules" in n}
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    frames = pipe("a red circle", num_frames=3, num_inference_steps=2, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 3, 3, 16, 16) and torch.isfinite(frames).all()


def _export_trained_parts(tmp_path):
    from pipelines.training.loop import build_objective, export, load_base

    cfg = _tiny_cfg(tmp_path, w_dc=0.0)
    obj = build_objective(cfg, load_base(cfg))
    _randomise_temporal(obj.unet, seed=3)  # stands for trained temporal layers
    with torch.no_grad():
        obj.mapping.proj_out.weight.normal_(0, 0.1)
    return obj, export(obj, tmp_path / "parts", cfg)


def test_trained_parts_carry_over_to_a_swapped_image_unet_and_a_lora(tmp_path):
    peft = pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from pipelines.training.loop import load_video_parts

    obj, parts = _export_trained_parts(tmp_path)
    trained = {n: p.detach().clone() for n, p in obj.unet.named_parameters() if "motion_modules" in n}

    # (1) a different image UNet of the same family (another seed) under the trained temporal parts
    other = _tiny_pipe(seed=1)
    other_image = image_unet_from_video(other.unet)
    load_video_parts(other, parts)
    state = other.unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in trained.items())
    assert all(torch.equal(state[k], v) for k, v in other_image.state_dict().items())
    assert other.unet._harivo_mapping is not None and other.frame_tokens is not None
    # swap_image_unet does the same in place, and refuses another family
    video = obj.unet
    swap_image_unet(video, other_image)
    assert all(torch.equal(video.state_dict()[k], v) for k, v in other_image.state_dict().items())
    from pipelines.testing import tiny_components

    wrong = tiny_components(cross_attention_dim=32)["unet"]
    with pytest.raises(ValueError, match="same family"):
        swap_image_unet(video, wrong)

    # (2) a LoRA on the image model, through diffusers' LoRA loading, under the trained parts
    torch.manual_seed(1)
    lora_unet = _tiny_unet2d()
    lora_unet.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                          target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    with torch.no_grad():  # LoRA starts as a zero update (B = 0): make it a trained one
        for n, p in lora_unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    lora_dir = tmp_path / "lora"
    StableDiffusionPipeline.save_lora_weights(
        str(lora_dir), unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(lora_unet)))
    pipe = load_video_parts(_tiny_pipe(), parts)
    kw = dict(num_frames=3, num_inference_steps=2, output_type="pt")
    plain = pipe("a red circle", generator=torch.Generator().manual_seed(0), **kw).frames
    pipe.load_lora_weights(str(lora_dir))
    styled = pipe("a red circle", generator=torch.Generator().manual_seed(0), **kw).frames
    assert not torch.allclose(plain, styled, atol=1e-4)  # the LoRA acts
    assert not any("lora" in n for n in pipe.unet.state_dict() if "motion_modules" in n)  # on image layers only
    state = pipe.unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in trained.items())  # temporal parts untouched


def test_data_csv_and_shards(tmp_path):
    import csv
    import tarfile

    import imageio.v2 as imageio
    import numpy as np

    from pipelines.training.data import StepBatches, VideoCSV, VideoShards

    frames = [np.full((20, 28, 3), 10 * k, np.uint8) for k in range(10)]
    vid = tmp_path / "v" / "0001.mp4"
    vid.parent.mkdir()
    imageio.mimwrite(vid, frames, fps=8, macro_block_size=1)
    with (tmp_path / "webvid.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videoid", "page_dir", "name"])
        w.writerow(["0001", "v", "a grey fade"])
    ds = VideoCSV(tmp_path / "webvid.csv", num_frames=4, size=16, stride=2)
    x, cap = ds[0]
    assert x.shape == (4, 3, 16, 16) and cap == "a grey fade"
    assert -1 <= float(x.min()) and float(x.max()) <= 1 and float(x[-1].mean()) > float(x[0].mean())
    with tarfile.open(tmp_path / "shard-0000.tar", "w") as tf:
        tf.add(vid, arcname="k1.mp4")
        cap_file = tmp_path / "k1.txt"
        cap_file.write_text("a grey fade\n")
        tf.add(cap_file, arcname="k1.txt")
    sh = VideoShards(str(tmp_path / "shard-*.tar"), num_frames=4, size=16, stride=2)
    y, cap2 = sh[0]
    assert cap2 == "a grey fade" and torch.allclose(x, y)
    with pytest.raises(ValueError, match="caption"):
        with (tmp_path / "bad.csv").open("w") as f:
            f.write("path\nx.mp4\n")
        VideoCSV(tmp_path / "bad.csv", 4, 16)
    # two processes split each step's batch; together they cover what one process with accumulation 2 sees
    one = StepBatches(100, 2, 2, 0, 1, seed=0)
    r0, r1 = StepBatches(100, 2, 1, 0, 2, seed=0), StepBatches(100, 2, 1, 1, 2, seed=0)
    assert one.indices(3, 0) + one.indices(3, 1) == r0.indices(3, 0) + r1.indices(3, 0)


def test_a_personalised_micro_base_loads_under_the_shipped_temporal_layers(tmp_path):
    """pipelines.training.personalise: a LoRA trained on the micro image part (striped frames) is saved in diffusers'
    format, loads into the video pipeline, changes its videos, and leaves the temporal layers as they were."""
    pytest.importorskip("peft")
    from pipelines.micro.loading import load_micro_pipeline
    from pipelines.training.personalise import prompts, train_lora

    pipe = load_micro_pipeline()
    pipe.set_progress_bar_config(disable=True)
    temporal = {n: p.detach().clone() for n, p in pipe.unet.named_parameters() if "motion_modules" in n}
    info = train_lora(pipe, tmp_path / "lora", steps=3, batch=2, log=lambda m: None)
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file() and info["loss_last"] > 0
    p = prompts()[0]["prompt"]
    kw = dict(num_frames=8, num_inference_steps=2, output_type="pt")
    plain = pipe(p, generator=torch.Generator().manual_seed(0), **kw).frames
    pipe.load_lora_weights(str(tmp_path / "lora"))
    styled = pipe(p, generator=torch.Generator().manual_seed(0), **kw).frames
    assert not torch.allclose(plain, styled, atol=1e-5)
    state = pipe.unet.state_dict()
    assert all(torch.equal(state[n], v) for n, v in temporal.items())
    from pipelines.micro import world

    assert {q["motion"] for q in prompts()} == set(world.MOTIONS)


def _former_train_lora(pipe, steps, batch, rank=8, lr=1e-3, background="striped", seed=0):
    """personalise.train_lora's own optimiser loop, before it ran on `loop.run_steps`: (per-step losses, LoRA state)."""
    import numpy as np
    from peft.utils import get_peft_model_state_dict

    from pipelines.training.losses import noised, simple_loss
    from pipelines.training.loop import TextCache
    from pipelines.training.personalise import _frames_batch, lora_image_unet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    image, params = lora_image_unet(pipe, rank)
    opt = torch.optim.AdamW(params, lr=lr)
    vae, sched = pipe.vae, pipe.scheduler
    alphas = sched.alphas_cumprod.float()
    encode = TextCache(pipe.text_encoder, pipe.tokenizer, pipe.device)
    losses = []
    for _ in range(steps):
        frames, captions = _frames_batch(rng, batch, background)
        with torch.no_grad():
            z0 = vae.encode(frames * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        t = torch.randint(0, len(alphas), (batch,))
        zt, target = noised(z0, torch.randn_like(z0), alphas[t], sched.config.prediction_type)
        loss = simple_loss(image(zt, t, encoder_hidden_states=encode(captions)).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, {k: v.detach().clone() for k, v in get_peft_model_state_dict(image).items()}


def test_the_lora_trains_on_the_one_loop_as_it_did_on_its_own(tmp_path):
    """personalise.train_lora on `loop.run_steps` takes the same steps as its former hand-written loop: the same
    losses at the logged steps and the same LoRA weights."""
    pytest.importorskip("peft")
    import numpy as np
    from safetensors.torch import load_file

    from pipelines.micro.loading import load_micro_pipeline
    from pipelines.training.personalise import train_lora

    pipe = load_micro_pipeline()
    losses, state = _former_train_lora(pipe, steps=3, batch=2)
    info = train_lora(pipe, tmp_path / "lora", steps=3, batch=2, log=lambda m: None, quiet=True)
    rows = [json.loads(x) for x in (tmp_path / "lora" / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 3]
    assert [r["loss"] for r in rows] == pytest.approx([losses[0], losses[2]], rel=1e-6, abs=0)
    assert info["loss_first"] == pytest.approx(np.mean(losses), rel=1e-6)
    saved = load_file(str(tmp_path / "lora" / "pytorch_lora_weights.safetensors"))
    assert len(saved) == len(state) > 0
    ours = sorted(saved.values(), key=lambda v: (tuple(v.shape), float(v.double().sum())))
    former = sorted(state.values(), key=lambda v: (tuple(v.shape), float(v.double().sum())))
    for a, b in zip(ours, former):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_one_optimiser_loop():
    """Every optimiser step in the library, the scripts and the bench runs in `loop.run_steps`."""
    root = Path(__file__).resolve().parents[1]
    for path in [*root.glob("pipelines/**/*.py"), *root.glob("rewards/*.py"), *root.glob("scripts/*.py"),
                 *root.glob("bench/*.py")]:
        if path.name == "loop.py" and path.parent.name == "training":
            continue
        text = path.read_text()
        assert "opt.step()" not in text and "optimizer.step()" not in text and "sched.step()" not in text, path


def test_ablation_runs_the_cumulative_table_by_default_and_follow_ups_on_request():
    from pipelines.training.ablation import CONFIGS, EXTRA_CONFIGS, selected

    assert [i for i, _, _ in selected(None)] == list(range(len(CONFIGS)))
    assert [n for _, n, _ in selected([len(CONFIGS)])] == [EXTRA_CONFIGS[0][0]]
    assert selected([len(CONFIGS)])[0][2]["w_dc"] == 0.0  # the follow-up drops L_DC from the full recipe
    with pytest.raises(ValueError, match="no configuration"):
        selected([99])


# ------------------------------------------------------------------------------------------- LR schedules
def test_harivo_config_decays_the_lr_from_1e4_to_1e5_through_get_scheduler():
    from pipelines.training.schedule import config_factor, lr_factor

    cfg = load_config("sd15")
    assert (cfg.lr, cfg.lr_end, cfg.lr_schedule) == (1e-4, 1e-5, "cosine")
    f = config_factor(cfg)
    lrs = [cfg.lr * f(s) for s in range(cfg.steps)]
    assert lrs[0] == 0.0  # get_scheduler's warm-up starts at 0
    assert lrs[cfg.lr_warmup] == pytest.approx(1e-4)
    assert lrs[-1] == pytest.approx(1e-5, rel=1e-9)  # the last step trains at HARIVO's final LR
    assert min(lrs[cfg.lr_warmup:]) == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs[cfg.lr_warmup:], lrs[cfg.lr_warmup + 1:]))  # monotone decay
    lin = lr_factor("linear", steps=11, warmup=0, floor=0.1)
    assert [round(lin(s), 6) for s in (0, 5, 10)] == [1.0, 0.55, 0.1]
    poly = lr_factor("polynomial", steps=11, warmup=0, floor=0.1)
    assert poly(10) == pytest.approx(0.1) and poly(0) == pytest.approx(1.0)
    assert lr_factor("constant_with_warmup", steps=10, warmup=4)(9) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        load_config("tiny", {"lr_schedule": "exp"})
    with pytest.raises(ValueError, match="lr_end"):
        load_config("tiny", {"lr_end": 1e-5})  # tiny's schedule is constant: an end LR needs a decay


def test_the_loop_logs_the_scheduled_lr(tmp_path):
    from pipelines.training.loop import train

    cfg = _tiny_cfg(tmp_path, steps=3, lr_schedule="linear", lr_end=1e-4, w_dc=0.0, w_trs=0.0)
    res = train(cfg, quiet=True)
    assert [round(r["lr"], 8) for r in res["log"]] == [1e-3, 5.5e-4, 1e-4]


# ------------------------------------------------------------------------------- real videos: seeking windows
def _indexed_mp4(path, n=48, fps=8, keyframe_every=8):
    """An mp4 (pipelines.media) whose frame k is flat grey 4·k: a decoded frame says which source frame it is."""
    import numpy as np

    from pipelines import media

    frames = np.stack([np.full((32, 48, 3), 4 * k, np.uint8) for k in range(n)])
    media.write_mp4(path, frames, fps=fps, keyframe_every=keyframe_every)
    return path


def _source_index(x):
    return [round(float((f.mean() + 1) / 2 * 255) / 4) for f in x]


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_random_windows_at_the_configured_fps_decoded_by_seeking(tmp_path, backend):
    import numpy as np

    from pipelines.training.data import WindowStats, read_video

    if backend == "pyav":
        pytest.importorskip("av")
    vid = _indexed_mp4(tmp_path / "v.mp4")
    starts = set()
    for seed in range(6):
        st = WindowStats(backend)
        x = read_video(vid, 4, 16, fps=2, rng=np.random.default_rng(seed), backend=backend, stats=st)
        assert x.shape == (4, 3, 16, 16)
        idx = _source_index(x)
        # 2 fps from an 8 fps source: every 4th frame, starting where the window was drawn
        assert [b - a for a, b in zip(idx, idx[1:])] == [4, 4, 4], idx
        assert abs(idx[0] - st.t0 * 8) <= 0.5
        starts.add(idx[0])
        if backend == "pyav":  # seeks to the key frame before the window: never decodes the whole file
            assert st.decoded <= 8 + 13 and st.total == 48
    assert len(starts) >= 4  # random windows, not the centre one every time
    # no fps: every stride-th frame; start=0 / 1 are the first and last windows
    assert _source_index(read_video(vid, 3, 16, stride=2, start=0.0, backend=backend)) == [0, 2, 4]
    assert _source_index(read_video(vid, 3, 16, stride=2, start=1.0, backend=backend)) == [43, 45, 47]
    with pytest.raises(ValueError, match="6.00 s long"):
        read_video(vid, 24, 16, fps=2, backend=backend)  # 24 frames at 2 fps need 11.5 s


def test_both_video_backends_read_the_same_window(tmp_path):
    pytest.importorskip("av")
    from pipelines.training.data import read_video

    vid = _indexed_mp4(tmp_path / "v.mp4")
    a = read_video(vid, 5, 16, fps=4, start=0.3, backend="pyav")
    b = read_video(vid, 5, 16, fps=4, start=0.3, backend="ffmpeg")
    assert _source_index(a) == _source_index(b)


# ----------------------------------------------------------------------------- Table A1 in miniature (normality)
def test_jarque_bera_matches_scipy_and_the_closed_form():
    import math

    import numpy as np

    from pipelines.training.normality import frame_differences, group_stats, jarque_bera

    rng = np.random.default_rng(0)
    for x in (rng.normal(size=500), rng.exponential(size=300), rng.uniform(size=50)):
        jb, p = jarque_bera(x)
        try:
            from scipy import stats
        except ImportError:
            pass
        else:
            ref = stats.jarque_bera(x)
            assert jb == pytest.approx(ref.statistic, rel=1e-10) and p == pytest.approx(ref.pvalue, rel=1e-8)
    # a closed-form case: two equal point masses have skewness 0 and kurtosis 1, JB = n/6 · 1
    jb, p = jarque_bera([0.0, 1.0] * 3)
    assert jb == pytest.approx(1.0) and p == pytest.approx(math.exp(-0.5))
    assert math.isnan(jarque_bera([2.0] * 4)[0])
    v = rng.random((5, 3, 4, 4))
    d = frame_differences(v)
    assert d.shape == (4, 48) and np.allclose(d[1], (v[2] - v[1]).ravel())
    s = group_stats([v, rng.random((5, 3, 4, 4))])
    assert s["norms"] == 8 and s["diffs_tested"] == 8 and 0 <= s["frac_pass_p05"] <= 1


def test_table_a1_correlated_noise_is_gaussian_per_frame_but_not_per_video():
    """HARIVO Table A1 as the paper runs it: PYoCo's correlated noise keeps every element and frame N(0, 1), yet far
    fewer whole videos pass the Jarque–Bera test than i.i.d. noise does."""
    import numpy as np

    from pipelines.training.normality import correlated_noise, noise_pass_rate

    rng = np.random.default_rng(0)
    for model, alpha in (("mixed", 2.0), ("progressive", 2.0)):
        v = np.stack([correlated_noise(rng, model, (6, 2, 8, 8), alpha) for _ in range(400)])
        assert abs(float(v.std()) - 1.0) < 0.03 and abs(float(v.mean())) < 0.03
        corr = float(np.mean(v[:, 1] * v[:, 0]))  # adjacent frames: α²/(1+α²) (mixed), α/√(1+α²) (progressive)
        expected = alpha**2 / (1 + alpha**2) if model == "mixed" else alpha / np.sqrt(1 + alpha**2)
        assert abs(corr - expected) < 0.05, (model, corr, expected)
    shape = (8, 4, 16, 16)
    iid = noise_pass_rate("iid", 300, shape)
    mixed = noise_pass_rate("mixed", 300, shape, alpha=2.0)
    assert iid["frac_pass_p05"] > 0.88  # ~95 % by construction of the test
    assert mixed["frac_pass_p05"] < iid["frac_pass_p05"] - 0.2
    assert min(iid["first_frame_frac_pass_p05"], mixed["first_frame_frac_pass_p05"]) > 0.85
    with pytest.raises(ValueError, match="noise model"):
        correlated_noise(rng, "pink", shape)
