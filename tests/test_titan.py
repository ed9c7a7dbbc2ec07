"""TITAN-Guide: the forward-mode directional derivative is exact, and more random guesses estimate better."""
import pytest
import torch
from torch.func import jvp

from pipelines.guidance import make_guidance
from pipelines.guidance.forward_ad import forward_ad_safe
from tests.engine_helpers import TargetReward, make_denoiser, tiny_pipe


def _objective(ctx, t):
    def J(z):
        eps = ctx.eps(z, t, cfg=False)
        return ctx.reward(ctx.decode(ctx.x0(z, eps, t))).sum()

    return J


def _float64_problem(num_frames, step, mg_scale=0.0):
    """A float64 tiny pipeline, the objective J at one timestep, a point x and a direction v."""
    pipe = tiny_pipe("float64")
    target = torch.rand(num_frames, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=num_frames, steps=10, reward=TargetReward(target), mg_scale=mg_scale)
    t = ctx.timesteps[step]
    x = torch.randn(1, 4, num_frames, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return pipe, _objective(ctx, t), x, v


def test_jvp_through_unet_decoder_reward_matches_autograd():
    pipe, J, x, v = _float64_problem(num_frames=8, step=4, mg_scale=5.0)
    with torch.no_grad(), forward_ad_safe([pipe.unet, pipe.vae]):
        _, d = jvp(J, (x,), (v,))
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(J(xr), xr)
    exact = float((g * v).sum())
    assert abs(float(d) - exact) / abs(exact) <= 1e-4


def test_forward_ad_safety_is_undone_after_the_jvp():
    from diffusers.models.attention_processor import SlicedAttnProcessor

    pipe = tiny_pipe()
    norms = [m for m in pipe.vae.modules() if isinstance(m, torch.nn.GroupNorm)]
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    with forward_ad_safe([pipe.unet, pipe.vae], attention_slices=1):
        assert all(len(m._forward_pre_hooks) == 1 for m in norms)
        assert all(isinstance(p, SlicedAttnProcessor) for p in pipe.unet.attn_processors.values())
    assert all(len(m._forward_pre_hooks) == 0 for m in norms)
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before


def test_sliced_attention_gives_the_same_directional_derivative():
    pipe, J, x, v = _float64_problem(num_frames=4, step=3)
    with torch.no_grad(), forward_ad_safe([pipe.unet, pipe.vae]):
        _, d_math = jvp(J, (x,), (v,))
    with torch.no_grad(), forward_ad_safe([pipe.unet, pipe.vae], attention_slices=1):
        _, d_sliced = jvp(J, (x,), (v,))
    assert float(d_sliced) == pytest.approx(float(d_math), rel=1e-9)


def _cosine_for_k(ctx, x, t, g_true, k, seed):
    titan = make_guidance("titan", guess="random", num_guesses=k)
    titan.start(ctx)
    ctx.aux_generator.manual_seed(seed)
    # estimate() evaluates J at its own timestep; pass the step whose objective we differentiated
    est = titan.estimate(ctx, x, t, None, None)
    return float(torch.nn.functional.cosine_similarity(est.detach().flatten(), g_true.flatten(), dim=0))


def test_more_random_guesses_give_better_gradient_estimates():
    pipe = tiny_pipe()
    target = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=4, steps=10, reward=TargetReward(target))
    t = ctx.timesteps[5]
    x = torch.randn(1, 4, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    xr = x.clone().requires_grad_(True)
    (g_true,) = torch.autograd.grad(_objective(ctx, t)(xr), xr)
    cos = {k: sum(_cosine_for_k(ctx, x, t, g_true, k, s) for s in range(3)) / 3 for k in (1, 8, 48)}
    assert cos[1] < cos[8] < cos[48]
    assert cos[48] > 0.25  # d = 256: one guess gives ~0.06 on average, 48 give ~0.4


def test_direct_guess_uses_reward_frames_and_no_unet_backprop():
    pipe = tiny_pipe()
    calls = {"n": 0}

    def count_backward(module, grad_in, grad_out):
        calls["n"] += 1

    handle = pipe.unet.conv_in.register_full_backward_hook(count_backward)
    try:
        target = torch.zeros(8, 3, 16, 16)
        out = pipe("a red circle", num_frames=8, height=16, width=16, num_inference_steps=4, output_type="pt",
                   generator=torch.Generator().manual_seed(0), guidance=make_guidance("titan"),
                   reward=TargetReward(target))
    finally:
        handle.remove()
    assert calls["n"] == 0  # TITAN never backpropagates through the UNet
    assert out.frames.shape == (1, 8, 3, 16, 16)


@pytest.mark.parametrize("guess", ["random", "score", "direct"])
@pytest.mark.parametrize("per_frame", [False, True])
def test_every_guess_runs_and_moves_the_sample(guess, per_frame):
    pipe = tiny_pipe()
    target = torch.zeros(4, 3, 16, 16)
    kw = dict(num_frames=4, height=16, width=16, num_inference_steps=3, output_type="pt")
    base = pipe("a red circle", generator=torch.Generator().manual_seed(0), eta=1.0, **kw).frames
    out = pipe("a red circle", generator=torch.Generator().manual_seed(0), reward=TargetReward(target),
               guidance=make_guidance("titan", guess=guess, per_frame=per_frame, num_guesses=2), **kw).frames
    assert torch.isfinite(out).all()
    assert (out - base).abs().max() > 1e-4


def test_time_travel_redoes_each_guided_step_on_a_renoised_sample():
    """time_travel = r: every guided step is taken r + 1 times (re-noised back to t in between), unguided steps once."""
    pipe = tiny_pipe()
    target = torch.zeros(4, 3, 16, 16)
    kw = dict(num_frames=4, height=16, width=16, num_inference_steps=3, output_type="pt")
    calls = []

    def frames(**params):
        titan = make_guidance("titan", **params)
        one = titan.one_step
        titan.one_step = lambda ctx, x, t, i: (calls.append(i), one(ctx, x, t, i))[1]
        calls.clear()
        out = pipe("a red circle", generator=torch.Generator().manual_seed(0), reward=TargetReward(target),
                   guidance=titan, **kw).frames
        return out, list(calls)

    plain, steps0 = frames()
    travelled, steps2 = frames(time_travel=2)
    assert steps0 == [0, 1, 2]  # steps 0 and 1 guided (end_step −1), step 2 plain
    assert steps2 == [0, 0, 0, 1, 1, 1, 2]
    assert torch.isfinite(travelled).all() and (travelled - plain).abs().max() > 1e-4
    with pytest.raises(ValueError, match="titan.time_travel"):
        make_guidance("titan", time_travel=-1)


def test_titan_parameters_are_validated():
    with pytest.raises(ValueError, match="titan.guess"):
        make_guidance("titan", guess="psychic")
    with pytest.raises(ValueError, match="titan.num_guesses"):
        make_guidance("titan", num_guesses=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        make_guidance("titan", lambda_=0.1)


def test_deep_objective_jvp_matches_autograd():
    """depth = 2: the objective runs two η = 0 DDIM steps before Tweedie; its jvp is still exact."""
    pipe = tiny_pipe("float64")
    target = torch.rand(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=4, steps=10, reward=TargetReward(target))
    titan = make_guidance("titan", depth=2)
    t = ctx.timesteps[3]
    assert titan.chain(ctx, t) == [t, ctx.prev_t(t), ctx.prev_t(ctx.prev_t(t))]
    J = titan.objective(ctx, t)
    x = torch.randn(1, 4, 4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), forward_ad_safe([pipe.unet, pipe.vae]):
        value, d = jvp(J, (x,), (v,))
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(J(xr), xr)
    assert abs(float(d) - float((g * v).sum())) / abs(float((g * v).sum())) <= 1e-4
    # a deeper objective is a different function of x (it runs more of the chain)
    assert float(value) != pytest.approx(float(_objective(ctx, t)(x)), rel=1e-6)


def test_full_depth_chain_reaches_the_last_timestep():
    pipe = tiny_pipe()
    ctx = make_denoiser(pipe, num_frames=4, steps=6)
    start = ctx.timesteps[1]
    expected = [start]
    while ctx.prev_t(expected[-1]) >= 0:  # diffusers' DDIM rule: t − T // N, down to the last t ≥ 0
        expected.append(ctx.prev_t(expected[-1]))
    ts = make_guidance("titan", depth=-1).chain(ctx, start)
    assert ts == expected and len(ts) >= len(ctx.timesteps) - 1
    assert make_guidance("titan", depth=2).chain(ctx, start) == expected[:3]


@pytest.mark.parametrize("fill", ["pad", "tile", "lerp"])
def test_direct_guess_pads_or_tiles_the_subset_gradient(fill):
    pipe = tiny_pipe()
    target = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=6, steps=4, reward=TargetReward(target))
    titan = make_guidance("titan", fill=fill, subset_frames=2)
    x0 = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(1))
    ctx.aux_generator.manual_seed(5)
    frames = titan.pick_frames(ctx, 6)
    ctx.aux_generator.manual_seed(5)
    g = titan.direct_guess(ctx, x0)
    per_frame = g.abs().sum(dim=(0, 1, 3, 4))
    others = [k for k in range(6) if k not in frames]
    assert all(per_frame[k] > 0 for k in frames)
    if fill == "pad":  # the true gradient restricted to S: zero elsewhere
        assert all(per_frame[k] == 0 for k in others)
    elif fill == "tile":  # the public code: S's gradient copied onto the other frames
        assert all(per_frame[k] > 0 for k in others)
        assert torch.equal(g[:, :, len(frames)], g[:, :, 0])
    else:  # linear in time between S's frames, copies outside them
        assert all(per_frame[k] > 0 for k in others)
        a, b = frames
        assert torch.allclose(g[:, :, :a + 1], g[:, :, a:a + 1].expand(-1, -1, a + 1, -1, -1))
        if b - a >= 2:
            w = 1 / (b - a)
            assert torch.allclose(g[:, :, a + 1], (1 - w) * g[:, :, a] + w * g[:, :, b], atol=1e-6)


