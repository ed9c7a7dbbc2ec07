"""GuidedWanPipeline without guidance: the parent's frames, latents, callbacks and from_pipe; bad frame counts."""
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanPipeline

from pipelines import GuidedWanPipeline
from pipelines.wan import check_frame_count

from .wan_helpers import dummy_inputs, tiny_wan_components


def unipc_flow():
    # as diffusers' Wan example configures it: flow sigmas, flow prediction, a flow shift
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                   flow_shift=3.0)


@pytest.mark.parametrize("make_scheduler", [lambda: FlowMatchEulerDiscreteScheduler(shift=7.0), unipc_flow],
                         ids=["flow_euler", "unipc_flow"])
@pytest.mark.parametrize("output_type", ["pt", "latent"])
def test_unguided_equals_parent(make_scheduler, output_type):
    comps = tiny_wan_components(make_scheduler())
    parent = WanPipeline(**comps)
    guided = GuidedWanPipeline(**comps)
    a = parent(**dummy_inputs(num_inference_steps=4, output_type=output_type)).frames
    b = guided(**dummy_inputs(num_inference_steps=4, output_type=output_type)).frames
    assert a.shape == b.shape
    assert torch.equal(a, b)


def test_unguided_equals_parent_batch_no_cfg_and_callback():
    comps = tiny_wan_components()
    parent, guided = WanPipeline(**comps), GuidedWanPipeline(**comps)
    seen = {"parent": [], "guided": []}

    def callback(key):
        def cb(pipe, i, t, kw):
            seen[key].append((i, float(t), kw["latents"].clone()))
            return {"latents": kw["latents"] * 0.9}  # the returned latents replace the loop's
        return cb

    kw = dict(num_inference_steps=3, prompt=["dance monkey", "red cat"], negative_prompt=None, guidance_scale=1.0,
              output_type="latent")
    a = parent(**dummy_inputs(**kw), callback_on_step_end=callback("parent")).frames
    b = guided(**dummy_inputs(**kw), callback_on_step_end=callback("guided")).frames
    assert a.shape[0] == 2 and torch.equal(a, b)
    assert [(i, t) for i, t, _ in seen["parent"]] == [(i, t) for i, t, _ in seen["guided"]]
    assert all(torch.equal(x, y) for (_, _, x), (_, _, y) in zip(seen["parent"], seen["guided"]))


def test_from_pipe_both_ways():
    comps = tiny_wan_components()
    parent = WanPipeline(**comps)
    guided = GuidedWanPipeline.from_pipe(parent)
    assert type(guided) is GuidedWanPipeline and guided.transformer is parent.transformer
    back = WanPipeline.from_pipe(guided)
    assert type(back) is WanPipeline and back.vae is parent.vae
    a = back(**dummy_inputs()).frames
    b = guided(**dummy_inputs()).frames
    assert torch.equal(a, b)


def test_frame_counts_not_1_plus_4k_are_refused_with_valid_values():
    guided = GuidedWanPipeline(**tiny_wan_components())
    with pytest.raises(ValueError, match=r"num_frames=8.*use 5 or 9"):
        guided(**dummy_inputs(num_frames=8))
    with pytest.raises(ValueError, match=r"num_frames=11.*use 9 or 13"):
        check_frame_count(11)
    assert check_frame_count(1) == 1 and check_frame_count(81) == 81


@pytest.mark.parametrize("variant", ["two_stage", "expand_timesteps"])
def test_unguided_equals_parent_wan22_variants(variant):
    """Wan 2.2's switches: a second transformer below `boundary_ratio` (with `guidance_scale_2`), and one timestep
    per latent token (`expand_timesteps`)."""
    comps = tiny_wan_components()
    kw = {}
    if variant == "two_stage":
        comps["transformer_2"] = tiny_wan_components(layers=1)["transformer"]
        comps["boundary_ratio"] = 0.9
        kw["guidance_scale_2"] = 3.0
    else:
        comps["expand_timesteps"] = True
    parent, guided = WanPipeline(**comps), GuidedWanPipeline(**comps)
    a = parent(**dummy_inputs(num_inference_steps=4), **kw).frames
    b = guided(**dummy_inputs(num_inference_steps=4), **kw).frames
    assert torch.equal(a, b)


def test_stream_previews_rewards_and_cancel():
    from pipelines import Cancelled
    from rewards.base import Reward

    class Mean(Reward):
        name = "mean"

        def __call__(self, frames, frame_indices=None, num_frames=None):
            return frames.mean(dim=(1, 2, 3))

    pipe = GuidedWanPipeline(**tiny_wan_components())
    events = list(pipe.stream(**dummy_inputs(num_inference_steps=3), reward=Mean(), preview_every=1))
    steps, final = events[:-1], events[-1]
    assert [e.index for e in steps] == [0, 1, 2] and final.final
    assert all(e.preview.shape == (9, 3, 16, 16) and e.reward is not None for e in steps)
    assert final.frames.shape == (9, 3, 16, 16) and final.reward is not None
    calls = []
    with pytest.raises(Cancelled):
        for _ in pipe.stream(**dummy_inputs(num_inference_steps=3),
                             should_stop=lambda: calls.append(1) or len(calls) > 2):
            pass


def test_single_frame_equals_parent():
    comps = tiny_wan_components()
    a = WanPipeline(**comps)(**dummy_inputs(num_frames=1)).frames
    b = GuidedWanPipeline(**comps)(**dummy_inputs(num_frames=1)).frames
    assert a.shape[1] == 1 and torch.equal(a, b)
