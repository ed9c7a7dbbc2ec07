"""The Wan presets (`wan`, `wan-lean`, `wan-tiny`): their one code path, every task through the CLI's request layer,
the key-frame → latent map of Wan's causal VAE, interpolation's refusals and replacement, `auto`'s choice, and the
error that names the hub id and the pre-download command when the weights cannot be had."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from pipelines import media
from pipelines.presets import (AUTO_WAN_GIB, AUTO_WAN_LEAN_GIB, WAN_MODEL, WeightsUnavailable, build_wan, choose_auto,
                               load_preset, wan_preset)
from pipelines.request import GenerationRequest, RequestError, validate
from pipelines.wan import GuidedWanPipeline, latent_frame_of, video_frames_of

from .conftest import ROOT
from .wan_helpers import tiny_wan_components

PROMPT = "a red cat"
GIB = 2**30


def _cli(*args, env=None, timeout=600):
    e = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "pipelines", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=str(ROOT), stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def wan_tiny():
    return load_preset("wan-tiny", device="cpu")


# --- the frame → latent map ------------------------------------------------------------------------------------

def test_frame_latent_map_is_one_then_four():
    assert [latent_frame_of(f) for f in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert video_frames_of(0) == [0] and video_frames_of(1) == [1, 2, 3, 4] and video_frames_of(8) == [29, 30, 31, 32]
    for n in (5, 9, 33, 81):  # every valid count: latent frames partition the video, the last key is in the last one
        k_last = (n - 1) // 4
        assert sorted(f for k in range(k_last + 1) for f in video_frames_of(k)) == list(range(n))
        assert latent_frame_of(n - 1) == k_last and video_frames_of(k_last)[-1] == n - 1
    with pytest.raises(ValueError):
        latent_frame_of(-1)


def test_frame_latent_map_matches_the_causal_vae():
    """On a real (tiny random) `AutoencoderKLWan`: changing the video frames of latent frame k changes latent k and
    no latent before it; changing latent frame k changes its video frames and no video frame before them."""
    vae = tiny_wan_components()["vae"].double().eval()
    g = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, 9, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        z = vae.encode(video).latent_dist.mean
        assert z.shape[2] == 3  # 9 frames → 1 + 2 latent frames
        for k in range(3):
            v2 = video.clone()
            v2[:, :, video_frames_of(k)] += 0.5
            z2 = vae.encode(v2).latent_dist.mean
            diff = (z2 - z).abs().amax(dim=(0, 1, 3, 4))
            assert torch.all(diff[:k] == 0), (k, diff)
            assert diff[k] > 1e-6, (k, diff)
        x = vae.decode(z).sample
        assert x.shape[2] == 9
        for k in range(3):
            z2 = z.clone()
            z2[:, :, k] += 1.0
            d = (vae.decode(z2).sample - x).abs().amax(dim=(0, 1, 3, 4))
            first = video_frames_of(k)[0]
            assert torch.all(d[:first] == 0), (k, d)
            assert torch.all(d[video_frames_of(k)] > 1e-8), (k, d)


# --- the presets' code path ------------------------------------------------------------------------------------

def test_wan_preset_from_a_saved_folder_takes_the_hub_path(tmp_path):
    """`build_wan` + `wan_preset` on a folder in diffusers' layout (what `from_pretrained` reads from the hub cache):
    the fp32 VAE, the shipped scheduler's class with Wan's 480p flow shift, 480x832, 1 + 4k frames."""
    GuidedWanPipeline(**tiny_wan_components()).save_pretrained(tmp_path / "wan")
    pipe = build_wan(str(tmp_path / "wan"), dtype=torch.float32)
    assert isinstance(pipe, GuidedWanPipeline) and pipe.vae.dtype == torch.float32
    preset = wan_preset(pipe, "wan", torch.device("cpu"), "test")
    assert type(preset.pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert preset.pipe.scheduler.config.shift == 3.0
    assert preset.dims(480) == (480, 832) and preset.default_size == 480 and preset.fps == 16
    assert all(n % 4 == 1 for n in preset.frame_choices) and preset.default_frames == 33
    assert preset.audio_reward == "imagebind" and preset.pipe.preview_stride == 10
    assert preset.reward_placement() == (torch.device("cpu"), torch.float32)
    # TITAN stays in forward mode on the real presets (the direct guess would backprop through the whole decode)
    assert preset.guidance_defaults("titan", "style") == {"guess": "score"}
    assert preset.guidance_defaults("titan", "t2v")["guess"] == "score"


def test_wan_preset_sets_unipc_flow_shift():
    from diffusers import UniPCMultistepScheduler

    sch = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=7.0)
    preset = wan_preset(GuidedWanPipeline(**tiny_wan_components(scheduler=sch)), "wan", torch.device("cpu"), "t")
    assert type(preset.pipe.scheduler) is UniPCMultistepScheduler
    assert preset.pipe.scheduler.config.flow_shift == 3.0 and preset.pipe.scheduler.config.use_flow_sigmas


def test_missing_weights_name_the_id_and_the_download(tmp_path):
    """Offline with an empty cache: exit 2, the hub id and the pre-download command in the error."""
    r = _cli("generate", "--preset", "wan", "--task", "t2v", "--prompt", PROMPT, "--method", "none",
             "--out", tmp_path / "o.mp4", "--report", tmp_path / "o.json", env={"HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("error: --preset:") and WAN_MODEL in err and f"hf download {WAN_MODEL}" in err
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(WeightsUnavailable, match="hf download"):
        build_wan(str(tmp_path / "nowhere"))


def test_auto_chooses_wan_by_free_memory():
    assert choose_auto(int((AUTO_WAN_GIB + 1) * GIB), wan=True)[0] == "wan"
    name, offload, why = choose_auto(int((AUTO_WAN_LEAN_GIB + 1) * GIB), wan=True)
    assert name == "wan-lean" and offload and "GiB" in why
    # below wan-lean: the AnimateDiff chain, as without Wan weights
    below = int((AUTO_WAN_LEAN_GIB - 1) * GIB)
    assert choose_auto(below, wan=True)[:2] == choose_auto(below)[:2] == ("animatediff-lean", False)
    assert choose_auto(int((AUTO_WAN_GIB + 1) * GIB))[0] == "animatediff"  # no Wan weights: never Wan


# --- every task through the request layer and the CLI --------------------------------------------------------

@pytest.mark.parametrize("task,args", [
    ("t2v", ["--method", "titan"]),
    ("style", ["--method", "freedom", "--style-image", "assets/examples/style_stripes.png"]),
    ("audio", ["--method", "free2guide", "--audio", "assets/examples/impacts.wav"]),
    ("interpolate", ["--method", "titan", "--first-frame", "assets/examples/first_frame.png",
                     "--last-frame", "assets/examples/last_frame.png"]),
])
def test_cli_runs_every_task_on_wan(tmp_path, examples_dir, task, args):
    out, rep = tmp_path / "o.mp4", tmp_path / "o.json"
    r = _cli("generate", "--preset", "wan-tiny", "--task", task, "--prompt", PROMPT, *args, "--steps", 2,
             "--out", out, "--report", rep)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(rep.read_text())
    assert data["preset"] == "wan-tiny" and data["task"] == task
    assert (data["frames"], data["height"], data["width"]) == (9, 16, 32)
    assert len(data["reward_per_step"]) == 2 and data["final_reward"] is not None
    assert media.count_frames(out) == 9
    if task == "interpolate":
        assert any("latent frame 0" in n for n in data["notices"])


def test_wan_refuses_frame_counts_it_cannot_take(wan_tiny):
    with pytest.raises(RequestError) as e:
        validate(GenerationRequest(task="t2v", prompt=PROMPT, frames=8), wan_tiny)
    assert e.value.field == "frames" and "[5, 9]" in str(e.value)


def test_wan_refuses_replacement_alone_and_says_why(wan_tiny, examples_dir):
    req = GenerationRequest(task="interpolate", prompt=PROMPT, first_frame=str(examples_dir / "first_frame.png"),
                            last_frame=str(examples_dir / "last_frame.png"), interpolation_mode="replacement")
    with pytest.raises(RequestError) as e:
        validate(req, wan_tiny)
    assert e.value.field == "interpolation_mode"
    assert "latent frame" in e.value.message and "'both'" in e.value.message and "'reward'" in e.value.message
    for mode, hooks in (("both", 1), ("reward", 0)):
        req.interpolation_mode = mode
        p = validate(req, wan_tiny)
        assert len(p.setup.hooks) == hooks and p.setup.reward.indices == [0, 8]
        assert p.setup.hooks == [] or p.setup.hooks[0].fixed_frames(3) == [0]


def test_wan_key_replacement_ends_on_the_first_keys_latent(wan_tiny, examples_dir):
    """`both` on Wan: the final latent frame 0 is exactly the first key's normalised encoding (one-frame video)."""
    req = GenerationRequest(task="interpolate", prompt=PROMPT, first_frame=str(examples_dir / "first_frame.png"),
                            last_frame=str(examples_dir / "last_frame.png"), method="none", steps=2)
    p = validate(req, wan_tiny)
    hook = p.setup.hooks[0]
    pipe = wan_tiny.pipe
    out = pipe(PROMPT, num_frames=p.frames, height=p.height, width=p.width, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), hooks=p.setup.hooks, output_type="latent",
               max_sequence_length=16)
    z = out.frames
    assert z.shape[2] == 3
    torch.testing.assert_close(z[:, :, :1].float(), hook.latents.to(z).float(), rtol=0, atol=1e-6)
    # its encoding is of the first key alone: the VAE's encoding of a one-frame video of that image
    cfg = pipe.vae.config
    img = media.fit_size(media.load_image(str(examples_dir / "first_frame.png"), "f"), p.width, p.height)
    x = torch.from_numpy(__import__("numpy").array(img)).permute(2, 0, 1).float()[None, :, None] / 255 * 2 - 1
    with torch.no_grad():
        mu = pipe.vae.encode(x).latent_dist.mean
    mean, std = (torch.tensor(v).view(1, -1, 1, 1, 1) for v in (cfg.latents_mean, cfg.latents_std))
    want = (mu - mean) / std
    torch.testing.assert_close(hook.latents.float(), want.float(), rtol=1e-3, atol=1e-3)


