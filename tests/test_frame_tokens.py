"""HARIVO frame-wise tokens: the generator's shapes, zero start, dependence on frame and prompt, and the pipeline's
per-frame encoder states."""
import pytest
import torch

from pipelines.frame_tokens import FrameTokenGenerator


def _gen(dim=16, k=3):
    torch.manual_seed(0)
    g = FrameTokenGenerator(dim=dim, num_tokens=k, hidden=32, text_length=5, token_features=4)
    return g


def test_zero_initialised_tokens_and_layout():
    g = _gen()
    text = torch.randn(2, 5, 16)
    out = g.expand(text, 4)
    assert out.shape == (2 * 4, 5 + 3, 16)
    # text tokens repeated per frame, video-major like diffusers' repeat_interleave
    torch.testing.assert_close(out[:, :5], text.repeat_interleave(4, 0))
    assert out[:, 5:].abs().max() == 0  # the last layer starts at zero


def test_tokens_depend_on_frame_and_prompt():
    g = _gen()
    torch.nn.init.normal_(g.net[-1].weight, std=0.1)
    text = torch.randn(2, 5, 16)
    tok = g(text, 8)
    assert tok.shape == (2, 8, 3, 16)
    assert (tok[:, 0] - tok[:, 7]).abs().max() > 1e-3  # frames differ
    assert (tok[0] - tok[1]).abs().max() > 1e-3  # prompts differ
    # word order matters: the same tokens in another order give other frame tokens
    swapped = text[:, [0, 2, 1, 3, 4]]
    assert (g(swapped, 8) - tok).abs().max() > 1e-3
    # standardisation per position and feature, from a sample of prompts
    g.set_text_statistics(torch.randn(10, 5, 16) * 3 + 1)
    assert g.text_scale.shape == (5, 16) and (g.text_scale > 1).all() and (g.text_mean != 0).any()


def test_bad_inputs():
    g = _gen()
    with pytest.raises(ValueError, match="text tokens"):
        g(torch.randn(5, 16), 4)
    with pytest.raises(ValueError, match="text tokens"):
        g(torch.randn(1, 5, 8), 4)
    with pytest.raises(ValueError, match="text tokens"):
        g(torch.randn(1, 6, 16), 4)  # another prompt length than it was built for
    with pytest.raises(ValueError, match="num_frames"):
        g(torch.randn(1, 5, 16), 0)


def test_pipeline_rejects_mismatched_generator():
    from pipelines.pipeline import GuidedAnimateDiffPipeline
    from pipelines.testing import tiny_components

    comps = tiny_components()
    dim = comps["text_encoder"].config.hidden_size
    with pytest.raises(ValueError, match="dim"):
        GuidedAnimateDiffPipeline(**comps, frame_tokens=FrameTokenGenerator(dim=dim + 1, text_length=4))
    with pytest.raises(TypeError, match="FrameTokenGenerator"):
        GuidedAnimateDiffPipeline(**comps, frame_tokens=torch.nn.Linear(2, 2))


def test_pipeline_without_generator_is_unchanged():
    """No frame_tokens: per-frame embeddings are the prompt embeddings repeated per frame (diffusers' layout)."""
    from pipelines.pipeline import GuidedAnimateDiffPipeline
    from pipelines.testing import tiny_components

    pipe = GuidedAnimateDiffPipeline(**tiny_components())
    assert pipe.frame_tokens is None
    e = torch.randn(2, 7, pipe.text_encoder.config.hidden_size)
    torch.testing.assert_close(pipe.per_frame_embeds(e, 3), e.repeat_interleave(3, 0))


def test_pipeline_rejects_generator_for_other_prompt_length():
    from pipelines.pipeline import GuidedAnimateDiffPipeline
    from pipelines.testing import tiny_components

    comps = tiny_components()
    dim = comps["text_encoder"].config.hidden_size
    length = comps["tokenizer"].model_max_length
    with pytest.raises(ValueError, match="tokens"):
        GuidedAnimateDiffPipeline(**comps, frame_tokens=FrameTokenGenerator(dim=dim, text_length=length + 1))
    pipe = GuidedAnimateDiffPipeline(**comps, frame_tokens=FrameTokenGenerator(dim=dim, text_length=length))
    e = torch.randn(1, length, dim)
    assert pipe.per_frame_embeds(e, 4).shape == (4, length + 3, dim)
