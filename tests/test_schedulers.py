"""Contract 1 beyond DDIM: every diffusers scheduler, callbacks, latent output, FreeInit, FreeNoise prompt travel,
IP-Adapter embeddings and `from_pipe`, each against `AnimateDiffPipeline` on the same components; guidance on
schedulers other than DDIM (issue 17)."""
import pytest
import torch
from diffusers import (
    AnimateDiffPipeline,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from pipelines import GuidedAnimateDiffPipeline
from pipelines.guidance import make_guidance
from pipelines.testing import tiny_components
from tests.engine_helpers import TargetReward

SCHEDULERS = {
    "euler": lambda c: EulerDiscreteScheduler.from_config(c),
    "euler_ancestral": lambda c: EulerAncestralDiscreteScheduler.from_config(c),
    "euler_karras_v": lambda c: EulerDiscreteScheduler.from_config(c, use_karras_sigmas=True,
                                                                    prediction_type="v_prediction"),
    "dpmsolver++": lambda c: DPMSolverMultistepScheduler.from_config(c, algorithm_type="dpmsolver++"),
    "dpmsolver": lambda c: DPMSolverMultistepScheduler.from_config(c, algorithm_type="dpmsolver",
                                                                   final_sigmas_type="sigma_min"),
    "sde-dpmsolver++": lambda c: DPMSolverMultistepScheduler.from_config(c, algorithm_type="sde-dpmsolver++"),
    "unipc": lambda c: UniPCMultistepScheduler.from_config(c),
    "pndm": lambda c: PNDMScheduler.from_config(c),
    "lcm": lambda c: LCMScheduler.from_config(c),
    "ddim_thresholding": lambda c: DDIMScheduler.from_config(c, thresholding=True, sample_max_value=0.5),
}
KW = dict(prompt="a red circle moving left", num_frames=4, height=16, width=16, num_inference_steps=5,
          guidance_scale=7.5)


@pytest.fixture(scope="module")
def comps():
    return tiny_components()


def pair(comps, scheduler=None):
    """The parent and ours on the very same modules (`from_pipe`)."""
    c = dict(comps)
    if scheduler is not None:
        c["scheduler"] = SCHEDULERS[scheduler](comps["scheduler"].config)
    ref = AnimateDiffPipeline(**c)
    ours = GuidedAnimateDiffPipeline.from_pipe(ref)
    for p in (ref, ours):
        p.set_progress_bar_config(disable=True)
    return ref, ours


def run(pipe, seed=3, **kw):
    args = dict(KW, output_type="pt", generator=torch.Generator().manual_seed(seed))
    args.update(kw)
    return pipe(**args).frames


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_without_guidance_gives_the_parents_frames(comps, name):
    ref, ours = pair(comps, name)
    a, b = run(ref), run(ours)
    assert torch.equal(a, b), (name, (a - b).abs().max().item())
    ddim = run(pair(comps)[1])
    assert (a - ddim).abs().max().item() > 1e-4  # the scheduler does change the video


def test_callbacks_see_the_parents_tensors_and_can_change_latents(comps):
    ref, ours = pair(comps, "dpmsolver++")
    seen = {}

    def record(tag):
        def cb(pipe, i, t, kw):
            seen.setdefault(tag, []).append((i, float(t), {k: v.clone() for k, v in kw.items()}))
            if i == 1:
                kw["latents"] = kw["latents"] * 0.5  # a callback may replace the latents
            return kw
        return cb

    names = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    a = run(ref, callback_on_step_end=record("ref"), callback_on_step_end_tensor_inputs=names)
    b = run(ours, callback_on_step_end=record("ours"), callback_on_step_end_tensor_inputs=names)
    assert torch.equal(a, b)
    assert len(seen["ours"]) == len(seen["ref"]) == KW["num_inference_steps"]
    for (i, t, x), (j, u, y) in zip(seen["ref"], seen["ours"]):
        assert (i, t) == (j, u) and set(y) == set(names)
        for k in names:
            assert torch.equal(x[k], y[k]), k
    plain = run(ours)
    assert (plain - b).abs().max().item() > 1e-4


def test_latent_output_and_videos_per_prompt_as_the_parent(comps):
    ref, ours = pair(comps, "euler")
    a, b = run(ref, output_type="latent"), run(ours, output_type="latent")
    assert a.shape == b.shape == (1, 4, 4, 8, 8) and torch.equal(a, b)  # latents, not frames
    a2, b2 = run(ref, num_videos_per_prompt=2), run(ours, num_videos_per_prompt=2)
    assert a2.shape == b2.shape and torch.equal(a2, b2)


@pytest.mark.parametrize("name", [None, "dpmsolver++"])
def test_free_init_as_the_parent(comps, name):
    ref, ours = pair(comps, name)
    off = run(ours)
    for p in (ref, ours):
        p.enable_free_init(num_iters=2, use_fast_sampling=False)
    a, b = run(ref), run(ours)
    assert torch.equal(a, b)
    assert (b - off).abs().max().item() > 1e-3
    ours.disable_free_init()
    assert torch.equal(run(ours), off)


def test_prompt_travel_as_the_parent(comps):
    ref, ours = pair(comps)
    travel = {0: "a red circle moving left", 6: "a blue square moving up"}
    for p in (ref, ours):
        p.enable_free_noise(context_length=8, context_stride=4)
    kw = dict(prompt=travel, num_frames=10)
    a, b = run(ref, **kw), run(ours, **kw)
    assert a.shape == (1, 10, 3, 16, 16) and torch.equal(a, b)
    single = run(ours, prompt="a red circle moving left", num_frames=10)
    assert (b - single).abs().max().item() > 1e-4


def test_ip_adapter_embeds_as_the_parent_and_with_guidance(comps):
    from tests.diffusers_compat.model_helpers import create_ip_adapter_state_dict

    ref, ours = pair(comps)
    ref.unet._load_ip_adapter_weights(create_ip_adapter_state_dict(ref.unet))  # shared by `ours`
    assert ours.unet is ref.unet
    ref.set_ip_adapter_scale(1.0)
    embeds = [torch.randn(2, 1, ref.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))]
    a, b = run(ref, ip_adapter_image_embeds=embeds), run(ours, ip_adapter_image_embeds=embeds)
    assert torch.equal(a, b)
    assert (b - run(ours, ip_adapter_image_embeds=[embeds[0] * 0])).abs().max().item() > 1e-4
    # guidance on top of an IP-Adapter (both routes to a style reference at once)
    target = torch.full((4, 3, 16, 16), 0.5)
    kw = dict(output_type="pt", generator=torch.Generator().manual_seed(3), reward=TargetReward(target),
              ip_adapter_image_embeds=embeds, eta=0.0)
    base = ours(**dict(KW, **kw)).final_reward
    kw["generator"] = torch.Generator().manual_seed(3)
    guided = ours(**dict(KW, **kw), guidance=make_guidance("mpgd")).final_reward
    assert guided > base


