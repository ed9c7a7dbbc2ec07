"""Tiny random CLIP / reward components for tests (nothing downloads; fixed seeds)."""
from __future__ import annotations

import tempfile

import torch

TINY_CLIP_WORDS = "a photo of red green blue circle square cat dog moving left right on black gray background".split()

_TOKENIZERS: dict = {}


def tiny_clip_pair(seed: int = 0, image_size: int = 32, patch_size: int = 8, hidden: int = 32, layers: int = 3,
                   projection_dim: int = 16):
    """A tiny random `(CLIPModel, CLIPTokenizer)` built in code."""
    from transformers import CLIPConfig, CLIPModel

    from pipelines.tokenizer import build_clip_tokenizer

    if "tok" not in _TOKENIZERS:
        _TOKENIZERS["tok"] = build_clip_tokenizer(TINY_CLIP_WORDS, tempfile.mkdtemp(prefix="gvs-cliptok-"), model_max_length=16)
    tok = _TOKENIZERS["tok"]
    torch.manual_seed(seed)
    text = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=4, num_hidden_layers=2,
                vocab_size=len(tok), max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=4, num_hidden_layers=layers,
                  image_size=image_size, patch_size=patch_size)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    return CLIPModel(cfg).eval(), tok


def tiny_clip(seed: int = 0, **kw):
    """A tiny random `rewards.clip.ClipModel`."""
    from .clip import load_clip

    return load_clip(tiny_clip_pair(seed, **kw))
