"""The micro models' sizes and builders (micro CLIP, VAE, image UNet, motion UNet, DDIM scheduler, tokenizer), for
the micro-model stages (`micro_stages`)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..micro.world import VOCABULARY

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Model sizes. "default" is what ships in assets/micro; "tiny" is for tests.
SIZES = {
    "default": dict(
        clip_hidden=128, clip_layers=3, clip_heads=4, clip_proj=64,
        vae_channels=(16, 32, 64), vae_groups=8,
        unet_channels=(48, 96), unet_layers=1, unet_heads=4, unet_groups=16,
        motion_heads=4,
        batch_clip=64, batch_vae=32, batch_unet=32, batch_motion=4,
        lr_clip=5e-4, lr_vae=1e-3, lr_unet=5e-4, lr_motion=5e-4, lr_joint=2e-4,
    ),
    "tiny": dict(
        clip_hidden=32, clip_layers=3, clip_heads=2, clip_proj=16,
        vae_channels=(8, 16, 16), vae_groups=4,
        unet_channels=(16, 32), unet_layers=1, unet_heads=2, unet_groups=4,
        motion_heads=2,
        batch_clip=16, batch_vae=8, batch_unet=8, batch_motion=2,
        lr_clip=2e-3, lr_vae=2e-3, lr_unet=1e-3, lr_motion=1e-3, lr_joint=1e-3,
    ),
}
MAX_TOKENS = 24


def clip_normalize(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------------------------- model builders
def build_tokenizer(folder: Path, vocabulary=None):
    """The micro CLIP tokenizer: every word of `vocabulary` (default world 1's `VOCABULARY`, what assets/micro was
    built with) one token."""
    from ..tokenizer import build_clip_tokenizer

    if vocabulary is None or list(vocabulary) == list(VOCABULARY):  # world 1: exactly as assets/micro was built
        return build_clip_tokenizer(VOCABULARY, folder, model_max_length=MAX_TOKENS)
    # Another vocabulary (world 2): a word's chain of merges can be cut by an earlier-ranked merge of another word
    # ('an' before 'cyan'); words that do not come out whole move to the front (their merges rank first) until all do.
    words = list(dict.fromkeys(vocabulary))
    for _ in range(len(words)):
        tok = build_clip_tokenizer(words, folder, model_max_length=MAX_TOKENS)
        split = [w for w in words if len(tok.tokenize(w)) != 1]
        if not split:
            return tok
        words = split + [w for w in words if w not in split]
    raise ValueError(f"could not build a tokenizer with every word one token (still split: {split})")


def build_clip(cfg: dict, tok):
    from transformers import CLIPConfig, CLIPModel

    h = cfg["clip_hidden"]
    text = dict(
        vocab_size=len(tok), hidden_size=h, intermediate_size=2 * h, num_hidden_layers=cfg["clip_layers"],
        num_attention_heads=cfg["clip_heads"], max_position_embeddings=MAX_TOKENS,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        projection_dim=cfg["clip_proj"],
    )
    vision = dict(
        hidden_size=h, intermediate_size=2 * h, num_hidden_layers=cfg["clip_layers"],
        num_attention_heads=cfg["clip_heads"], image_size=32, patch_size=4, projection_dim=cfg["clip_proj"],
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg["clip_proj"])
    torch.manual_seed(0)
    return CLIPModel(config)


def build_vae(cfg: dict):
    from diffusers import AutoencoderKL

    ch = tuple(cfg["vae_channels"])
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=ch, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * len(ch), up_block_types=("UpDecoderBlock2D",) * len(ch),
        norm_num_groups=cfg["vae_groups"], sample_size=32,
    )


def build_unet2d(cfg: dict, cross_dim: int):
    from diffusers import UNet2DConditionModel

    ch = tuple(cfg["unet_channels"])
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=ch, layers_per_block=cfg["unet_layers"],
        down_block_types=("CrossAttnDownBlock2D",) * len(ch), up_block_types=("CrossAttnUpBlock2D",) * len(ch),
        cross_attention_dim=cross_dim, attention_head_dim=cfg["unet_heads"], norm_num_groups=cfg["unet_groups"],
    )


def build_motion_unet(cfg: dict, unet2d):
    from diffusers import MotionAdapter, UNetMotionModel

    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=tuple(cfg["unet_channels"]), motion_layers_per_block=cfg["unet_layers"],
        motion_norm_num_groups=cfg["unet_groups"], motion_num_attention_heads=cfg["motion_heads"],
        motion_max_seq_length=32, use_motion_mid_block=True,
    )
    return UNetMotionModel.from_unet2d(unet2d, adapter)


def make_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )


__all__ = ["CLIP_MEAN", "CLIP_STD", "SIZES", "MAX_TOKENS", "clip_normalize", "build_tokenizer", "build_clip", "build_vae",
           "build_unet2d", "build_motion_unet", "make_scheduler"]
