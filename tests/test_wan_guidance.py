"""Guidance on flow matching (GuidedWanPipeline on tiny random Wan components): forward-mode exactness through Wan's
transformer and VAE, every method raising its reward over the unguided run at the same seed, and the refusals."""
import pytest
import torch
from torch.func import jvp

from pipelines import GuidedWanPipeline
from pipelines.guidance import make_guidance
from pipelines.guidance.forward_ad import WanForwardADAttnProcessor, forward_ad_safe
from rewards.base import Reward

from .wan_helpers import dummy_inputs, linear_decode_vae, tiny_wan_components


class Brightness(Reward):
    """Mean brightness of each decoded frame: differentiable, linear in the frames."""

    name = "brightness"

    def __call__(self, frames, frame_indices=None, num_frames=None):
        return frames.mean(dim=(1, 2, 3))


def wan_f64():
    comps = tiny_wan_components()
    return comps["transformer"].double().eval(), comps["vae"].double().eval()


def objective(tr, vae, emb):
    """J(z) = mean brightness of the decoded x̂0 = z − σ·v̂(z) at σ = 0.6: the transformer, then the real VAE."""
    t = torch.tensor([600.0], dtype=torch.float64)

    def J(z):
        v = tr(hidden_states=z, timestep=t, encoder_hidden_states=emb, return_dict=False)[0]
        return vae.decode(z - 0.6 * v, return_dict=False)[0].mean()

    return J


def test_jvp_through_wan_equals_autograd_float64():
    tr, vae = wan_f64()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 16, 3, 2, 2, generator=g, dtype=torch.float64)
    v = torch.randn(z.shape, generator=g, dtype=torch.float64)
    emb = torch.randn(1, 16, 32, generator=g, dtype=torch.float64)
    J = objective(tr, vae, emb)
    zz = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(J(zz), zz)
    expected = float((grad * v).sum())
    # chunk_elements small enough that every attention is split into several chunks
    with forward_ad_safe([tr, vae], attention="chunked", chunk_elements=8) as proc:
        value, d = jvp(J, (z,), (v,))
    assert isinstance(proc, WanForwardADAttnProcessor) and proc.calls["chunked"] > 0
    assert float(value) == pytest.approx(float(J(z)), rel=1e-12)
    # Wan's blocks cast to float32 around their norms and residual sums (`.float()` in WanTransformerBlock) even in a
    # float64 model: agreement to float32's precision here (2.8e-8 relative on this input); the attention processor
    # alone agrees to float64's (test_forward_ad_attention_jvp_equals_autograd_float64)
    assert float(d) == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert expected != 0.0


def test_forward_ad_attention_jvp_equals_autograd_float64():
    """One WanAttention (self-attention with the rotary embedding, RMS norm across heads) under the forward-mode
    processor, chunked: its jvp equals the autograd directional derivative to float64 precision."""
    tr, _ = wan_f64()
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 16, 3, 4, 4, generator=g, dtype=torch.float64)
    rotary = tr.rope(z)
    attn = tr.blocks[0].attn1
    h = torch.randn(1, 12, attn.inner_dim, generator=g, dtype=torch.float64)  # 3·2·2 tokens after patching
    v = torch.randn(h.shape, generator=g, dtype=torch.float64)
    u = torch.randn(h.shape, generator=g, dtype=torch.float64)

    def f(x):
        return (attn(x, rotary_emb=rotary) * u).sum()

    hh = h.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(hh), hh)  # the stock processor (SDPA)
    with forward_ad_safe([tr], attention="chunked", chunk_elements=20) as proc:
        value, d = jvp(f, (h,), (v,))
    assert proc.calls["chunked"] > 0
    assert float(value) == pytest.approx(float(f(h)), rel=1e-12)
    assert float(d) == pytest.approx(float((grad * v).sum()), rel=1e-10)


def test_forward_ad_processor_matches_wan_attention():
    tr, _ = wan_f64()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 16, 3, 4, 4, generator=g, dtype=torch.float64)
    emb = torch.randn(1, 16, 32, generator=g, dtype=torch.float64)
    t = torch.tensor([300.0], dtype=torch.float64)
    with torch.no_grad():
        ref = tr(hidden_states=z, timestep=t, encoder_hidden_states=emb, return_dict=False)[0]
        with forward_ad_safe([tr], attention="chunked", chunk_elements=16):
            out = tr(hidden_states=z, timestep=t, encoder_hidden_states=emb, return_dict=False)[0]
        restored = tr(hidden_states=z, timestep=t, encoder_hidden_states=emb, return_dict=False)[0]
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert torch.equal(restored, ref)  # the stock processors are back after the block


