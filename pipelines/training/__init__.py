"""HARIVO's training recipe (seed 002, Sections 3–4): a frozen text-to-image UNet made a video model by trained
temporal layers, a mapping network, frame-wise tokens, and the losses L_simple + λ_TRS L_TRS + λ_reg L_reg +
λ_DC L_DC. Shared by the micro world and real-scale (Stable Diffusion 1.5, WebVid-style data) runs.

    python -m pipelines.training --config micro --steps 500
    accelerate launch --num_processes 2 -m pipelines.training --config tiny
"""
from .config import TrainConfig, load_config
from .losses import HarivoObjective, LossWeights, dc_loss, reg_loss, simple_loss, trs_loss
from .modules import (ContrastiveProjection, HarivoFrameTokens, MappingNetwork, attach_mapping, build_video_unet,
                      bypass_temporal, image_unet_from_video, swap_image_unet, zero_temporal_layers)

__all__ = [
    "TrainConfig", "load_config", "HarivoObjective", "LossWeights", "dc_loss", "reg_loss", "simple_loss", "trs_loss",
    "ContrastiveProjection", "HarivoFrameTokens", "MappingNetwork", "attach_mapping", "build_video_unet",
    "bypass_temporal", "image_unet_from_video", "swap_image_unet", "zero_temporal_layers",
]
