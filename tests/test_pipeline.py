"""Contract 1: GuidedAnimateDiffPipeline equals AnimateDiffPipeline without guidance, and streams per-step events."""
import pytest
import torch
from diffusers import AnimateDiffPipeline

from pipelines import GuidedAnimateDiffPipeline
from pipelines.guidance import make_guidance
from pipelines.sampler import Cancelled
from pipelines.testing import tiny_components
from tests.engine_helpers import TargetReward, tiny_pipe


@pytest.fixture(scope="module")
def pipes():
    comps = tiny_components()
    ref = AnimateDiffPipeline(**comps)
    ours = GuidedAnimateDiffPipeline(**comps)
    for p in (ref, ours):
        p.set_progress_bar_config(disable=True)
    return ref, ours


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("negative", [None, "blue square"])
def test_no_guidance_equals_animatediff(pipes, eta, negative):
    ref, ours = pipes
    kw = dict(prompt="a red circle moving left", num_frames=8, height=16, width=16, num_inference_steps=6,
              output_type="pt", eta=eta, negative_prompt=negative, guidance_scale=7.5)
    a = ref(generator=torch.Generator().manual_seed(3), **kw).frames
    b = ours(generator=torch.Generator().manual_seed(3), **kw).frames
    assert a.shape == b.shape == (1, 8, 3, 16, 16)
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_no_guidance_equals_animatediff_every_timestep_spacing(spacing, eta):
    """Contract 1 holds for each DDIM timestep spacing (the animatediff preset uses "linspace", where the step
    target t − T//N is not the next listed timestep)."""
    from diffusers import DDIMScheduler

    comps = tiny_components()
    comps["scheduler"] = DDIMScheduler.from_config(comps["scheduler"].config, timestep_spacing=spacing)
    ref, ours = AnimateDiffPipeline(**comps), GuidedAnimateDiffPipeline(**comps)
    kw = dict(prompt="a red circle moving left", num_frames=4, height=16, width=16, num_inference_steps=7,
              output_type="pt", eta=eta, guidance_scale=7.5)
    a = ref(generator=torch.Generator().manual_seed(5), **kw).frames
    b = ours(generator=torch.Generator().manual_seed(5), **kw).frames
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_prev_t_and_ddim_follow_the_schedulers_step(spacing):
    """At 25 steps (HARIVO's count) every DDIM update equals DDIMScheduler.step's, timestep by timestep."""
    from diffusers import DDIMScheduler

    from tests.engine_helpers import make_denoiser

    pipe = tiny_pipe()
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing=spacing)
    ctx = make_denoiser(pipe, num_frames=2, steps=25)
    ts = [int(t) for t in pipe.scheduler.timesteps]
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(1, 4, 2, 8, 8, generator=g), torch.randn(1, 4, 2, 8, 8, generator=g)
    for t in ts:
        ref = pipe.scheduler.step(eps, t, x, eta=0.0).prev_sample
        ours = ctx.ddim(ctx.x0(x, eps, t), eps, t, eta=0.0)
        assert (ref - ours).abs().max().item() <= 1e-5, t
    if spacing == "linspace":  # 999 steps to 999 − 1000//25 = 959, not to the next listed timestep 957
        assert ts[:2] == [999, 957] and ctx.prev_t(999) == 959


def test_no_guidance_equals_animatediff_without_cfg_and_pil_output(pipes):
    ref, ours = pipes
    kw = dict(prompt="a blue square", num_frames=4, height=16, width=16, num_inference_steps=3, guidance_scale=1.0)
    a = ref(generator=torch.Generator().manual_seed(1), output_type="np", **kw).frames
    b = ours(generator=torch.Generator().manual_seed(1), output_type="np", **kw).frames
    assert abs(a - b).max() <= 1e-5
    pil = ours(generator=torch.Generator().manual_seed(1), **kw).frames
    assert len(pil[0]) == 4 and pil[0][0].size == (16, 16)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_no_guidance_equals_animatediff_other_prediction_types(prediction_type):
    """A v- or x0-predicting UNet (the micro preset's is v) samples as diffusers' DDIM does."""
    from diffusers import DDIMScheduler

    comps = tiny_components()
    comps["scheduler"] = DDIMScheduler.from_config(comps["scheduler"].config, prediction_type=prediction_type)
    ref, ours = AnimateDiffPipeline(**comps), GuidedAnimateDiffPipeline(**comps)
    kw = dict(prompt="a red circle moving left", num_frames=4, height=16, width=16, num_inference_steps=4,
              output_type="pt", guidance_scale=7.5)
    a = ref(generator=torch.Generator().manual_seed(2), **kw).frames
    b = ours(generator=torch.Generator().manual_seed(2), **kw).frames
    eps = GuidedAnimateDiffPipeline(**tiny_components())(generator=torch.Generator().manual_seed(2), **kw).frames
    assert (a - b).abs().max().item() <= 1e-5
    assert (a - eps).abs().max().item() > 1e-3  # the prediction type does change the result


