"""HARIVO mitigating gradient (contract 2): smoothing, guards, no NaN."""
import math

import pytest
import torch

from pipelines.guidance import mitigating_gradient


def _x0(eps, x, a):
    return (x - math.sqrt(1 - a) * eps) / math.sqrt(a)


def _frame_diffs(x0):
    return (x0[:, :, 1:] - x0[:, :, :-1]).pow(2).sum(dim=(1, 3, 4)).sqrt()


@pytest.mark.parametrize("a", [0.05, 0.5, 0.95])
def test_small_alpha_shrinks_frame_differences(a):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 6, 6, generator=g)
    eps = torch.randn(2, 4, 8, 6, 6, generator=g)
    before = _frame_diffs(_x0(eps, x, a))
    after = _frame_diffs(_x0(mitigating_gradient(eps, x, a, scale=0.5), x, a))
    # Frame i+1 is pulled toward frame i: the total (and nearly every) difference shrinks.
    assert after.sum() < before.sum()
    assert (after <= before + 1e-6).float().mean() > 0.7


def test_direction_matches_algorithm_1():
    # Two frames differ, a third equals the second: the first difference is pulled in, x̂ of frame 1 moves to 0.
    x = torch.zeros(1, 1, 3, 1, 1)
    x[0, 0, 1] = 1.0
    eps = torch.zeros_like(x)
    out = mitigating_gradient(eps, x, 0.5, scale=0.1)
    delta = out - eps
    assert delta[0, 0, 0].abs().max() == 0  # frame 0 is never changed
    x0_new = _x0(out, x, 0.5)
    assert x0_new[0, 0, 1] < _x0(eps, x, 0.5)[0, 0, 1]


def test_guards_are_noops():
    x = torch.randn(1, 4, 2, 4, 4)
    eps = torch.randn_like(x)
    assert torch.equal(mitigating_gradient(eps, x, 0.5, 40.0), eps)  # f < 3
    x3 = torch.randn(1, 4, 6, 4, 4)
    e3 = torch.randn_like(x3)
    assert torch.equal(mitigating_gradient(e3, x3, 0.5, 0.0), e3)  # α = 0
    static = torch.ones(1, 4, 6, 4, 4)
    out = mitigating_gradient(torch.zeros_like(static), static, 0.5, 40.0)  # median difference 0
    assert torch.isfinite(out).all() and torch.equal(out, torch.zeros_like(static))


def test_no_nan_for_extreme_inputs_and_half_precision():
    x = torch.randn(1, 4, 16, 4, 4) * 1e3
    eps = torch.randn_like(x)
    for a in (1e-4, 0.9999):
        assert torch.isfinite(mitigating_gradient(eps, x, a, 40.0)).all()
    out = mitigating_gradient(eps.half(), x.half(), 0.3, 40.0)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_bad_inputs():
    x = torch.randn(1, 4, 4, 4, 4)
    with pytest.raises(ValueError, match="must match"):
        mitigating_gradient(x[:, :, :3], x, 0.5, 1.0)
    with pytest.raises(ValueError, match="alpha_prod_t"):
        mitigating_gradient(x, x, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"\(b, c, f, h, w\)"):
        mitigating_gradient(x[0], x[0], 0.5, 1.0)


def test_mg_in_the_sampler_smooths_the_video():
    from tests.engine_helpers import tiny_pipe

    pipe = tiny_pipe()
    kw = dict(num_frames=8, height=16, width=16, num_inference_steps=6, output_type="pt")
    plain = pipe("a red circle", generator=torch.Generator().manual_seed(0), **kw).frames[0]
    smooth = pipe("a red circle", generator=torch.Generator().manual_seed(0), mg_scale=40.0, **kw).frames[0]
    d = lambda v: (v[1:] - v[:-1]).abs().mean()  # noqa: E731
    assert d(smooth) < d(plain)


def _shrink_at(frames, hw, scale, normalized, a=0.05, delta=1.0, seed=0):
    """Fraction by which MG shrinks the x̂0 frame differences of a random walk video whose per-element frame
    difference has rms `delta` (the same content statistics at every size)."""
    g = torch.Generator().manual_seed(seed)
    steps = delta * torch.randn(1, 4, frames, hw, hw, generator=g)
    x0 = steps.cumsum(dim=2)
    eps = torch.randn(1, 4, frames, hw, hw, generator=g)
    x = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps  # so that the Tweedie estimate of (x, eps) is x0
    after = _frame_diffs(_x0(mitigating_gradient(eps, x, a, scale=scale, normalized=normalized), x, a))
    return 1 - float(after.sum() / _frame_diffs(x0).sum())


def test_normalized_alpha_has_the_same_effect_at_any_size():
    from pipelines.guidance.temporal import normalized_mg_scale

    harivo = (24, 32)  # HARIVO: 24 frames × 32² latents, α = 40
    animatediff = (16, 64)  # AnimateDiff at 512²: 16 frames × 64² latents
    raw = [_shrink_at(f, hw, 40.0, normalized=False) for f, hw in (harivo, animatediff)]
    norm = [_shrink_at(f, hw, 40.0, normalized=True) for f, hw in (harivo, animatediff)]
    # raw α acts about 3× less at the larger size; the normalised α acts alike at both sizes
    assert raw[0] > 2.5 * raw[1] > 0
    assert norm[0] == pytest.approx(raw[0], rel=1e-6)  # at HARIVO's own size nothing changes
    assert norm[1] == pytest.approx(norm[0], rel=0.1)
    assert normalized_mg_scale(40.0, 24, 32) == pytest.approx(40.0)
    assert normalized_mg_scale(40.0, 16, (64, 64)) == pytest.approx(
        40.0 * (math.log(23) / (23 * 32 * 32)) / (math.log(15) / (15 * 64 * 64)))
    assert normalized_mg_scale(40.0, 2, 64) == 40.0  # MG is off below 3 frames anyway
    with pytest.raises(ValueError, match="bad size"):
        normalized_mg_scale(40.0, 16, 0)


def test_request_converts_a_normalized_alpha_for_its_latent_size():
    from types import SimpleNamespace

    from pipelines.guidance.temporal import normalized_mg_scale
    from pipelines.request import Generation, GenerationRequest

    pipe = SimpleNamespace(vae_scale_factor=8, unet=SimpleNamespace(config=SimpleNamespace(in_channels=4)))
    preset = SimpleNamespace(pipe=pipe)

    def alpha(**kw):
        req = GenerationRequest(mg_scale=40.0, **kw)
        return Generation(SimpleNamespace(request=req, frames=16, size=512), preset).mg_alpha()

    assert alpha() == 40.0
    assert alpha(mg_normalized=True) == pytest.approx(normalized_mg_scale(40.0, 16, 64, 4))
    assert alpha(mg_normalized=True) == pytest.approx(120.8, abs=0.1)
