"""The step policy: every guided update is bounded by the noise left at its step (a per-frame trust region), and no
default of any method on any preset (micro, tiny, and the animatediff schedule: DDIM, linspace, 25 steps) exceeds it."""
import pytest
import torch
from diffusers import DDIMScheduler

from pipelines.guidance import make_guidance
from pipelines.guidance.base import MAX_SHIFT, Guidance, bound_shift, frame_rms, noise_left
from pipelines.presets import DefaultsOnly
from pipelines.request import resolve_params
from pipelines.sampler import sample
from pipelines.tasks import TASKS
from tests.engine_helpers import TargetReward, make_denoiser, tiny_pipe

GRADIENT_METHODS = ("titan", "freedom", "mpgd", "tfg", "doodl")


class LoudTarget(TargetReward):
    """A target reward with a gradient large enough that every unbounded default step overshoots the noise left."""

    def __call__(self, frames, frame_indices=None, num_frames=None):
        return 1e4 * super().__call__(frames, frame_indices, num_frames)


def test_bound_shift_caps_each_frame_and_keeps_small_frames():
    pipe = tiny_pipe()
    ctx = make_denoiser(pipe, num_frames=4, steps=10)
    t_prev = ctx.prev_t(ctx.timesteps[-3])
    noise = float(noise_left(ctx, t_prev))
    delta = torch.zeros(1, 4, 4, 8, 8)
    delta[:, :, 0] = 5 * noise  # far outside the region
    delta[:, :, 1] = 0.1 * noise  # inside: kept as it is
    out = bound_shift(ctx, delta.clone(), t_prev, trust=0.5)
    r = frame_rms(out) / noise
    assert float(r[0]) == pytest.approx(0.5, rel=1e-5)
    assert float(r[1]) == pytest.approx(0.1, rel=1e-5)
    assert torch.equal(out[:, :, 1], delta[:, :, 1]) and float(r[2]) == 0.0
    assert ctx.stats["shift_ratio"] == pytest.approx(0.5, rel=1e-5)
    assert ctx.stats["shift_ratio_raw"] == pytest.approx(5.0, rel=1e-5)
    # trust 0: the old, unbounded forms
    assert torch.equal(bound_shift(ctx, delta.clone(), t_prev, trust=0.0), delta)


@pytest.mark.parametrize("method", ["mpgd", "freedom"])
def test_a_step_larger_than_the_trust_region_is_cut_to_it(method):
    pipe = tiny_pipe()
    target = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=4, steps=10, reward=TargetReward(target))
    ctx.eta = 0.0
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t, i = ctx.timesteps[3], 3
    plain = make_guidance(method, rho=0.0, scale="noise")
    guided = make_guidance(method, rho=3.0, scale="noise", trust=1.0)
    for g in (plain, guided):
        g.start(ctx)
    delta = guided.step(ctx, x, t, i) - plain.step(ctx, x, t, i)
    per_frame = frame_rms(delta) / float(noise_left(ctx, ctx.prev_t(t)))
    assert float(per_frame.max()) == pytest.approx(1.0, rel=1e-3)  # ρ = 3 asked for 3× the noise left


def _schedules():
    """(preset, scheduler, steps) as each preset samples: micro's own config (v-prediction, leading, 20 steps),
    the tiny preset's, and the animatediff preset's (DDIM linear betas, linspace, 25 steps)."""
    from pipelines.micro import MICRO_DIR

    micro = DDIMScheduler.from_pretrained(str(MICRO_DIR), subfolder="scheduler")
    tiny = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)
    animatediff = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                                timestep_spacing="linspace", steps_offset=1)
    return [("micro", micro, 20), ("tiny", tiny, 4), ("animatediff", animatediff, 25)]


def _resolved():
    """Every distinct (preset, schedule, method, defaults) the presets resolve to, over every task."""
    out = {}
    for preset, scheduler, steps in _schedules():
        defaults = DefaultsOnly(preset)
        for method in GRADIENT_METHODS:
            for task in TASKS:
                params = resolve_params(method, None, defaults, task)
                key = (preset, method, tuple(sorted(params.items())))
                out.setdefault(key, (preset, scheduler, steps, method, params, task))
    return list(out.values())


def measured_shifts(ctx, guidance, x: torch.Tensor) -> list[float]:
    """Each guided move, measured rather than read from the method's own record: per guided step, the method's
    x_{t−1} minus the unguided DDIM x_{t−1} from the same x_t (η = 0, so the unguided step has no noise), as its
    largest frame rms ÷ the noise left √(1−ᾱ_{t−1}); for DOODL, the optimised x_T minus x_T ÷ the noise at T."""
    ctx.eta = 0.0
    plain = Guidance()  # the unguided DDIM step
    guidance.start(ctx)
    plain.start(ctx)
    init = guidance.initial_latents(ctx, x)
    if hasattr(init, "__next__"):
        while True:
            try:
                next(init)
            except StopIteration as stop:
                x_T = stop.value
                break
        return [float(frame_rms(x_T - x).max() / noise_left(ctx, int(ctx.timesteps[0])))]
    out = []
    for i, t in enumerate(ctx.timesteps):
        ref = plain.step(ctx, x, t, i)
        nxt = guidance.step(ctx, x, t, i)
        guided = getattr(guidance, "guided", None)
        if ctx.prev_t(t) >= 0 and (guided is None or guided(ctx, t, i)):
            out.append(float(frame_rms(nxt - ref).max() / noise_left(ctx, ctx.prev_t(t)).clamp(min=1e-12)))
        x = nxt
    return out