def test_padded_guess_goes_to_the_free_frames_when_replacement_overwrites_the_scored_ones():
    """Interpolation under `both`: the reward scores frames 0 and 5, which replacement overwrites after every step.
    A padded guess there would be lost; it is spread over frames 1–4 instead, and is zero on the fixed frames."""
    from rewards.interpolation import InterpolationReward

    pipe = tiny_pipe()
    keys = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=6, steps=4, reward=InterpolationReward(keys, indices=[0, 5]))
    titan = make_guidance("titan", fill="pad")
    x0 = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(1))
    per_frame = lambda g: g.abs().sum(dim=(0, 1, 3, 4))  # noqa: E731
    free = per_frame(titan.direct_guess(ctx, x0))
    assert free[0] > 0 and free[5] > 0 and float(free[1:5].sum()) == 0  # no replacement: the true, padded gradient
    ctx.fixed_frames = [0, 5]
    spread = per_frame(titan.direct_guess(ctx, x0))
    assert spread[0] == 0 and spread[5] == 0 and all(spread[k] > 0 for k in range(1, 5))


def test_lerp_fill_between_the_end_frames_is_a_ramp():
    from pipelines.guidance.titan import lerp_frames

    g = torch.stack([torch.zeros(2, 3, 3), torch.ones(2, 3, 3)], dim=1)[None]  # (1, 2, |S|=2, 3, 3)
    out = lerp_frames(g, [0, 4], 5)
    assert [float(out[0, 0, k, 0, 0]) for k in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("update", ["noise", "x0", "cfg", "rms", "sign", "raw"])
def test_update_forms_have_their_documented_size(update):
    pipe = tiny_pipe()
    ctx = make_denoiser(pipe, num_frames=4, steps=10)
    titan = make_guidance("titan", update=update)
    t = ctx.timesteps[2]
    t_prev = ctx.prev_t(t)
    g = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 7.0
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eps, parts = ctx.eps(x, t, return_parts=True)
    u = titan.scale(ctx, g, t, t_prev, parts, eps)
    size = float(u.pow(2).mean().sqrt())
    expected = {
        "noise": float((1 - ctx.alpha_bar(t_prev)).sqrt()),
        "x0": float(ctx.alpha_bar(t_prev).sqrt()),
        "cfg": float(ctx.cfg_scale(t) * (parts[0] - parts[1]).pow(2).mean().sqrt()),
        "rms": 1.0,
        "sign": 1.0,
        "raw": float(g.pow(2).mean().sqrt()),  # magnitude-aware: the estimate's own size
    }[update]
    assert size == pytest.approx(expected, rel=1e-4)
    assert float((u * g).sum()) > 0  # always along the estimate


def test_random_guess_is_the_unbiased_forward_gradient():
    """With the random guess, ĝ = (∇J·V) V averages to ∇J itself (V ~ N(0, I)); a unit V gave ∇J/n, so the `raw`
    update stepped n times (the latent size) too short."""
    from tests.engine_helpers import make_denoiser

    pipe = tiny_pipe()
    ctx = make_denoiser(pipe, num_frames=2, steps=2)
    titan = make_guidance("titan", guess="random")
    titan.num_guesses = 400  # beyond the UI bound, for a tight average
    x = torch.zeros(1, 4, 2, 2, 2)  # n = 32
    w = torch.linspace(-1.0, 1.0, x.numel()).reshape(x.shape)
    titan.objective = lambda ctx_, t_prev, frames=None: (lambda z: (w * z).sum())
    g = titan.estimate(ctx, x, int(ctx.timesteps[-1]), torch.zeros_like(x), x)
    coef = float((g * w).sum() / (w * w).sum())  # ĝ's mean along ∇J: 1 ± 0.07 (a chi-square(1) mean over 400)
    assert 0.75 < coef < 1.25, coef  # a unit guess gives 1/n = 0.03