def test_preview_stride_spaces_the_whole_video_decodes(wan_tiny):
    pipe = wan_tiny.pipe
    old = pipe.preview_stride
    try:
        pipe.preview_stride = 2
        events = list(pipe.stream(PROMPT, num_frames=5, height=16, width=32, num_inference_steps=5,
                                  generator=torch.Generator().manual_seed(0), preview_every=1, max_sequence_length=16,
                                  eta=1.0))
    finally:
        pipe.preview_stride = old
    steps = [e for e in events if not e.final]
    assert [e.preview is not None for e in steps] == [True, False, True, False, True]


def test_fit_size_crops_to_the_aspect():
    from PIL import Image

    img = Image.new("RGB", (100, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 100, 20))  # a blue band on top: cropped away for a 2:1 frame
    out = media.fit_size(img, 32, 16)
    assert out.size == (32, 16)
    assert out.getpixel((16, 0)) == (255, 0, 0)


def test_auto_loads_wan_where_it_fits_and_falls_back(monkeypatch):
    """`load_preset("auto")` on a (faked) CUDA machine with the Wan weights: `wan` / `wan-lean` by free memory, the
    AnimateDiff chain below that or when Wan cannot be loaded."""
    from pipelines import presets

    built = []

    def fake(kind, fail=False):
        def build(device, reason, name=None, **kw):
            if fail:
                raise WeightsUnavailable(f"could not load {WAN_MODEL}")
            built.append((name or kind, kw))
            return presets.Preset(name=name or kind, reason=reason, pipe=None, device=device, fps=8,
                                  frame_choices=[16], size_choices=[512], default_frames=16, default_size=512,
                                  default_steps=25)
        return build

    monkeypatch.setattr(presets, "_wan_available", lambda: (True, "CUDA GPU found"))
    monkeypatch.setattr(presets, "_animatediff_available", lambda: (True, "CUDA GPU found"))
    monkeypatch.setattr(presets, "_wan", fake("wan"))
    monkeypatch.setattr(presets, "_animatediff", fake("animatediff"))
    monkeypatch.setattr(presets, "_animatediff_lean", fake("animatediff-lean"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for i, (free, want, kw) in enumerate([(AUTO_WAN_GIB + 1, "wan", {"offload": False}),
                                          (AUTO_WAN_LEAN_GIB + 1, "wan-lean", {"offload": True}),
                                          (AUTO_WAN_LEAN_GIB - 1, "animatediff-lean", {"cpu_offload": False})]):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None, f=free: (int(f * GIB), 80 * GIB))
        preset = presets.load_preset("auto", device=f"cuda:{20 + i}")
        assert preset.name == want and built[-1] == (want, kw), (free, built[-1])
        presets._CACHE.pop(("auto", f"cuda:{20 + i}"), None)
    monkeypatch.setattr(presets, "_wan", fake("wan", fail=True))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int((AUTO_WAN_GIB + 1) * GIB), 80 * GIB))
    assert presets.load_preset("auto", device="cuda:30").name == "animatediff"
    presets._CACHE.pop(("auto", "cuda:30"), None)


