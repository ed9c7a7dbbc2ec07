"""Kaldi filterbank vs an independent numpy reference, ImageBind (tiny dims + full-size key names on meta), AV-sync."""
import math

import numpy as np
import pytest
import torch

from rewards import RewardError
from rewards.audio import (
    AVSyncReward,
    ImageBindReward,
    clip_timepoints,
    imagebind_audio_clips,
    kaldi_fbank,
    motion_energy,
)
from rewards.imagebind import HUGE_CONFIG, ImageBindModel, filter_state_dict, imagebind_huge, load_imagebind, resolve_checkpoint

from .audio_helpers import SR, click_track



def _signal(seconds=1.0, seed=0):
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t * (1 + t)) + 0.05 * rng.randn(t.size)
    return x.astype(np.float32)


def numpy_kaldi_fbank(x, num_bins=128, sr=16000):
    """Straightforward reference: loop over frames, numpy FFT, own Hz->mel triangle matrix."""
    x = np.asarray(x, dtype=np.float64)
    win, hop, nfft = 400, 160, 512
    n_frames = 1 + (len(x) - win) // hop
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / (win - 1)) for n in range(win)])

    def hz2mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = hz2mel(20.0), hz2mel(sr / 2)
    edges = [lo + i * (hi - lo) / (num_bins + 1) for i in range(num_bins + 2)]
    fft_mel = hz2mel(np.arange(nfft // 2 + 1) * sr / nfft)
    weights = np.zeros((num_bins, nfft // 2 + 1))
    for m in range(num_bins):
        l, c, r = edges[m], edges[m + 1], edges[m + 2]
        for k in range(nfft // 2):  # the Nyquist bin gets no weight in Kaldi
            if l < fft_mel[k] <= c:
                weights[m, k] = (fft_mel[k] - l) / (c - l)
            elif c < fft_mel[k] < r:
                weights[m, k] = (r - fft_mel[k]) / (r - c)
    out = np.zeros((n_frames, num_bins))
    for i in range(n_frames):
        fr = x[i * hop: i * hop + win].copy()
        fr -= fr.mean()
        pre = np.empty_like(fr)
        pre[0] = fr[0] - 0.97 * fr[0]
        pre[1:] = fr[1:] - 0.97 * fr[:-1]
        buf = np.zeros(nfft)
        buf[:win] = pre * window
        power = np.abs(np.fft.rfft(buf)) ** 2
        out[i] = np.log(np.maximum(weights @ power, np.finfo(np.float32).eps))
    return out


def test_kaldi_fbank_matches_numpy_reference():
    x = _signal(0.5)
    ours = kaldi_fbank(torch.from_numpy(x), num_mel_bins=128).double().numpy()
    ref = numpy_kaldi_fbank(x, 128)
    assert ours.shape == ref.shape == (1 + (len(x) - 400) // 160, 128)
    # relative error on the mel energies (log domain difference ~ relative error)
    assert np.max(np.abs(ours - ref)) < 1e-3
    ours64 = kaldi_fbank(torch.from_numpy(x).double(), num_mel_bins=64).numpy()
    assert np.max(np.abs(ours64 - numpy_kaldi_fbank(x, 64))) < 1e-6


def test_kaldi_fbank_errors():
    with pytest.raises(RewardError, match="fewer than one"):
        kaldi_fbank(torch.zeros(100))
    with pytest.raises(RewardError, match="1-D"):
        kaldi_fbank(torch.zeros(2, 2, 1000))
    silent = kaldi_fbank(torch.zeros(1600))  # log floor, no NaN / -inf
    assert torch.isfinite(silent).all()


def test_imagebind_audio_clips():
    from fractions import Fraction

    starts = [s for s, _ in clip_timepoints(Fraction(5), Fraction(2), 3)]
    assert starts == [0, Fraction(3, 2), 3]
    clips = imagebind_audio_clips(_signal(5.0), SR)
    assert clips.shape == (3, 1, 128, 204)
    # 2 s -> 198 frames, padded with zeros (normalised: (0 - mean) / std)
    torch.testing.assert_close(clips[0, 0, :, 198:], torch.full((128, 6), 4.268 / 9.138))
    # short audio: every clip starts at 0, stereo (channels, n) is averaged, other rates resampled
    short = _signal(1.0)
    st = imagebind_audio_clips(np.stack([short, short]), SR)
    assert st.shape == (3, 1, 128, 204)
    torch.testing.assert_close(st[0], st[2])
    assert imagebind_audio_clips(_signal(1.0)[::2], 8000).shape == (3, 1, 128, 204)
    with pytest.raises(RewardError, match="sample rate"):
        imagebind_audio_clips(short, 0)
    with pytest.raises(RewardError, match="empty"):
        imagebind_audio_clips(np.zeros(0), SR)


TINY = dict(out_embed_dim=8, vision_embed_dim=16, vision_num_blocks=2, vision_num_heads=2, image_size=28,
            audio_embed_dim=16, audio_num_blocks=2, audio_num_heads=2)


@pytest.fixture(scope="module")
def tiny_imagebind():
    torch.manual_seed(0)
    return ImageBindModel(**TINY).eval()


def test_imagebind_tiny_forward_and_strict_reload(tiny_imagebind, tmp_path):
    m = tiny_imagebind
    v = m.encode("vision", torch.randn(2, 3, 28, 28))
    a = m.encode("audio", torch.randn(3, 1, 128, 204))
    assert v.shape == (2, 8) and a.shape == (3, 8)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))
    out = m({"vision": torch.randn(1, 2, 3, 28, 28), "audio": torch.randn(1, 3, 1, 128, 204)})
    assert out["vision"].shape == (1, 8) and out["audio"].shape == (1, 8)
    # a checkpoint with extra modalities (as the official one) loads: other modalities are filtered out
    sd = dict(m.state_dict())
    sd["modality_trunks.text.blocks.0.attn.in_proj_weight"] = torch.zeros(3, 3)
    path = tmp_path / "ib.pth"
    torch.save(sd, path)
    m2 = load_imagebind(path, config=TINY)
    x = torch.randn(1, 3, 28, 28)
    torch.testing.assert_close(m2.encode("vision", x), m.encode("vision", x))
    m3 = ImageBindModel(**TINY)
    m3.load_state_dict(filter_state_dict(sd), strict=True)
    with pytest.raises(RewardError, match="patches"):
        m.encode("vision", torch.randn(1, 3, 56, 56))


def test_imagebind_full_size_keys_match_official_names():
    with torch.device("meta"):
        model = imagebind_huge()
    sd = model.state_dict()
    assert all(t.is_meta for t in sd.values())
    expected_shapes = {
        "modality_preprocessors.vision.cls_token": (1, 1, 1280),
        "modality_preprocessors.vision.rgbt_stem.proj.1.weight": (1280, 3, 2, 14, 14),
        "modality_preprocessors.vision.pos_embedding_helper.pos_embed": (1, 257, 1280),
        "modality_preprocessors.audio.cls_token": (1, 1, 768),
        "modality_preprocessors.audio.rgbt_stem.proj.weight": (768, 1, 16, 16),
        "modality_preprocessors.audio.rgbt_stem.norm_layer.weight": (768,),
        "modality_preprocessors.audio.pos_embedding_helper.pos_embed": (1, 229, 768),
        "modality_trunks.vision.pre_transformer_layer.0.weight": (1280,),
        "modality_trunks.vision.blocks.0.attn.in_proj_weight": (3840, 1280),
        "modality_trunks.vision.blocks.31.mlp.fc2.weight": (1280, 5120),
        "modality_trunks.audio.blocks.0.attn.in_proj_weight": (2304, 768),
        "modality_trunks.audio.blocks.0.attn.bias_k": (1, 1, 768),
        "modality_trunks.audio.blocks.11.attn.bias_v": (1, 1, 768),
        "modality_trunks.audio.blocks.0.attn.out_proj.weight": (768, 768),
        "modality_trunks.audio.blocks.0.norm_1.weight": (768,),
        "modality_heads.vision.0.weight": (1280,),
        "modality_heads.vision.2.weight": (1024, 1280),
        "modality_heads.audio.2.weight": (1024, 768),
        "modality_postprocessors.audio.1.log_logit_scale": (),
    }
    for k, shape in expected_shapes.items():
        assert k in sd, k
        assert tuple(sd[k].shape) == shape, (k, sd[k].shape)
    assert "modality_trunks.audio.pre_transformer_layer.0.weight" not in sd  # Identity for audio
    assert "modality_trunks.vision.blocks.0.attn.bias_k" not in sd
    assert not any(k.startswith("modality_trunks.vision.blocks.32.") for k in sd)
    assert HUGE_CONFIG["vision_embed_dim"] == 1280


def test_imagebind_checkpoint_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("IMAGEBIND_CKPT", raising=False)
    with pytest.raises(RewardError, match="IMAGEBIND_CKPT.*download=True"):
        resolve_checkpoint()
    monkeypatch.setenv("IMAGEBIND_CKPT", str(tmp_path / "nope.pth"))
    with pytest.raises(RewardError, match="nope.pth"):
        resolve_checkpoint()
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(RewardError, match="bad.pth"):
        load_imagebind(bad)


def test_imagebind_reward(tiny_imagebind):
    r = ImageBindReward(_signal(3.0), SR, model=tiny_imagebind)
    assert r.frame_local is False and r.differentiable
    frames = torch.rand(4, 3, 24, 32)  # non-square: shorter side resized, centre crop
    out = r(frames)
    assert out.shape == (4,) and torch.allclose(out, out[:1].expand(4))
    assert -1 <= float(out[0]) <= 1
    x = frames.clone().requires_grad_(True)
    r(x).sum().backward()
    assert x.grad.abs().sum() > 0
    _, t = torch.func.jvp(lambda y: r(y), (frames,), (torch.randn_like(frames),))
    assert t.shape == (4,)


def _video_with_jumps(jumps, n, size=16):
    """Frame k+1 differs from frame k exactly for the transitions in `jumps`."""
    frames = torch.zeros(n, 3, size, size)
    level = 0.0
    for k in range(1, n):
        if (k - 1) in jumps:
            level = 1.0 - level
        frames[k] = level
    return frames + 0.01 * torch.rand(n, 3, size, size)


def test_av_sync_reward_prefers_synchronised_motion():
    fps, n = 4, 8
    # impacts inside transitions 1, 4 and 6 ([k/fps, (k+1)/fps))
    r = AVSyncReward(click_track([0.3, 1.05, 1.55], 2.0), SR, fps)
    assert r.frame_local is False and r.required_frames(n) == list(range(n))
    synced = r(_video_with_jumps({1, 4, 6}, n))
    shifted = r(_video_with_jumps({0, 2, 5}, n))
    assert synced.shape == (n,)
    assert float(synced[0]) > 0.8 and float(synced[0]) > float(shifted[0])
    # gradients: reverse and forward mode, finite
    frames = torch.rand(n, 3, 16, 16)
    x = frames.clone().requires_grad_(True)
    r(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    _, t = torch.func.jvp(lambda y: r(y), (frames,), (torch.randn_like(frames),))
    assert t.shape == (n,) and t.dtype == torch.float32 and torch.isfinite(t).all()
    # decoded subset with its indices
    sub = r(_video_with_jumps({1, 4, 6}, n)[[0, 2, 5, 7]], frame_indices=[0, 2, 5, 7], num_frames=n)
    assert sub.shape == (4,)


def test_av_sync_defined_values_and_errors():
    with pytest.raises(RewardError, match="silent"):
        AVSyncReward(np.zeros(SR, np.float32), SR, 4)
    with pytest.raises(RewardError, match="fps"):
        AVSyncReward(click_track([0.5], 1.0), SR, 0)
    r = AVSyncReward(click_track([0.3], 1.0), SR, 4)
    with pytest.raises(RewardError, match="at least 3"):
        r(torch.rand(2, 3, 8, 8))
    with pytest.raises(RewardError, match="increasing"):
        r(torch.rand(3, 3, 8, 8), frame_indices=[0, 2, 1])
    # static video -> 0 (no NaN); audio that ended before the video's span -> 0
    assert float(r(torch.zeros(5, 3, 8, 8))[0]) == 0.0
    late = r(torch.rand(12, 3, 8, 8), frame_indices=list(range(8, 20)), num_frames=20)
    assert float(late[0]) == pytest.approx(0.0, abs=1e-6)
    assert motion_energy(torch.zeros(3, 3, 4, 4)).shape == (2,)


def test_av_align_metric():
    from rewards.metrics import av_align, av_align_iou

    assert av_align_iou([0.5, 1.0], [0.5, 1.0], fps=4) == 1.0
    assert av_align_iou([0.5], [1.5], fps=4) == 0.0
    assert av_align_iou([], [], fps=4) == 0.0
    assert av_align_iou([0.5, 1.0], [0.6], fps=4) == pytest.approx(1 / 2)
    fps, n = 4, 8
    wav = click_track([0.5, 1.25], 2.0)
    good = av_align(_video_with_jumps({1, 4}, n), wav, SR, fps)  # jumps show at frames 2 and 5: t = 0.5, 1.25
    bad = av_align(_video_with_jumps({5}, n), wav, SR, fps)
    assert good == pytest.approx(1.0) and bad < good
