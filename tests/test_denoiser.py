"""The noise-level denoiser interface (docs/denoiser.md): the model wrapper's (x̂0, ε̂) for every prediction type, no
scheduler state ever copied (a retaken step runs on a fresh scheduler replayed through the run), the trust region
stated in b_{t−1} on VP and flow schedules, and guided windows stated in noise level."""
import copy
import inspect
from types import SimpleNamespace

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from pipelines import GuidedAnimateDiffPipeline
from pipelines.guidance import make_guidance
from pipelines.guidance.base import bound_shift, frame_rms, guided_steps
from pipelines.sampler import NoiseSchedule, Prediction, SchedulerStep
from pipelines.testing import tiny_components
from tests.engine_helpers import TargetReward

VP = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear")


def unipc_flow(**kw):
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, **kw)


SCHEDULERS = {
    "ddim": lambda: DDIMScheduler(**VP),
    "ddim_thresholding": lambda: DDIMScheduler(**VP, thresholding=True, sample_max_value=0.5),
    "euler": lambda: EulerDiscreteScheduler(**VP),
    "euler_ancestral": lambda: EulerAncestralDiscreteScheduler(**VP),
    "dpmsolver++": lambda: DPMSolverMultistepScheduler(**VP),
    "sde-dpmsolver++": lambda: DPMSolverMultistepScheduler(**VP, algorithm_type="sde-dpmsolver++"),
    "unipc": lambda: UniPCMultistepScheduler(**VP),
    "pndm": lambda: PNDMScheduler(**VP, skip_prk_steps=True),
    "lcm": lambda: LCMScheduler(**VP),
    "flow_euler": lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
    "unipc_flow": unipc_flow,
}


# --- the model wrapper ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_prediction_gives_x0_and_eps_whatever_a_vp_model_predicts(kind):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 5, 5, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, 5, 5, generator=g,
                                                                                        dtype=torch.float64)
    abar = torch.tensor(0.3, dtype=torch.float64)
    a, b = abar.sqrt(), (1 - abar).sqrt()
    x = a * x0 + b * eps
    out = {"epsilon": eps, "v_prediction": a * eps - b * x0, "sample": x0}[kind]
    p = Prediction(kind)
    e = p.eps(out, x, abar)
    torch.testing.assert_close(e, eps)
    torch.testing.assert_close((x - b * e) / a, x0)  # Denoiser.x0's Tweedie on that ε̂
    torch.testing.assert_close(p.output(x, x0, abar), out)  # the inverse, fed to a scheduler's step


@pytest.mark.parametrize("sigma", [1.0, 0.7, 0.05])
def test_prediction_of_a_flow_velocity(sigma):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(1, 16, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(1, 16, 3, 4, 4, generator=g,
                                                                                         dtype=torch.float64)
    x = (1 - sigma) * x0 + sigma * eps
    v = eps - x0  # the rectified-flow target
    e, z0 = Prediction.flow_split(v, x, sigma)
    torch.testing.assert_close(e, eps)
    torch.testing.assert_close(z0, x0)  # exact at σ = 1 too, where a_t = 0 and Tweedie would divide by zero
    torch.testing.assert_close(Prediction.flow_output(x, x0, sigma), v)


def test_unknown_prediction_type_is_named():
    with pytest.raises(ValueError, match="'velocity'"):
        Prediction("velocity")


# --- no scheduler state copied ------------------------------------------------------------------------------
def _accepts_generator(s) -> bool:
    return "generator" in inspect.signature(s.step).parameters


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "ddim"])
def test_a_fresh_replayed_scheduler_steps_as_the_one_it_replaces(name):
    """`SchedulerStep.fresh` (from_config + set_timesteps + the run's inputs) has the state of the scheduler it
    stands in for: the step it retakes and the steps after it equal that scheduler's (compared here with a deep copy
    taken by the test, which the sampler never takes)."""
    s = SCHEDULERS[name]()
    s.set_timesteps(6)
    ts = list(s.timesteps)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 2, 4, 4, generator=g) * float(getattr(s, "init_noise_sigma", 1.0))
    history = []
    for t in ts[:3]:
        out = torch.randn(x.shape, generator=g)
        kw = {"generator": torch.Generator().manual_seed(9)} if _accepts_generator(s) else {}
        history.append((out, t, x))
        x = s.step(out, t, x, **kw).prev_sample
    reference = copy.deepcopy(s)  # the state before step 3

    def step_kwargs(generator=None):
        return {"generator": generator} if _accepts_generator(s) else {}

    ctx = SimpleNamespace(scheduler=s, timesteps=[int(t) for t in ts], step_kwargs=step_kwargs)
    st = SchedulerStep(ctx)
    st.history, st.t, st.xs = history, int(ts[3]), x
    s.step(torch.randn(x.shape, generator=g), ts[3], x, **step_kwargs(torch.Generator()))  # the first take
    fresh = st.fresh()
    assert fresh is not s and type(fresh) is type(s)
    for t in ts[3:]:
        out = torch.randn(x.shape, generator=g)
        a = reference.step(out, t, x, **step_kwargs(torch.Generator().manual_seed(4))).prev_sample
        b = fresh.step(out, t, x, **step_kwargs(torch.Generator().manual_seed(4))).prev_sample
        assert torch.equal(a, b), (name, int(t))
        x = a


