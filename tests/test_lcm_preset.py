"""The `animatediff-lcm` preset's builder (AnimateLCM motion adapter + LoRA + LCMScheduler) from tiny saved components,
offline: the same code path as the public ids, with folders in their place."""
import torch
from diffusers import LCMScheduler

from pipelines import GuidedAnimateDiffPipeline
from pipelines.guidance import make_guidance
from pipelines.presets import ANIMATELCM_ADAPTER, ANIMATELCM_LORA, PRESETS, build_animatediff_lcm
from pipelines.testing import tiny_components
from tests.engine_helpers import TargetReward


def _tiny_lora(pipe, folder):
    """A random LoRA on the UNet's attention projections, saved as diffusers LoRA weights."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
                          adapter_name="make")
    torch.manual_seed(1)
    for name, p in pipe.unet.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)
    layers = get_peft_model_state_dict(pipe.unet, adapter_name="make")
    GuidedAnimateDiffPipeline.save_lora_weights(folder, unet_lora_layers=layers, weight_name="lora.safetensors")
    pipe.unet.delete_adapters("make")


def test_animatediff_lcm_builds_from_tiny_components(tmp_path):
    assert "animatediff-lcm" in PRESETS and ANIMATELCM_ADAPTER == "wangfuyun/AnimateLCM"
    assert ANIMATELCM_LORA[1].endswith(".safetensors")
    comps = tiny_components()
    src = GuidedAnimateDiffPipeline(**comps)
    src.save_pretrained(tmp_path / "base")
    comps["motion_adapter"].save_pretrained(tmp_path / "adapter")
    _tiny_lora(GuidedAnimateDiffPipeline(**tiny_components()), tmp_path / "lora")

    pipe = build_animatediff_lcm(str(tmp_path / "base"), str(tmp_path / "adapter"),
                                 (str(tmp_path / "lora"), "lora.safetensors"), local_files_only=True)
    assert isinstance(pipe, GuidedAnimateDiffPipeline) and isinstance(pipe.scheduler, LCMScheduler)
    assert pipe.scheduler.config.beta_schedule == "linear"
    assert "lcm-lora" in pipe.get_active_adapters()
    kw = dict(prompt="a red circle", num_frames=4, height=16, width=16, num_inference_steps=4, guidance_scale=1.5,
              output_type="pt")
    with_lora = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    pipe.disable_lora()
    without = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    pipe.enable_lora()
    assert (with_lora - without).abs().max().item() > 1e-4  # the LoRA is live
    # guidance on the few-step scheduler
    target = torch.full((4, 3, 16, 16), 0.5)
    base = pipe(**kw, generator=torch.Generator().manual_seed(0), reward=TargetReward(target)).final_reward
    guided = pipe(**kw, generator=torch.Generator().manual_seed(0), reward=TargetReward(target),
                  guidance=make_guidance("mpgd")).final_reward
    assert guided > base