def test_frame_tokens_change_the_video_and_survive_save_load(pipes, tmp_path):
    """An optional HarivoFrameTokens (HARIVO frame-wise tokens) is saved with the pipeline, loaded back, and used."""
    from pipelines.frame_tokens import HarivoFrameTokens

    _, ours = pipes
    comps = dict(ours.components)
    dim = comps["text_encoder"].config.hidden_size
    torch.manual_seed(0)
    gen = HarivoFrameTokens(dim=dim, text_length=comps["tokenizer"].model_max_length, max_frames=8)
    comps["frame_tokens"] = gen
    with_tokens = GuidedAnimateDiffPipeline(**comps)
    with_tokens.set_progress_bar_config(disable=True)
    kw = dict(prompt="a red circle", num_frames=4, height=16, width=16, num_inference_steps=3, output_type="pt")
    a = ours(generator=torch.Generator().manual_seed(0), **kw).frames
    b = with_tokens(generator=torch.Generator().manual_seed(0), **kw).frames
    assert (a - b).abs().max().item() > 1e-4
    with_tokens.save_pretrained(tmp_path)
    loaded = GuidedAnimateDiffPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.frame_tokens, HarivoFrameTokens)
    loaded.set_progress_bar_config(disable=True)
    c = loaded(generator=torch.Generator().manual_seed(0), **kw).frames
    assert (b - c).abs().max().item() <= 1e-5


def test_from_pretrained_roundtrip(pipes, tmp_path):
    _, ours = pipes
    ours.save_pretrained(tmp_path)
    loaded = GuidedAnimateDiffPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded, GuidedAnimateDiffPipeline)
    loaded.set_progress_bar_config(disable=True)
    kw = dict(prompt="a red circle", num_frames=4, height=16, width=16, num_inference_steps=3, output_type="pt")
    a = ours(generator=torch.Generator().manual_seed(0), **kw).frames
    b = loaded(generator=torch.Generator().manual_seed(0), **kw).frames
    assert (a - b).abs().max().item() <= 1e-5


def test_stream_yields_one_event_per_step_then_final():
    pipe = tiny_pipe()
    target = torch.full((8, 3, 16, 16), 0.5)
    events = list(pipe.stream("a red circle", num_frames=8, height=16, width=16, num_inference_steps=5,
                              generator=torch.Generator().manual_seed(0), reward=TargetReward(target)))
    steps, final = events[:-1], events[-1]
    assert [e.index for e in steps] == list(range(5))
    assert all(e.total == 5 for e in events)
    assert [e.timestep for e in steps] == [int(t) for t in pipe.scheduler.timesteps]
    for e in steps:
        assert e.preview.shape == (8, 3, 16, 16)
        assert 0.0 <= e.preview.min() and e.preview.max() <= 1.0
        assert isinstance(e.reward, float) and e.peak_memory_bytes > 0
    assert [e.seconds for e in events] == sorted(e.seconds for e in events)
    assert final.final and final.frames.shape == (8, 3, 16, 16)
    expected = float(TargetReward(target)(final.frames).mean())
    assert final.reward == pytest.approx(expected, rel=1e-5)


def test_stream_cancel_stops_within_one_step():
    pipe = tiny_pipe()
    seen = []
    gen = pipe.stream("a red circle", num_frames=4, height=16, width=16, num_inference_steps=10,
                      generator=torch.Generator().manual_seed(0), should_stop=lambda: len(seen) >= 3)
    with pytest.raises(Cancelled):
        for ev in gen:
            seen.append(ev)
    assert len(seen) == 3


def test_guided_call_returns_frames_and_reward():
    pipe = tiny_pipe()
    target = torch.zeros(4, 3, 16, 16)
    out = pipe("a red circle", num_frames=4, height=16, width=16, num_inference_steps=4, output_type="pt",
               generator=torch.Generator().manual_seed(0), guidance=make_guidance("mpgd"), reward=TargetReward(target))
    assert out.frames.shape == (1, 4, 3, 16, 16)
    assert out.final_reward == pytest.approx(float(TargetReward(target)(out.frames[0]).mean()), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(guidance=make_guidance("titan")), "needs a reward"),
        (dict(num_frames=0), "num_frames"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(mg_scale=-1.0), "mg_scale"),
        (dict(cfg_schedule="cosine"), "cfg_schedule"),
        (dict(height=15), "divisible"),
        (dict(guidance="titan"), "Guidance"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    pipe = tiny_pipe()
    base = dict(num_frames=4, height=16, width=16, num_inference_steps=2)
    base.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        list(pipe.stream("a red circle", **base))


def test_gradient_method_refuses_black_box_reward():
    pipe = tiny_pipe()

    class BlackBox(TargetReward):
        differentiable = False

    with pytest.raises(ValueError, match="differentiable"):
        list(pipe.stream("a red circle", num_frames=4, height=16, width=16, num_inference_steps=2,
                         guidance=make_guidance("freedom"), reward=BlackBox(torch.zeros(4, 3, 16, 16))))


def test_call_has_the_parents_full_signature_plus_guidance():
    """Every argument of AnimateDiffPipeline.__call__ (bar its deprecated **kwargs), in order, with its default
    (eta: None = 0 unguided, 1 guided); the guidance arguments after them, keyword-only; no *args/**kwargs."""
    import inspect

    parent = inspect.signature(AnimateDiffPipeline.__call__).parameters
    ours = inspect.signature(GuidedAnimateDiffPipeline.__call__).parameters
    names = [n for n, p in parent.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert list(ours)[: len(names)] == names
    for n in names:
        if n != "eta":
            assert ours[n].default == parent[n].default, n
    assert ours["eta"].default is None
    extra = list(ours)[len(names):]
    assert {"guidance", "reward", "mg_scale", "hooks"} <= set(extra)
    assert all(ours[n].kind is inspect.Parameter.KEYWORD_ONLY for n in extra)
    assert not any(p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) for p in ours.values())
