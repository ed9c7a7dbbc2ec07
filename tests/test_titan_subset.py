"""TITAN `objective_subset`: J's jvp decodes only the sampled frames S, and its derivative is J_S's exact one."""
import pytest
import torch

from pipelines.guidance import make_guidance
from tests.engine_helpers import TargetReward, make_denoiser, tiny_pipe


@pytest.mark.parametrize("per_frame", [False, True])
def test_objective_subset_decodes_only_s_and_is_exact(per_frame):
    pipe = tiny_pipe("float64")
    f = 6
    target = torch.rand(f, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=f, steps=10, reward=TargetReward(target))
    t = ctx.timesteps[4]
    x = torch.randn(1, 4, f, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    titan = make_guidance("titan", guess="random", objective_subset=True, subset_frames=2, per_frame=per_frame)
    titan.start(ctx)
    sizes, orig = [], pipe.vae.decode

    def counting(z, *a, **k):
        sizes.append(z.shape[0])
        return orig(z, *a, **k)

    pipe.vae.decode = counting
    try:
        ctx.aux_generator.manual_seed(3)
        est = titan.estimate(ctx, x, t, None, None)
    finally:
        pipe.vae.decode = orig
    assert sizes == [2]  # the jvp decoded |S| = 2 frames, not 6
    # replay the same draws: the guess v, then S
    ctx.aux_generator.manual_seed(3)
    v = ctx.randn_like(x)  # the random guess is N(0, I) itself (the unbiased forward gradient)
    frames = titan.pick_frames(ctx, f)
    xr = x.clone().requires_grad_(True)
    eps = ctx.eps(xr, t, cfg=False)
    r = ctx.reward(ctx.decode(ctx.x0(xr, eps, t), frames), frames)
    if per_frame:
        expect = torch.zeros_like(x)
        for j, k in enumerate(frames):
            (g,) = torch.autograd.grad(r[j], xr, retain_graph=True)
            expect[:, :, k] = float((g * v).sum()) * v[:, :, k]
    else:
        (g,) = torch.autograd.grad(r.sum(), xr)
        expect = float((g * v).sum()) * v
    torch.testing.assert_close(est, expect, rtol=1e-6, atol=1e-9)
