"""CLIP-based rewards (style, text, aesthetic) and CLIP metrics on a tiny random CLIP built in code."""
import os

import pytest
import torch

from rewards import RewardError
from rewards.aesthetic import AestheticHead, AestheticReward
from rewards.clip import ClipModel, load_clip
from rewards.style import StyleReward
from rewards.testing import tiny_clip, tiny_clip_pair
from rewards.text import TextAlignmentReward

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def clip():
    return tiny_clip(seed=0)


@pytest.fixture(scope="module")
def clip2():
    return tiny_clip(seed=1)


def _frames(f=3, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(f, 3, size, size, generator=g)


def _check_grad_and_jvp(reward, frames):
    x = frames.clone().requires_grad_(True)
    out = reward(x)
    assert out.shape == (frames.shape[0],)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    v = torch.randn_like(frames)
    val, tangent = torch.func.jvp(lambda y: reward(y), (frames,), (v,))
    assert tangent.shape == (frames.shape[0],) and tangent.dtype == frames.dtype
    # forward-mode derivative agrees with reverse mode
    x2 = frames.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(reward(x2).sum(), x2)
    torch.testing.assert_close(tangent.sum(), (g * v).sum(), rtol=1e-3, atol=1e-5)


def test_load_clip_pair_and_wrapper(clip):
    assert isinstance(clip, ClipModel)
    assert clip.image_size == 32
    assert load_clip(clip) is clip
    e = clip.encode_images(_frames(2, 20))
    assert e.shape == (2, 16)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    t = clip.encode_text(["a red circle", "a blue square"])
    assert t.shape == (2, 16)
    h = clip.hidden_tokens(_frames(2, 32), 2)
    assert h.shape == (2, 16, 32)  # (32/8)^2 patches, CLS dropped
    with pytest.raises(RewardError, match="layer"):
        clip.hidden_tokens(_frames(1), 9)


def test_load_clip_errors_name_the_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RewardError, match="no-such-org/no-such-clip.*internet once"):
        load_clip("no-such-org/no-such-clip")
    with pytest.raises(RewardError, match=str(tmp_path)):
        load_clip(str(tmp_path))  # an empty folder
    with pytest.raises(RewardError):
        load_clip(12)


def test_load_clip_local_folder_is_cached(tmp_path):
    model, tok = tiny_clip_pair(seed=3)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    a = load_clip(str(tmp_path))
    assert load_clip(str(tmp_path)) is a
    assert a.image_size == 32 and a.tokenizer is not None
    torch.testing.assert_close(a.encode_text(["a cat"]), load_clip((model, tok)).encode_text(["a cat"]))


@pytest.mark.parametrize("mode", ["gram", "embedding"])
def test_style_reward(clip, mode):
    ref = _frames(1, 40, seed=5)[0]
    r = StyleReward(ref, clip=clip, layer=2, mode=mode)
    out = r(_frames(3))
    assert out.shape == (3,)
    best = r(ref[None])
    expected = 0.0 if mode == "gram" else 1.0
    assert abs(float(best[0]) - expected) < 1e-4
    assert (out <= best + 1e-5).all()  # the reference itself is the maximum
    _check_grad_and_jvp(r, _frames(2))


def test_style_reward_pil_reference_and_errors(clip):
    from PIL import Image
    import numpy as np

    img = Image.fromarray((np.random.RandomState(0).rand(20, 30, 3) * 255).astype("uint8"))
    r = StyleReward(img, clip=clip)
    assert r.reference.shape == (3, 20, 30)
    assert r(_frames(2)).shape == (2,)
    with pytest.raises(RewardError, match="reference"):
        StyleReward(torch.rand(4, 10, 10), clip=clip)
    with pytest.raises(RewardError, match="mode"):
        StyleReward(torch.rand(3, 10, 10), clip=clip, mode="nope")
    with pytest.raises(RewardError, match=r"\(f, 3, H, W\)"):
        r(torch.rand(3, 10, 10))


def test_text_reward(clip):
    frames = _frames(3)
    a = TextAlignmentReward("a red circle", clip=clip)
    b = TextAlignmentReward("a blue square moving left", clip=clip)
    ra, rb = a(frames), b(frames)
    assert ra.shape == (3,) and (ra.abs() <= 1 + 1e-5).all()
    assert not torch.allclose(ra, rb)  # the prompt matters
    _check_grad_and_jvp(a, frames)
    for bad in ["", "   ", None]:
        with pytest.raises(RewardError, match="prompt"):
            TextAlignmentReward(bad, clip=clip)
    with pytest.raises(RewardError):
        a(torch.rand(3, 1, 8, 8))
    with pytest.raises(RewardError, match="no frames"):
        a(torch.rand(0, 3, 8, 8))


def test_aesthetic_reward(clip, tmp_path):
    r = AestheticReward(clip=clip, allow_random_head=True)
    assert r(_frames(2)).shape == (2,)
    _check_grad_and_jvp(r, _frames(2))
    # head weights from a state dict on disk (.pth and .safetensors), keys as the public predictor
    head = AestheticHead(16)
    assert sorted(head.state_dict()) == sorted(
        f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")
    )
    torch.save(head.state_dict(), tmp_path / "head.pth")
    from safetensors.torch import save_file

    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    frames = _frames(2)
    expected = head.eval()(clip.encode_images(frames))[:, 0]
    for name in ("head.pth", "head.safetensors"):
        r2 = AestheticReward(clip=clip, head=str(tmp_path / name))
        torch.testing.assert_close(r2(frames), expected)
    with pytest.raises(RewardError, match="missing.pth"):
        AestheticReward(clip=clip, head=str(tmp_path / "missing.pth"))
    with pytest.raises(RewardError, match="no head weights"):
        AestheticReward(clip=clip)
    torch.save(AestheticHead(768).state_dict(), tmp_path / "big.pth")
    with pytest.raises(RewardError, match="768"):
        AestheticReward(clip=clip, head=str(tmp_path / "big.pth"))


def test_clip_metrics(clip, clip2):
    from rewards.metrics import clip_sim, frame_consistency, style_score

    frames = _frames(4)
    s = clip_sim(frames, "a red circle", clip=clip)
    assert isinstance(s, float) and -1 <= s <= 1
    same = torch.rand(1, 3, 24, 24).expand(4, -1, -1, -1).contiguous()
    assert frame_consistency(same, clip=clip) == pytest.approx(1.0, abs=1e-5)
    assert frame_consistency(frames, clip=clip) < 1.0
    ref = _frames(1, 24, seed=9)[0]
    assert style_score(ref[None], ref, clip=clip2) == pytest.approx(0.0, abs=1e-4)
    assert style_score(frames, ref, clip=clip2, guiding_clip=clip) > 0
    with pytest.raises(RewardError, match="different CLIP"):
        style_score(frames, ref, clip=clip, guiding_clip=clip)