def test_a_retake_without_history_is_refused_by_name():
    s = DPMSolverMultistepScheduler(**VP)
    s.set_timesteps(4)
    ctx = SimpleNamespace(scheduler=s, timesteps=[int(t) for t in s.timesteps], step_kwargs=lambda generator=None: {})
    st = SchedulerStep(ctx)
    st.t, st.xs = int(s.timesteps[2]), torch.zeros(1, 4, 1, 2, 2)
    with pytest.raises(RuntimeError, match="retakes_step"):
        st.fresh()


@pytest.fixture
def no_scheduler_deepcopy(monkeypatch):
    """copy.deepcopy raises for a scheduler or a dict of a scheduler's attributes (what a snapshot of its state
    would copy); counts the calls it refused."""
    real = copy.deepcopy
    refused = []

    def guarded(obj, memo=None, _nil=[]):  # noqa: B006 - copy.deepcopy's own signature
        state = isinstance(obj, dict) and "timesteps" in obj and ("sigmas" in obj or "alphas_cumprod" in obj)
        if isinstance(obj, SchedulerMixin) or state:
            refused.append(type(obj).__name__)
            raise AssertionError(f"the sampler deep-copied scheduler state ({type(obj).__name__})")
        return real(obj, memo)

    monkeypatch.setattr(copy, "deepcopy", guarded)
    return refused


AD_SCHEDULERS = {
    "ddim": lambda c: DDIMScheduler.from_config(c),
    "euler": lambda c: EulerDiscreteScheduler.from_config(c),
    "dpmsolver++": lambda c: DPMSolverMultistepScheduler.from_config(c),
    "unipc": lambda c: UniPCMultistepScheduler.from_config(c),
}


@pytest.mark.parametrize("name", list(AD_SCHEDULERS))
def test_guided_run_with_retaken_steps_copies_no_scheduler_state_animatediff(name, no_scheduler_deepcopy):
    comps = tiny_components()
    comps["scheduler"] = AD_SCHEDULERS[name](comps["scheduler"].config)
    pipe = GuidedAnimateDiffPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    target = torch.full((4, 3, 16, 16), 0.5)
    kw = dict(prompt="a red circle", num_frames=4, height=16, width=16, num_inference_steps=4, output_type="pt",
              reward=TargetReward(target), eta=0.0)
    base = pipe(**kw, generator=torch.Generator().manual_seed(1)).final_reward
    guided = pipe(**kw, generator=torch.Generator().manual_seed(1),
                  guidance=make_guidance("freedom", time_travel=1, scale="noise", rho=0.3)).final_reward
    assert guided > base + 1e-5  # the retaken steps did guide
    assert no_scheduler_deepcopy == []