def test_from_pipe_both_ways(comps):
    ref, ours = pair(comps, "unipc")
    back = AnimateDiffPipeline.from_pipe(ours)
    assert type(back) is AnimateDiffPipeline and back.unet is ours.unet
    assert torch.equal(run(back), run(ours))
    assert "frame_tokens" not in ours.components


@pytest.mark.parametrize("name", ["dpmsolver++", "euler_ancestral", "lcm"])
@pytest.mark.parametrize("method", ["mpgd", "titan", "freedom"])
def test_guidance_raises_the_reward_on_other_schedulers(comps, name, method):
    _, ours = pair(comps, name)
    target = torch.full((4, 3, 16, 16), 0.5)

    def final(guidance):
        return ours(**KW, output_type="pt", generator=torch.Generator().manual_seed(1), reward=TargetReward(target),
                    guidance=guidance, eta=0.0).final_reward

    params = {"freedom": {"time_travel": 1}}.get(method, {})  # time travel retakes the scheduler's step
    assert final(make_guidance(method, **params)) > final(None) + 1e-4


def test_free2guide_runs_on_a_multistep_scheduler(comps):
    _, ours = pair(comps, "dpmsolver++")
    target = torch.full((4, 3, 16, 16), 0.5)
    out = ours(**KW, output_type="pt", generator=torch.Generator().manual_seed(1), reward=TargetReward(target),
               guidance=make_guidance("free2guide", num_candidates=3))
    assert out.frames.shape == (1, 4, 3, 16, 16) and torch.isfinite(out.frames).all()


@pytest.mark.parametrize("method,params", [("doodl", {}), ("titan", {"depth": 1})])
def test_methods_that_need_ddim_say_so(comps, method, params):
    _, ours = pair(comps, "euler")
    with pytest.raises(ValueError, match="needs DDIMScheduler"):
        ours(**KW, output_type="pt", reward=TargetReward(torch.zeros(4, 3, 16, 16)),
             guidance=make_guidance(method, **params))


def test_prompt_travel_with_frame_tokens(comps):
    """FreeNoise's per-frame embeddings get each frame's HARIVO tokens (the micro preset ships a generator)."""
    from pipelines.frame_tokens import HarivoFrameTokens

    c = dict(comps)
    torch.manual_seed(0)
    gen = HarivoFrameTokens(dim=c["text_encoder"].config.hidden_size, text_length=c["tokenizer"].model_max_length,
                            max_frames=16)
    plain = GuidedAnimateDiffPipeline(**c)
    tokens = GuidedAnimateDiffPipeline(**c, frame_tokens=gen)
    for p in (plain, tokens):
        p.set_progress_bar_config(disable=True)
        p.enable_free_noise(context_length=8, context_stride=4)
    kw = dict(prompt={0: "a red circle", 5: "a blue square"}, num_frames=10)
    a, b = run(plain, **kw), run(tokens, **kw)
    assert a.shape == b.shape == (1, 10, 3, 16, 16)
    assert (a - b).abs().max().item() > 1e-4
