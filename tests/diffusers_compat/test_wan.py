# Copyright 2025 The HuggingFace Team.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# Vendored from huggingface/diffusers, commit 58eb52c0803ea9af3abec60841c2a093bdf1f951, file tests/pipelines/wan/test_wan.py.
# Changes: see tests/diffusers_compat/README.md.


import os

import pytest
import torch
from transformers import T5EncoderModel

from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

from pipelines import GuidedWanPipeline  # CHANGE (vendored)

from ..wan_helpers import build_t5_tokenizer, tiny_t5_config  # CHANGE (vendored)
from .testing_utils import assert_tensors_close, torch_device  # vendored: was ...testing_utils
from .pipeline_testing import (  # vendored: was ..testing_utils
    BasePipelineTesterConfig,
    MemoryTesterMixin,
    PipelineTesterMixin,
)


# CHANGE (vendored): the class under test is GuidedWanPipeline; GVS_DIFFUSERS_COMPAT_PARENT=1 runs the same file on
# diffusers' WanPipeline (for the counts in tests/diffusers_compat/README.md).
PIPELINE_CLASS = WanPipeline if os.environ.get("GVS_DIFFUSERS_COMPAT_PARENT") == "1" else GuidedWanPipeline


def offline_t5_tokenizer():
    """CHANGE (vendored): stands in for AutoTokenizer.from_pretrained("hf-internal-testing/tiny-random-t5"), which needs
    the hub: a word-level tokenizer in T5's shape built in code (tests/wan_helpers.py), checked to be non-empty (the
    test prompt tokenizes to its words plus EOS, ids inside the text encoder's vocabulary)."""
    tok = build_t5_tokenizer()
    ids = tok("dance monkey").input_ids
    assert len(ids) == 3 and ids[-1] == tok.eos_token_id and len(set(ids)) == 3 and max(ids) < 1000, ids
    return tok


class WanPipelineTesterConfig(BasePipelineTesterConfig):
    pipeline_class = PIPELINE_CLASS  # CHANGE (vendored)
    required_input_params_in_call_signature = frozenset(
        ["prompt", "negative_prompt", "height", "width", "guidance_scale", "prompt_embeds", "negative_prompt_embeds"]
    )
    batch_input_params = frozenset(["prompt"])
    output_shape = (9, 3, 16, 16)
    # Wan is a video pipeline: it exposes `num_videos_per_prompt`, not the base default `num_images_per_prompt`.
    optional_input_params = frozenset(
        ["num_inference_steps", "num_videos_per_prompt", "generator", "latents", "output_type", "return_dict"]
    )

    def get_dummy_components(self):
        torch.manual_seed(0)
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )

        torch.manual_seed(0)
        # TODO: impl FlowDPMSolverMultistepScheduler
        scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
        config = tiny_t5_config()  # CHANGE (vendored): was AutoConfig.from_pretrained("hf-internal-testing/tiny-random-t5")
        # `eval()` because a directly constructed model stays in training mode, which leaves T5's
        # dropout active and makes the pipeline outputs non-deterministic across calls.
        text_encoder = T5EncoderModel(config).eval()
        tokenizer = offline_t5_tokenizer()  # CHANGE (vendored): was the hub's hf-internal-testing/tiny-random-t5

        torch.manual_seed(0)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        )

        return {
            "transformer": transformer,
            "vae": vae,
            "scheduler": scheduler,
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "transformer_2": None,
        }

    def get_dummy_inputs(self):
        return {
            "prompt": "dance monkey",
            "negative_prompt": "negative",  # TODO
            "generator": self.get_generator(0),
            "num_inference_steps": 2,
            "guidance_scale": 6.0,
            "height": 16,
            "width": 16,
            "num_frames": 9,
            "max_sequence_length": 16,
            # Request torch outputs so tests compare torch tensors directly (see `BasePipelineTesterConfig`).
            "output_type": "pt",
        }


class TestWanPipeline(WanPipelineTesterConfig, PipelineTesterMixin):
    def test_inference(self):
        # Run on CPU: the expected slice below is CPU-specific.
        pipe = self.get_pipeline()

        inputs = self.get_dummy_inputs()
        video = pipe(**inputs).frames
        generated_video = video[0]
        assert generated_video.shape == self.output_shape

        # CHANGE (vendored): the fixed CPU slice was recorded with the hub's tiny T5 (its weights and tokenizer); with
        # the offline stand-in the reference is WanPipeline's own output on the same components and inputs.
        parent = WanPipeline(**self.get_dummy_components())
        reference = parent(**self.get_dummy_inputs()).frames[0].flatten()
        expected_slice = torch.cat([reference[:8], reference[-8:]])

        generated_slice = generated_video.flatten()
        generated_slice = torch.cat([generated_slice[:8], generated_slice[-8:]])
        assert_tensors_close(generated_slice, expected_slice, atol=1e-3)

    def test_save_load_optional_components(self, tmp_path, expected_max_difference=1e-4):
        # `_optional_components` lists both `transformer` and `transformer_2`, but only `transformer_2` is optional
        # for this wan2.1 t2v pipeline. The base test nulls every optional component, which would drop the required
        # `transformer` and leave no denoiser, so restrict this to `transformer_2`.
        pipe = self.get_pipeline().to(torch_device)
        pipe.transformer_2 = None

        inputs = self.get_dummy_inputs()
        output = pipe(**inputs)[0]

        pipe.save_pretrained(tmp_path, safe_serialization=False)
        pipe_loaded = self.pipeline_class.from_pretrained(tmp_path)
        pipe_loaded.to(torch_device)
        pipe_loaded.set_progress_bar_config(disable=None)

        assert pipe_loaded.transformer_2 is None, "`transformer_2` did not stay set to None after loading."

        inputs = self.get_dummy_inputs()
        output_loaded = pipe_loaded(**inputs)[0]

        assert_tensors_close(
            output_loaded,
            output,
            atol=expected_max_difference,
            msg="Output changed after dropping the optional component.",
        )


    def test_encode_prompt_works_in_isolation(self, monkeypatch):
        # CHANGE (vendored): diffusers' ReturnNameVisitor finds the class under test by name in `diffusers.pipelines`
        # (to read its encode_prompt's source); make GuidedWanPipeline findable there, for this test only.
        import diffusers.pipelines

        monkeypatch.setattr(diffusers.pipelines, self.pipeline_class.__name__, self.pipeline_class, raising=False)
        super().test_encode_prompt_works_in_isolation()


class TestWanPipelineMemory(WanPipelineTesterConfig, MemoryTesterMixin):
    pass
