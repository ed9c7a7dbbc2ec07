"""The lean set-up (animatediff-lean preset): fp16 text encoder, fp32 UNet/VAE, VAE slicing; it samples the same
video as the plain pipeline up to the text encoder's fp16 rounding, and TITAN runs through it."""
import torch

from pipelines import GuidedAnimateDiffPipeline
from pipelines.guidance import make_guidance
from pipelines.presets import PRESETS, make_lean
from pipelines.testing import tiny_components
from tests.engine_helpers import TargetReward


def _final(pipe, **kw):
    events = list(pipe.stream("a red circle", num_frames=4, num_inference_steps=3, preview_every=0,
                              generator=torch.Generator().manual_seed(0), **kw))
    return events[-1].frames


def test_lean_pipeline_keeps_fp32_models_and_samples_the_same_video():
    assert "animatediff-lean" in PRESETS
    plain = GuidedAnimateDiffPipeline(**tiny_components())
    lean = make_lean(GuidedAnimateDiffPipeline(**tiny_components()), "cpu")
    assert lean.text_encoder.dtype == torch.float16
    assert lean.unet.dtype == torch.float32 and lean.vae.dtype == torch.float32
    assert lean.vae.use_slicing
    a, b = _final(plain), _final(lean)
    assert torch.isfinite(b).all()
    assert float((a - b).abs().max()) < 0.05  # only the prompt embeddings were rounded to fp16
    target = torch.full((4, 3, 16, 16), 0.5)
    guided = _final(lean, guidance=make_guidance("titan"), reward=TargetReward(target))
    assert torch.isfinite(guided).all() and not torch.equal(guided, b)