@pytest.fixture(scope="module")
def bright_pipe():
    comps = tiny_wan_components()
    comps["vae"] = linear_decode_vae()
    return GuidedWanPipeline(**comps)


def run(pipe, output_type="pt", **kw):
    return pipe(**dummy_inputs(num_inference_steps=6, output_type=output_type), reward=Brightness(), **kw)


@pytest.fixture(scope="module")
def unguided_reward(bright_pipe):
    return run(bright_pipe).final_reward


@pytest.mark.parametrize("name,params", [
    ("titan", {}),
    ("titan", {"depth": 1}),
    ("freedom", {"scale": "noise"}),
    ("mpgd", {}),
    ("tfg", {}),
    ("doodl", {}),
    ("free2guide", {"guided_fraction": 1.0, "num_candidates": 8}),
], ids=["titan", "titan_depth1", "freedom", "mpgd", "tfg", "doodl", "free2guide"])
def test_method_raises_reward_on_flow(bright_pipe, unguided_reward, name, params):
    out = run(bright_pipe, guidance=make_guidance(name, **params))
    assert out.final_reward > unguided_reward + 0.005, (name, out.final_reward, unguided_reward)


def test_harivo_mg_smooths_frames_on_flow(bright_pipe):
    def frame_change(z):  # rms change between consecutive latent frames
        return float((z[:, :, 1:] - z[:, :, :-1]).pow(2).mean().sqrt())

    inputs = dict(num_inference_steps=6, num_frames=13, output_type="latent")
    plain = bright_pipe(**dummy_inputs(**inputs)).frames
    smooth = bright_pipe(**dummy_inputs(**inputs), mg_scale=40.0).frames
    assert frame_change(smooth) < 0.9 * frame_change(plain)


def test_refusals_name_method_scheduler_and_alternative():
    from diffusers import DDIMScheduler, UniPCMultistepScheduler

    comps = tiny_wan_components(UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                        flow_shift=3.0))
    pipe = GuidedWanPipeline(**comps)
    with pytest.raises(ValueError, match=r"doodl.*FlowMatchEulerDiscreteScheduler.*UniPCMultistepScheduler.*titan"):
        run(pipe, guidance=make_guidance("doodl"))
    pipe.scheduler = DDIMScheduler()
    with pytest.raises(ValueError, match=r"titan.*flow-matching scheduler.*DDIMScheduler"):
        run(pipe, guidance=make_guidance("titan"))
    pipe.scheduler = UniPCMultistepScheduler.from_config(comps["scheduler"].config)
    with pytest.raises(ValueError, match=r"per_frame.*causal"):
        run(pipe, guidance=make_guidance("titan", per_frame=True))


@pytest.mark.parametrize("name,params", [("titan", {}), ("mpgd", {})])
def test_method_raises_reward_with_unipc_in_flow_mode(name, params):
    from diffusers import UniPCMultistepScheduler

    comps = tiny_wan_components(UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                        flow_shift=3.0))
    comps["vae"] = linear_decode_vae()
    pipe = GuidedWanPipeline(**comps)
    plain = run(pipe).final_reward
    guided = run(pipe, guidance=make_guidance(name, **params)).final_reward
    assert guided > plain + 0.005, (name, guided, plain)


@pytest.fixture(scope="module")
def real_vae_pipe():
    return GuidedWanPipeline(**tiny_wan_components())


@pytest.mark.parametrize("name", ["titan", "freedom", "mpgd", "tfg", "doodl", "free2guide"])
def test_method_runs_through_the_real_wan_vae(real_vae_pipe, name):
    """Every method end to end through the real (causal, cached) AutoencoderKLWan: finite frames, changed by the
    guidance (the reward gradients through this VAE are too small to steer, see `linear_decode_vae`)."""
    plain = run(real_vae_pipe, output_type="latent").frames
    guided = run(real_vae_pipe, output_type="latent", guidance=make_guidance(name)).frames
    assert torch.isfinite(guided).all() and guided.shape == plain.shape
    assert not torch.equal(guided, plain)