def test_guided_run_with_retaken_steps_copies_no_scheduler_state_flow(no_scheduler_deepcopy):
    from pipelines import GuidedWanPipeline
    from tests.wan_helpers import dummy_inputs, linear_decode_vae, tiny_wan_components

    class Brightness(TargetReward):
        def __init__(self):
            pass

        def __call__(self, frames, frame_indices=None, num_frames=None):
            return frames.mean(dim=(1, 2, 3))

    comps = tiny_wan_components(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    comps["vae"] = linear_decode_vae()
    pipe = GuidedWanPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    kw = dummy_inputs(num_inference_steps=4)
    kw.pop("generator")
    base = pipe(**kw, generator=torch.Generator().manual_seed(0), reward=Brightness()).final_reward
    guided = pipe(**kw, generator=torch.Generator().manual_seed(0), reward=Brightness(),
                  guidance=make_guidance("freedom", time_travel=1, scale="noise", rho=0.3)).final_reward
    assert guided > base
    assert no_scheduler_deepcopy == []


# --- the trust region in b_{t−1} ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ddim", "dpmsolver++", "euler", "flow_euler", "unipc_flow"])
def test_trust_region_is_trust_times_the_noise_left_in_the_schedulers_own_latents(name):
    """A bounded shift, taken back to the scheduler's own latents a·x0 + b·ε, has rms trust·b_{t−1} per frame:
    √(1−ᾱ_{t−1}) on a VP schedule, σ_{t−1} on a σ-space or flow one, read here from the scheduler itself."""
    s = SCHEDULERS[name]()
    s.set_timesteps(8)
    sched = NoiseSchedule(s, s.timesteps, "cpu")
    g = torch.Generator().manual_seed(3)
    for k in range(len(s.timesteps) - 1):
        t_prev = sched.prev(int(s.timesteps[k]))
        if sched.kind == "vp":
            b_own = float((1 - s.alphas_cumprod[t_prev]).sqrt())
        else:  # σ at the next listed timestep: the noise of the scheduler's own x_{t−1}
            b_own = float(s.sigmas[k + 1])
        ctx = SimpleNamespace(level=sched.level, stats={})
        delta = torch.randn(1, 4, 3, 4, 4, generator=g) * 50  # far outside the region
        bounded = bound_shift(ctx, delta, t_prev, trust=0.5)
        own = bounded / sched.vp_scale(t_prev)  # the shift in the scheduler's own latents
        torch.testing.assert_close(frame_rms(own), torch.full((3,), 0.5 * b_own), rtol=1e-4, atol=1e-7)
        assert ctx.stats["shift_ratio"] == pytest.approx(0.5, rel=1e-4)
        small = delta * 1e-6 * b_own  # inside: kept as it is
        assert torch.equal(bound_shift(ctx, small, t_prev, trust=0.5), small)


# --- guided windows in noise level -------------------------------------------------------------------------
def _nu(sched, i):
    return sched.noise_level(sched.timesteps[i])


def test_noise_window_guides_the_same_noise_levels_on_shifted_flow_schedules():
    """guide_from/guide_to pick the steps by noise level: on flow schedules shifted by 1 and by 5 (which put their
    steps at very different noise levels) the guided steps are exactly those inside the window, at different
    step indices, while the same step window would guide other noise levels."""
    picked = {}
    for shift in (1.0, 5.0):
        s = FlowMatchEulerDiscreteScheduler(shift=shift)
        s.set_timesteps(10)
        sched = NoiseSchedule(s, s.timesteps, "cpu")
        steps = guided_steps(sched, 0, len(s.timesteps), guide_from=0.9, guide_to=0.4)
        for i in range(len(s.timesteps)):
            assert (i in steps) == (0.4 <= _nu(sched, i) <= 0.9), (shift, i, _nu(sched, i))
        picked[shift] = sorted(steps)
        assert steps, shift
    assert picked[1.0] != picked[5.0]  # a step-index window could not express both
    # the old step-index fields still work, alone and together with a noise window (negative end_step as a slice)
    s = FlowMatchEulerDiscreteScheduler(shift=5.0)
    s.set_timesteps(10)
    sched = NoiseSchedule(s, s.timesteps, "cpu")
    assert guided_steps(sched, 2, -2) == set(range(2, 8))
    both = guided_steps(sched, 2, -2, guide_from=0.9, guide_to=0.4)
    assert both == set(range(2, 8)) & set(picked[5.0])


def test_noise_window_reads_the_same_on_vp_and_flow():
    """ν = √(1−ᾱ_t) = b/√(a² + b²) on every family: a flow step at σ and a VP step whose ᾱ matches it have the same ν."""
    s = FlowMatchEulerDiscreteScheduler(shift=3.0)
    s.set_timesteps(6)
    sched = NoiseSchedule(s, s.timesteps, "cpu")
    for k, t in enumerate(sched.timesteps):
        sig = float(s.sigmas[k])
        assert sched.noise_level(t) == pytest.approx(sig / ((1 - sig) ** 2 + sig**2) ** 0.5, rel=1e-6)
    d = DDIMScheduler(**VP)
    d.set_timesteps(6)
    vp = NoiseSchedule(d, d.timesteps, "cpu")
    for t in vp.timesteps:
        assert vp.noise_level(t) == pytest.approx(float((1 - d.alphas_cumprod[t]).sqrt()), rel=1e-6)


def test_noise_window_bad_input_names_the_fields():
    with pytest.raises(ValueError, match="guide_to must be ≤ titan.guide_from"):
        make_guidance("titan", guide_from=0.3, guide_to=0.6)
    with pytest.raises(ValueError, match="mpgd.guide_from"):
        make_guidance("mpgd", guide_from=1.5)


def test_a_guided_run_steps_only_inside_its_noise_window():
    """MPGD on the tiny pipeline with a noise window: the steps that report a guided shift are exactly the steps
    whose noise level is in the window (and not the last)."""
    comps = tiny_components()
    pipe = GuidedAnimateDiffPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    target = torch.full((4, 3, 16, 16), 0.5)
    guidance = make_guidance("mpgd", guide_from=0.95, guide_to=0.5)
    events = list(pipe.stream(prompt="a red circle", num_frames=4, height=16, width=16, num_inference_steps=8,
                              reward=TargetReward(target), guidance=guidance, generator=torch.Generator().manual_seed(0),
                              preview_every=0))
    steps = [e for e in events if not e.final]
    pipe.scheduler.set_timesteps(8)
    sched = NoiseSchedule(pipe.scheduler, pipe.scheduler.timesteps, "cpu")
    expected = [i for i in range(7) if 0.5 <= _nu(sched, i) <= 0.95]
    assert 0 < len(expected) < 7
    assert [e.index for e in steps if "shift_ratio" in e.rewards] == expected
