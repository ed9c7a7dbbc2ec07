"""HARIVO frame-wise tokens: the paper's generator's layout, dependence on frame, prompt and word order, clear errors,
the retired micro generator refused by name, and the pipeline's per-frame encoder states."""
import json

import pytest
import torch

from pipelines.frame_tokens import HarivoFrameTokens, load_frame_tokens


def _gen(dim=16, k=3, length=5, max_frames=8):
    torch.manual_seed(0)
    return HarivoFrameTokens(dim=dim, text_length=length, num_tokens=k, max_frames=max_frames)


def test_expand_layout():
    g = _gen()
    text = torch.randn(2, 5, 16)
    out = g.expand(text, 4)
    assert out.shape == (2 * 4, 5 + 3, 16)
    # text tokens repeated per frame, video-major like diffusers' repeat_interleave, then that frame's tokens
    torch.testing.assert_close(out[:, :5], text.repeat_interleave(4, 0))
    torch.testing.assert_close(out[:, 5:], g(text, 4).flatten(0, 1))


def test_tokens_depend_on_frame_prompt_and_word_order():
    g = _gen()
    text = torch.randn(2, 5, 16)
    tok = g(text, 8)
    assert tok.shape == (2, 8, 3, 16)
    assert (tok[:, 0] - tok[:, 7]).abs().max() > 1e-3  # frames differ
    assert (tok[0] - tok[1]).abs().max() > 1e-3  # prompts differ
    # word order matters ("left to right" and "right to left" have the same words): the convolution runs over positions
    swapped = text[:, [0, 2, 1, 3, 4]]
    assert (g(swapped, 8) - tok).abs().max() > 1e-3
    # fewer frames: the first F frames' tokens of the same generator
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
        g(torch.randn(1, 5, 16), 9)


def test_load_frame_tokens_roundtrip_and_refusals(tmp_path):
    g = _gen()
    g.save_pretrained(tmp_path / "ok")
    back = load_frame_tokens(tmp_path / "ok")
    text = torch.randn(1, 5, 16)
    torch.testing.assert_close(back(text, 4), g(text, 4))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_frame_tokens(tmp_path / "missing")
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"_class_name": "FrameTokenGenerator", "dim": 16}))
    with pytest.raises(ValueError, match="FrameTokenGenerator is retired.*convert_micro_frame_tokens"):
        load_frame_tokens(old)
    (old / "config.json").write_text(json.dumps({"_class_name": "Nope"}))
    with pytest.raises(ValueError, match="unknown frame-token generator 'Nope'"):
        load_frame_tokens(old)


def test_micro_folder_with_the_retired_generator_is_refused(tmp_path):
    import shutil

    from pipelines.micro import MICRO_DIR, check_micro_dir

    folder = tmp_path / "micro"
    shutil.copytree(MICRO_DIR, folder, ignore=shutil.ignore_patterns("clip"))
    index = json.loads((folder / "model_index.json").read_text())
    assert index["frame_tokens"] == ["pipelines.frame_tokens", "HarivoFrameTokens"]  # what ships
    index["frame_tokens"] = ["pipelines.frame_tokens", "FrameTokenGenerator"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"{folder}.*FrameTokenGenerator is retired"):
        check_micro_dir(folder)


def test_pipeline_rejects_mismatched_generator():
    from pipelines.pipeline import GuidedAnimateDiffPipeline
    from pipelines.testing import tiny_components

    comps = tiny_components()
    dim = comps["text_encoder"].config.hidden_size
    length = comps["tokenizer"].model_max_length
    with pytest.raises(ValueError, match="dim"):
        GuidedAnimateDiffPipeline(**comps, frame_tokens=HarivoFrameTokens(dim=dim + 1, text_length=length))
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
