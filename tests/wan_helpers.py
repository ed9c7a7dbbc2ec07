"""Tiny random Wan components built in code (no hub): the stand-in for diffusers' `hf-internal-testing/tiny-random-t5`
tokenizer and config, and the transformer / VAE / scheduler of diffusers' own Wan pipeline test."""
from __future__ import annotations

import torch

from pipelines.wan_testing import (T5_VOCAB, T5_WORDS, build_t5_tokenizer, tiny_t5_config,  # noqa: F401
                                   tiny_wan_components)


def dummy_inputs(seed: int = 0, **over):
    inputs = {"prompt": "dance monkey", "negative_prompt": "negative",
              "generator": torch.Generator("cpu").manual_seed(seed), "num_inference_steps": 2, "guidance_scale": 6.0,
              "height": 16, "width": 16, "num_frames": 9, "max_sequence_length": 16, "output_type": "pt"}
    inputs.update(over)
    return inputs


def linear_decode_vae():
    """A tiny `AutoencoderKLWan` whose `decode` is a fixed linear map (latent channels → RGB, each latent frame → its
    1 or 4 video frames, 8× in space): a stand-in for the guidance tests, where the random tiny VAE's decode barely
    depends on its input (its RMS norms erase the latents' scale: d brightness / d latent ≈ 1e-5) and a reward could
    not be steered by any method. The real VAE's gradients are checked on their own (tests/test_wan_guidance.py)."""
    from diffusers import AutoencoderKLWan
    from diffusers.models.autoencoders.vae import DecoderOutput

    class LinearDecodeWanVAE(AutoencoderKLWan):
        def decode(self, z, return_dict=True):
            w = self.rgb.to(z.dtype)
            x = torch.einsum("bcfhw,rc->brfhw", z, w)
            x = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)
            x = x.repeat_interleave(8, dim=-1).repeat_interleave(8, dim=-2)
            return DecoderOutput(sample=x) if return_dict else (x,)

    torch.manual_seed(0)
    vae = LinearDecodeWanVAE(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True])
    vae.register_buffer("rgb", torch.randn(3, 16, generator=torch.Generator().manual_seed(1)) * 0.1)
    return vae