def test_aesthetic_reward_guides_wan(wan_tiny):
    """The studio has no aesthetic tab; the aesthetic reward takes Wan's decoded frames like any other (Python API)."""
    from rewards.aesthetic import AestheticReward
    from rewards.testing import tiny_clip

    from pipelines.guidance import make_guidance

    reward = AestheticReward(clip=tiny_clip(), allow_random_head=True)
    out = wan_tiny.pipe(PROMPT, num_frames=5, height=16, width=32, num_inference_steps=2, max_sequence_length=16,
                        generator=torch.Generator().manual_seed(0), guidance=make_guidance("titan"), reward=reward,
                        output_type="pt")
    assert out.frames.shape[1:3] == (5, 3) and out.final_reward is not None
    assert torch.isfinite(torch.as_tensor(out.final_reward)).all()


def test_wan_latent_rgb_fit_and_fast_previews(tmp_path, wan_tiny):
    """`fit_wan_latent_rgb` recovers a VAE whose decode is linear (exactly, up to least squares), the map survives
    its JSON file, and with `pipe.latent_rgb` set previews come from the map: no VAE decode per step."""
    from pipelines.preview import fit_wan_latent_rgb, load_latent_rgb, save_latent_rgb

    from .wan_helpers import linear_decode_vae

    vae = linear_decode_vae().eval()
    imgs = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    m = fit_wan_latent_rgb(vae, imgs)
    cfg = vae.config
    with torch.no_grad():
        mu = vae.encode(imgs[:2, :, None] * 2 - 1).latent_dist.mode()
        dec = vae.decode(mu).sample[:, :, 0] / 2 + 0.5
    assert dec.min() > 0 and dec.max() < 1  # no clamping: the decode is exactly affine in the latents
    z = (mu - torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)) / torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    pred = m(z[:, :, 0], max_side=None)
    pooled = torch.nn.functional.adaptive_avg_pool2d(dec, z.shape[-2:])
    torch.testing.assert_close(pred, pooled, atol=1e-4, rtol=0)
    save_latent_rgb(m, tmp_path / "m.json")
    m2 = load_latent_rgb(tmp_path / "m.json")
    torch.testing.assert_close(m2.weight, m.weight) and torch.testing.assert_close(m2.bias, m.bias)
    with pytest.raises(ValueError, match="m.json"):
        (tmp_path / "m.json").write_text("{}")
        load_latent_rgb(tmp_path / "m.json")

    pipe = wan_tiny.pipe
    calls = []
    orig = pipe.vae.decode
    pipe.vae.decode = lambda *a, **k: calls.append(1) or orig(*a, **k)
    try:
        pipe.latent_rgb = m
        events = list(pipe.stream(PROMPT, num_frames=5, height=16, width=32, num_inference_steps=3,
                                  generator=torch.Generator().manual_seed(0), preview_every=1, track_reward=False,
                                  max_sequence_length=16))
    finally:
        pipe.latent_rgb = None
        pipe.vae.decode = orig
    previews = [e.preview for e in events if not e.final]
    assert all(p is not None and p.shape == (2, 3, 16, 32) for p in previews)  # one image per latent frame
    assert len(calls) == 1  # the final video only


