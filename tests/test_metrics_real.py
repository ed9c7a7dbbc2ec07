"""Metrics for real weights (`rewards.metrics.real_metrics`, `rewards.i3d`) on tiny random models and synthetic
videos with known answers; nothing downloads."""
import os

import numpy as np
import pytest
import torch

from rewards import RewardError
from rewards.i3d import InceptionI3d, fvd, frechet_distance, i3d_features, load_i3d
from rewards.metrics import MetricsConfig, av_align, flow_magnitudes, real_metrics
from rewards.testing import tiny_clip

from .audio_helpers import SR, click_track

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def clips():
    return tiny_clip(seed=0), tiny_clip(seed=1), tiny_clip(seed=2)  # evaluator, style evaluator, "guiding"


def _cfg(clips, **kw):
    ev, st, guide = clips
    return MetricsConfig(clip=ev, style_clip=st, guiding_clip=guide, device="cpu", **kw)


def _moving_square(n, moves, size=48, side=10, step=4, seed=0):
    """A bright square on a textured background that moves `step` px right on the transitions k -> k+1 in
    `moves` and stays still otherwise."""
    g = torch.Generator().manual_seed(seed)
    bg = 0.2 + 0.1 * torch.rand(1, size, size, generator=g).expand(3, size, size)
    frames, x = [], 4
    for k in range(n):
        if k > 0 and (k - 1) in moves:
            x += step
        f = bg.clone()
        f[:, 18:18 + side, x:x + side] = 0.9
        frames.append(f)
    return torch.stack(frames)


# ------------------------------------------------------------------------------------------------ CLIP metrics
def test_clip_metrics_known_answers(clips):
    ev, st, _ = clips
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(3, 32, 32, generator=g)
    same = frame[None].repeat(4, 1, 1, 1)
    out = real_metrics(same, prompt="a red circle", style_image=frame, config=_cfg(clips))
    assert out["frame_consistency"] == pytest.approx(1.0, abs=1e-5)  # identical frames
    assert out["style_score"] == pytest.approx(0.0, abs=1e-4)  # the reference itself
    cos = float(ev.encode_images(frame[None]) @ ev.encode_text(["a red circle"])[0])
    assert out["clip_sim"] == pytest.approx(cos, abs=1e-5)  # the evaluator CLIP's cosine, not another's
    assert set(out["skipped"]) == {"av_align", "imagebind", "fvd"}
    varied = real_metrics(torch.rand(4, 3, 32, 32, generator=g), style_image=frame, config=_cfg(clips))
    assert varied["frame_consistency"] < 0.999 and varied["style_score"] > 0
    assert "clip_sim" in varied["skipped"]
    # a set of videos: per-video metrics averaged
    batch = torch.stack([same, torch.rand(4, 3, 32, 32, generator=g)])
    both = real_metrics(batch, config=_cfg(clips))
    single = [real_metrics(v, config=_cfg(clips))["frame_consistency"] for v in batch]
    assert both["frame_consistency"] == pytest.approx(np.mean(single), abs=1e-6)


def test_real_metrics_refuses_the_guiding_clip_and_bad_input(clips):
    ev, _, _ = clips
    with pytest.raises(RewardError, match="different CLIP"):
        real_metrics(torch.rand(3, 3, 32, 32), config=MetricsConfig(clip=ev, guiding_clip=ev))
    with pytest.raises(RewardError, match="different CLIP"):  # by name, without loading anything
        real_metrics(torch.rand(3, 3, 32, 32), config=MetricsConfig(clip="openai/clip-vit-base-patch16"))
    with pytest.raises(RewardError, match="shape"):
        real_metrics(torch.rand(3, 32, 32), config=_cfg(clips))
    with pytest.raises(RewardError, match="waveform, sample_rate"):
        real_metrics(torch.rand(3, 3, 32, 32), audio=np.zeros(100), config=_cfg(clips))


# ------------------------------------------------------------------------------------------------ AV-Align
def test_flow_magnitude_of_a_moving_square():
    pytest.importorskip("cv2")
    frames = _moving_square(8, moves={2, 5})
    m = flow_magnitudes(frames)
    assert m.shape == (7,)
    moving, still = m[[2, 5]], np.delete(m, [2, 5])
    assert still.max() < 0.02 and moving.min() > 20 * max(still.max(), 1e-3)
    # a bigger move gives more flow
    far = flow_magnitudes(_moving_square(3, moves={0}, step=8))[0]
    assert far > 1.1 * m[2]


