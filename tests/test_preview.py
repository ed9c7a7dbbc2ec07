"""Fast previews: the latent→RGB map is fitted exactly, its frames have the right shape and range, it replaces
the per-step VAE decode (only the reward's frames are decoded), and on micro it tracks the decoded colours."""
import pytest
import torch

from pipelines.preview import (
    FAST_PREVIEW_MAX_SIDE, LatentRGB, fit_latent_rgb, latent_rgb_for, resolve_preview,
)
from pipelines.sampler import reward_frames
from tests.engine_helpers import TargetReward, tiny_pipe


def test_least_squares_fit_recovers_an_affine_map():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(4, 3, generator=g) * 0.3, torch.randn(3, generator=g) * 0.1
    z = torch.randn(50, 4, 6, 6, generator=g)
    rgb = (torch.einsum("nchw,cr->nrhw", z, w) + b[None, :, None, None]) / 2 + 0.5
    fit = fit_latent_rgb(z, rgb)
    torch.testing.assert_close(fit.weight, w, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fit.bias, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="share n, h, w"):
        fit_latent_rgb(z, rgb[:, :, :5])


def test_fast_frames_have_the_right_shape_and_range():
    m = LatentRGB.sd15()
    z = torch.randn(1, 4, 3, 64, 64) * 3  # big values: the output must still be clamped to [0, 1]
    out = m(z, out_size=(512, 512))
    assert out.shape == (3, 3, FAST_PREVIEW_MAX_SIDE, FAST_PREVIEW_MAX_SIDE)
    assert float(out.min()) >= 0 and float(out.max()) <= 1 and float(out.std()) > 0
    assert m(z, out_size=(128, 96)).shape == (3, 3, 128, 96)
    assert m(z, max_side=None).shape == (3, 3, 64, 64)
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(1, 3, 2, 8, 8))


def test_auto_preview_is_fast_at_real_sizes_and_decodes_small_frames():
    assert resolve_preview("auto", 512, 512) == "fast"
    assert resolve_preview("auto", 32, 32) == "decode"
    assert resolve_preview("decode", 512, 512) == "decode"
    with pytest.raises(ValueError, match="preview must be one of"):
        resolve_preview("thumbnail", 64, 64)


def test_reward_frames_are_the_required_ones_else_key_frames():
    class Ends(TargetReward):
        def required_frames(self, n):
            return [0, n - 1]

    assert reward_frames(TargetReward(None), 16) == [0, 5, 10, 15]
    assert reward_frames(Ends(None), 16) == [0, 15]
    assert reward_frames(TargetReward(None), 2) == [0, 1]


def _count_decodes(pipe):
    calls = []
    orig = pipe.vae.decode

    def counting(z, *a, **k):
        calls.append(z.shape[0])
        return orig(z, *a, **k)

    return calls, counting, orig


def test_fast_preview_stream_decodes_only_the_reward_frames_and_the_final_video():
    pipe = tiny_pipe()
    f = 8
    target = torch.rand(f, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    calls, counting, orig = _count_decodes(pipe)
    pipe.vae.decode = counting
    try:
        events = list(pipe.stream("a red circle", num_frames=f, num_inference_steps=3, preview="fast",
                                  reward=TargetReward(target), generator=torch.Generator().manual_seed(0)))
    finally:
        pipe.vae.decode = orig
    steps = [e for e in events if not e.final]
    assert all(e.preview.shape == (f, 3, 16, 16) for e in steps)
    assert all(0 <= float(e.preview.min()) and float(e.preview.max()) <= 1 for e in steps)
    assert all(e.reward is not None for e in steps)
    # per step: the 4 key frames for the tracked reward; then the final video once (all 8 frames)
    assert calls == [4, 4, 4, 8]
    assert events[-1].frames.shape == (f, 3, 16, 16)


def test_decode_every_adds_full_decodes_and_previews_do_not_change_the_video():
    pipe = tiny_pipe()
    kw = dict(num_frames=4, num_inference_steps=4, generator=None, track_reward=False)
    calls, counting, orig = _count_decodes(pipe)
    pipe.vae.decode = counting
    try:
        fast = list(pipe.stream("a red circle", **{**kw, "generator": torch.Generator().manual_seed(0)},
                                preview="fast", decode_every=2))
    finally:
        pipe.vae.decode = orig
    assert calls == [4, 4, 4]  # steps 0 and 2 decoded, then the final video
    dec = list(pipe.stream("a red circle", **{**kw, "generator": torch.Generator().manual_seed(0)}, preview="decode"))
    torch.testing.assert_close(fast[-1].frames, dec[-1].frames)
    torch.testing.assert_close(fast[0].preview, dec[0].preview)  # a decode step shows the decoded frames
    with pytest.raises(ValueError, match="decode_every"):
        next(pipe.stream("a red circle", num_frames=2, num_inference_steps=2, decode_every=-1))


def test_pipelines_without_a_map_use_the_sd_approximation():
    pipe = tiny_pipe()
    assert isinstance(latent_rgb_for(pipe), LatentRGB)


micro = pytest.importorskip("pipelines.micro")


@pytest.mark.skipif(not (micro.MICRO_DIR / "model_index.json").exists(), reason="assets/micro not trained yet")
def test_micro_fast_preview_tracks_the_decoded_colours():
    import numpy as np
    import torch.nn.functional as F

    from pipelines.micro import world
    from pipelines.presets import load_preset

    pipe = load_preset("micro", device="cpu").pipe
    m = latent_rgb_for(pipe)  # fitted on training renders on first use
    rng = np.random.default_rng(5)
    frames, _, _ = world.render_batch([world.sample_attributes(rng, "heldout") for _ in range(6)], 4, rng=rng)
    vae = pipe.vae
    with torch.no_grad():
        z = vae.encode(frames.flatten(0, 1) * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
        decoded = (vae.decode(z / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    pooled = F.adaptive_avg_pool2d(decoded, z.shape[-2:])
    fast = m(z, max_side=None)
    assert fast.shape == pooled.shape
    # per-frame mean colour (what a thumbnail conveys) follows the decode
    a, b = fast.mean(dim=(2, 3)).flatten(), pooled.mean(dim=(2, 3)).flatten()
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert corr > 0.7, corr  # measured 0.78: a rough map (one reason micro keeps the full decode by default)
    # per pixel it beats predicting the average colour
    mae = float((fast - pooled).abs().mean())
    baseline = float((pooled - pooled.mean(dim=(0, 2, 3), keepdim=True)).abs().mean())
    assert mae < 0.8 * baseline, (mae, baseline)
