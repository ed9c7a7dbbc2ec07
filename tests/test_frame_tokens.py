"""HARIVO frame-wise tokens (`HarivoFrameTokens`, the one frame-token class): the generator's shapes, the micro joint
stage's zero start, dependence on frame and prompt, the pipeline's per-frame encoder states, and the clear error for
the old `FrameTokenGenerator` format."""
import pytest
import torch

from pipelines.frame_tokens import HarivoFrameTokens


def _gen(dim=16, k=3, max_frames=8):
    torch.manual_seed(0)
    return HarivoFrameTokens(dim=dim, num_tokens=k, text_length=5, max_frames=max_frames)


def test_layout_of_the_per_frame_states():
    g = _gen()
    text = torch.randn(2, 5, 16)
    out = g.expand(text, 4)
    assert out.shape == (2 * 4, 5 + 3, 16)
    # text tokens repeated per frame, video-major like diffusers' repeat_interleave
    torch.testing.assert_close(out[:, :5], text.repeat_interleave(4, 0))
    # then that frame's K generated tokens
    torch.testing.assert_close(out[:, 5:], g(text, 4).reshape(2 * 4, 3, 16))
    assert out[:, 5:].abs().max() > 1e-3


def test_zero_start_of_the_micro_joint_stage_generator():
    """The micro joint stage's fresh generator starts at zero tokens (the UNet's conditioning starts unchanged)."""
    from types import SimpleNamespace

    from pipelines.training.micro_stages import Trainer

    t = Trainer.__new__(Trainer)
    t.init_frame_tokens, t.frame_tokens, t.seed, t.device = None, 3, 0, torch.device("cpu")
    g = t._frame_token_generator(SimpleNamespace(config=SimpleNamespace(hidden_size=16)), None)
    assert isinstance(g, HarivoFrameTokens)
    text = torch.randn(2, g.config.text_length, 16)
    assert g(text, 16).abs().max() == 0
    # and it learns: one step moves the last layer, after which the tokens are no longer zero
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    g(text, 8).sum().backward()
    opt.step()
    assert g(text, 8).abs().max() > 0


def test_tokens_depend_on_frame_and_prompt():
    g = _gen()
    text = torch.randn(2, 5, 16)
    tok = g(text, 8)
    assert tok.shape == (2, 8, 3, 16)
    assert (tok[:, 0] - tok[:, 7]).abs().max() > 1e-3  # frames differ
    assert (tok[0] - tok[1]).abs().max() > 1e-3  # prompts differ
    # word order matters: the same tokens in another order give other frame tokens
    swapped = text[:, [0, 2, 1, 3, 4]]
    assert (g(swapped, 8) - tok).abs().max() > 1e-3
    # a clip of F frames uses the first F frames' tokens (the generator makes them for max_frames)
    torch.testing.assert_close(g(text, 3), tok[:, :3])


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
    with pytest.raises(ValueError, match="max_frames"):
        g(torch.randn(1, 5, 16), 9)  # more frames than it makes tokens for


def test_pipeline_rejects_mismatched_generator():
    from pipelines.pipeline import GuidedAnimateDiffPipeline
    from pipelines.testing import tiny_components

    comps = tiny_components()
    dim = comps["text_encoder"].config.hidden_size
    with pytest.raises(ValueError, match="dim"):
        GuidedAnimateDiffPipeline(**comps, frame_tokens=HarivoFrameTokens(dim=dim + 1, text_length=4))
    with pytest.raises(TypeError, match="HarivoFrameTokens"):
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
        GuidedAnimateDiffPipeline(**comps, frame_tokens=HarivoFrameTokens(dim=dim, text_length=length + 1))
    pipe = GuidedAnimateDiffPipeline(**comps, frame_tokens=HarivoFrameTokens(dim=dim, text_length=length))
    e = torch.randn(1, length, dim)
    assert pipe.per_frame_embeds(e, 4).shape == (4, length + 3, dim)


def test_old_format_folder_gets_a_clear_error(tmp_path):
    """A frame-token folder of the old micro format names the class and the conversion script (loader and micro
    weights folder), and the micro preset's own tokens are the paper's class."""
    import json
    import shutil

    from pipelines.frame_tokens import load_frame_tokens
    from pipelines.micro import MICRO_DIR
    from pipelines.micro.loading import check_micro_dir

    old = tmp_path / "frame_tokens"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"_class_name": "FrameTokenGenerator", "dim": 128}))
    with pytest.raises(ValueError, match="FrameTokenGenerator.*HarivoFrameTokens.*convert_micro_frame_tokens.py"):
        load_frame_tokens(old)
    micro = tmp_path / "micro"
    shutil.copytree(MICRO_DIR, micro, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    for sub in ("vae", "unet", "text_encoder"):
        (micro / sub / "model.safetensors").write_bytes(b"")
    shutil.rmtree(micro / "frame_tokens")
    shutil.copytree(old, micro / "frame_tokens")
    with pytest.raises(ValueError, match=f"{micro}.*FrameTokenGenerator.*convert_micro_frame_tokens.py"):
        check_micro_dir(micro)
    assert json.loads((MICRO_DIR / "frame_tokens" / "config.json").read_text())["_class_name"] == "HarivoFrameTokens"
    assert isinstance(load_frame_tokens(MICRO_DIR / "frame_tokens"), HarivoFrameTokens)