def test_av_align_with_optical_flow_known_answers(clips):
    pytest.importorskip("cv2")
    fps, n = 4, 8
    frames = _moving_square(n, moves={1, 4})  # moves show at frames 2 and 5: t = 0.5 s and 1.25 s
    synced = click_track([0.5, 1.25], 2.0)
    assert av_align(frames, synced, SR, fps, motion="flow") == pytest.approx(1.0)
    off = click_track([0.25, 1.75], 2.0)
    assert av_align(frames, off, SR, fps, motion="flow") == pytest.approx(0.0)
    half = click_track([0.5, 1.75], 2.0)  # one of two onsets matched: IoU = 1 / (2 + 2 − 1)
    assert av_align(frames, half, SR, fps, motion="flow") == pytest.approx(1 / 3)
    out = real_metrics(frames, audio=(synced, SR), config=_cfg(clips, fps=fps))
    assert out["av_align"] == pytest.approx(1.0) and "imagebind" in out["skipped"]


def test_av_align_without_opencv_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(RewardError, match=r"\[metrics\]"):
        flow_magnitudes(torch.rand(3, 3, 16, 16))


def test_imagebind_score_from_a_given_model(clips):
    from rewards.imagebind import ImageBindModel
    from rewards.metrics import imagebind_score

    torch.manual_seed(0)
    model = ImageBindModel(out_embed_dim=8, vision_embed_dim=16, vision_num_blocks=2, vision_num_heads=2,
                           image_size=28, audio_embed_dim=16, audio_num_blocks=2, audio_num_heads=2).eval()
    frames, wav = torch.rand(4, 3, 28, 28), click_track([0.3], 1.0)
    out = real_metrics(frames, audio=(wav, SR), config=_cfg(clips, imagebind=model, motion="diff"))
    assert out["imagebind"] == pytest.approx(imagebind_score(frames, wav, SR, model=model), abs=1e-6)
    assert -1.0 <= out["imagebind"] <= 1.0 and "imagebind" not in out["skipped"]


# ------------------------------------------------------------------------------------------------ FVD
def test_frechet_distance_matches_closed_forms():
    # 1-D Gaussians: (μ1 − μ2)² + (σ1 − σ2)²
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # general SPD covariances: tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½, computed here by symmetric eigendecompositions
    rng = np.random.RandomState(0)
    A, B = rng.randn(5, 5), rng.randn(5, 5)
    s1, s2 = A @ A.T + 0.1 * np.eye(5), B @ B.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.randn(5), rng.randn(5)

    def psd_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = psd_sqrt(s1)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(psd_sqrt(r1 @ s2 @ r1))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(RewardError, match="shapes"):
        frechet_distance(mu1, s1, mu2[:3], s2)


@pytest.fixture(scope="module")
def i3d_and_path(tmp_path_factory):
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    # He init keeps the activations' scale through 60 random layers (PyTorch's default init shrinks them to ~1e-7,
    # which would leave the feature sets nearly identical whatever the input)
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("i3d") / "i3d_rgb.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_i3d_loads_a_user_state_dict_strictly(i3d_and_path, tmp_path):
    model, path = i3d_and_path
    loaded = load_i3d(path)
    x = torch.rand(2, 8, 3, 32, 32)
    a, b = i3d_features(model, x, size=32), i3d_features(loaded, x, size=32)
    assert a.shape == (2, 400) and np.allclose(a, b)  # logits: the original FVD's features
    assert i3d_features(loaded, x, size=32, features="pool").shape == (2, 1024)
    sd = dict(model.state_dict())
    sd.pop("Mixed_5c.b3b.conv3d.weight")
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(RewardError, match="Inception-I3D"):
        load_i3d(tmp_path / "bad.pt")
    with pytest.raises(RewardError, match="not found"):
        load_i3d(tmp_path / "missing.pt")


def test_fvd_of_a_set_with_itself_is_zero_and_grows_with_a_shift(i3d_and_path, clips):
    model, path = i3d_and_path
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 8, 3, 32, 32, generator=g)
    videos = (0.6 * base + 0.4 * torch.rand(5, 8, 3, 32, 32, generator=g)).clamp(0, 1)
    same = fvd(videos, videos, model, size=32)
    small = fvd(videos, (videos + 0.05).clamp(0, 1), model, size=32)
    large = fvd(videos, (videos + 0.3).clamp(0, 1), model, size=32)
    feats = i3d_features(model, videos, size=32)
    assert feats.std(0).mean() > 1e-2  # the features do vary across videos (a meaningful covariance)
    assert same == pytest.approx(0.0, abs=1e-6 * large)
    assert 1e-3 * large < small < large
    out = real_metrics(videos, reference_videos=list((videos + 0.3).clamp(0, 1)),
                       config=_cfg(clips, i3d=str(path), i3d_size=32))
    assert out["fvd"] == pytest.approx(large, rel=1e-6)
    assert real_metrics(videos[0], reference_videos=videos, config=_cfg(clips, i3d=model, i3d_size=32))[
        "skipped"]["fvd"].startswith("needs at least 2")
