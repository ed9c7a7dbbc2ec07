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


#: CLIP ViT-B/16's shapes (the `animatediff` preset's reward CLIP): 224² input, 16² patches, 12 + 12 layers.
CLIP_B16_SHAPES = dict(image_size=224, patch_size=16, hidden=768, layers=12, text_hidden=512, text_layers=12,
                       projection_dim=512, heads=12, text_heads=8, max_positions=77)
#: The same input geometry (224², 16² patches, 77 tokens) at a small width and depth: fast CPU smoke tests of the
#: real path's preprocessing and shapes.
CLIP_B16_SMALL = dict(image_size=224, patch_size=16, hidden=32, layers=2, text_hidden=32, text_layers=2,
                      projection_dim=16, heads=4, text_heads=4, max_positions=77)


def random_clip(shapes: dict = CLIP_B16_SHAPES, seed: int = 0):
    """A randomly initialised `ClipModel` of the given shapes, built in code (no download), with a generated
    tokenizer; `CLIP_B16_SHAPES` gives ViT-B/16's parameter count and activations."""
    from transformers import CLIPConfig, CLIPModel

    from pipelines.tokenizer import build_clip_tokenizer

    from .clip import load_clip

    s = dict(shapes)
    tok = build_clip_tokenizer(TINY_CLIP_WORDS, tempfile.mkdtemp(prefix="gvs-cliptok-"),
                               model_max_length=s["max_positions"])
    torch.manual_seed(seed)
    text = dict(hidden_size=s["text_hidden"], intermediate_size=4 * s["text_hidden"],
                num_attention_heads=s["text_heads"], num_hidden_layers=s["text_layers"], vocab_size=49408,
                max_position_embeddings=s["max_positions"], bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=s["hidden"], intermediate_size=4 * s["hidden"], num_attention_heads=s["heads"],
                  num_hidden_layers=s["layers"], image_size=s["image_size"], patch_size=s["patch_size"])
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=s["projection_dim"]))
    clip = load_clip((model.eval(), tok))
    clip.name = f"random CLIP {s['image_size']}/{s['patch_size']} w{s['hidden']}x{s['layers']}"
    return clip


#: ImageBind's input geometry (224² frames in 2×14² tubelets, 128 mel bins × 204 frames) at a small width.
IMAGEBIND_SMALL = dict(out_embed_dim=16, vision_embed_dim=32, vision_num_blocks=2, vision_num_heads=2,
                       image_size=224, kernel_size=(2, 14, 14), audio_embed_dim=32, audio_num_blocks=2,
                       audio_num_heads=2, audio_num_mel_bins=128, audio_target_len=204, audio_kernel_size=16,
                       audio_stride=10)


def random_imagebind(config: dict | None = None, seed: int = 0):
    """A randomly initialised ImageBind (huge config unless `config`), eval mode, frozen, built in code."""
    from .imagebind import HUGE_CONFIG, ImageBindModel

    torch.manual_seed(seed)
    return ImageBindModel(**(config or HUGE_CONFIG)).eval().requires_grad_(False)