@pytest.mark.parametrize("case", _resolved(), ids=lambda c: f"{c[0]}-{c[3]}-{c[5]}")
def test_no_default_step_exceeds_the_noise_left(case):
    preset, scheduler, steps, method, params, _task = case
    if method == "doodl":  # its x_T steps are bounded the same way; a 25-step chain × 3 iterations is slow: fewer
        steps = min(steps, 6)
    pipe = tiny_pipe()
    saved = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(scheduler.config)
    try:
        target = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        ctx = make_denoiser(pipe, num_frames=4, steps=steps, reward=LoudTarget(target))
        x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
        shifts = measured_shifts(ctx, make_guidance(method, **params), x)
    finally:
        pipe.scheduler = saved
    assert shifts, f"{method} took no guided step"
    assert max(shifts) > 1e-3, f"{method}: guidance moved nothing, so the bound was not exercised"
    assert max(shifts) <= MAX_SHIFT * (1 + 1e-4), f"{preset} {method} {params}: step {max(shifts):.3g}× the noise left"


@pytest.mark.parametrize("preset", ["micro", "tiny"])
def test_free2guide_moves_by_the_samplers_own_noise(preset):
    """Free²Guide's guided step is a choice among η = 1 candidates: measured, the chosen x_{t−1} sits σ_t ξ from
    the DDIM mean, the sampler's own noise (σ_t ≤ √(1−ᾱ_{t−1})), not a gradient step."""
    scheduler, steps = {p: (s, n) for p, s, n in _schedules()}[preset]
    params = resolve_params("free2guide", None, DefaultsOnly(preset), "t2v")
    pipe = tiny_pipe()
    pipe.scheduler = DDIMScheduler.from_config(scheduler.config)
    target = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=4, steps=min(steps, 6), reward=LoudTarget(target))
    guidance = make_guidance("free2guide", **params)
    guidance.start(ctx)
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    t = ctx.timesteps[0]
    with torch.no_grad():
        eps = ctx.eps(x, t)
        mean = ctx.ddim(ctx.x0(x, eps, t), eps, t, noise=torch.zeros_like(x), eta=1.0)
        chosen = guidance.step(ctx, x, t, 0)
    sigma, left = float(ctx.sigma(t, 1.0)), float(noise_left(ctx, ctx.prev_t(t)))
    assert 0 < sigma <= left
    moved = frame_rms(chosen - mean) / sigma  # ξ's rms per frame: 1 within sampling error over 256 values
    assert float(moved.min()) > 0.8 and float(moved.max()) < 1.2


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_every_gradient_method_steps_through_the_trust_region(method):
    """A tight region binds every method's measured steps, and without it the same method moves further: the
    region, not the form, set the step (each method routes its shift through `bound_shift`)."""
    pipe = tiny_pipe()
    target = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    once = {"iterations": 1} if method == "doodl" else {}  # the region bounds each of DOODL's x_T moves
    tight, free = (measured_shifts(make_denoiser(pipe, num_frames=4, steps=4, reward=LoudTarget(target)),
                                   make_guidance(method, trust=trust, **once), x) for trust in (0.01, 0.0))
    assert tight and max(tight) <= 0.01 * (1 + 1e-4)
    assert max(free) > 0.02  # the method asked for more


@pytest.mark.parametrize("end_step, guided", [(-1, [0, 1, 2, 3]), (-2, [0, 1, 2]), (-3, [0, 1]), (2, [0, 1])])
def test_negative_end_step_counts_from_the_end_like_a_slice(end_step, guided):
    """end_step −1 guides all but the last of 5 steps, −2 all but the last two: each value its own range (−1 and −2
    once guided the same steps, the final step being unguided anyway)."""
    pipe = tiny_pipe()
    titan = make_guidance("titan", end_step=end_step)
    seen = []
    is_guided = titan.guided
    titan.guided = lambda ctx, t, i: (seen.append(i) if is_guided(ctx, t, i) else None, is_guided(ctx, t, i))[1]
    pipe("a red circle", generator=torch.Generator().manual_seed(0), reward=TargetReward(torch.zeros(4, 3, 16, 16)),
         guidance=titan, num_frames=4, height=16, width=16, num_inference_steps=5, output_type="pt")
    assert sorted(set(seen)) == guided