def test_mg_normalized_reads_wans_latent_shape(wan_tiny):
    """HARIVO's α read at Wan's latent size: 1 + (frames − 1)/4 latent frames, 16 channels, H/8 × W/8."""
    from pipelines.guidance.temporal import normalized_mg_scale
    from pipelines.request import run

    p = validate(GenerationRequest(task="t2v", prompt=PROMPT, mg_scale=40, mg_normalized=True), wan_tiny)
    assert run(p, wan_tiny).mg_alpha() == pytest.approx(normalized_mg_scale(40, 3, (2, 4), 16))


def test_wan_lean_offloads_the_text_encoder_after_each_prompt():
    """`offload_text_encoder`: the hook's `offload` runs right after the prompt is encoded, once per generation, and
    the frames equal those of the plain pipeline."""
    plain = GuidedWanPipeline(**tiny_wan_components())
    lean = GuidedWanPipeline(**tiny_wan_components())
    preset = wan_preset(lean, "wan-lean", torch.device("cpu"), "t", offload=True, tiny=True, flow_shift=None)
    hook = preset.pipe._text_encoder_hook
    calls = []
    orig = hook.offload
    hook.offload = lambda: calls.append(1) or orig()
    kw = dict(num_frames=5, height=16, width=32, num_inference_steps=2, max_sequence_length=16, output_type="pt")
    a = lean(PROMPT, generator=torch.Generator().manual_seed(0), **kw).frames
    assert calls == [1]
    b = plain(PROMPT, generator=torch.Generator().manual_seed(0), **kw).frames
    torch.testing.assert_close(a, b, rtol=0, atol=0)
