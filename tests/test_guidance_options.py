"""The step-scale options measured by `python -m pipelines evaluate` do what their help says."""
import pytest
import torch

from pipelines.guidance import make_guidance
from tests.engine_helpers import TargetReward, make_denoiser, tiny_pipe


@pytest.mark.parametrize("method", ["mpgd", "freedom"])
@pytest.mark.parametrize("rho", [0.5, 2.0])
def test_noise_scale_moves_x_prev_by_rho_times_the_remaining_noise(method, rho):
    pipe = tiny_pipe()
    target = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=4, steps=10, reward=TargetReward(target))
    ctx.eta = 0.0  # deterministic DDIM, so guided minus unguided is the guidance step alone
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t, i = ctx.timesteps[3], 3
    plain = make_guidance(method, rho=0.0, scale="noise")
    guided = make_guidance(method, rho=rho, scale="noise", trust=0.0)  # the unbounded form
    for g in (plain, guided):
        g.start(ctx)
    delta = guided.step(ctx, x, t, i) - plain.step(ctx, x, t, i)
    expected = rho * float((1 - ctx.alpha_bar(ctx.prev_t(t))).sqrt())
    assert float(delta.pow(2).mean().sqrt()) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("method", ["mpgd", "freedom"])
def test_step_scales_default_to_the_cfg_form_and_are_validated(method):
    assert make_guidance(method).scale == "cfg"  # METHODS.md's form stays the default
    with pytest.raises(ValueError, match=f"{method}.scale"):
        make_guidance(method, scale="huge")
