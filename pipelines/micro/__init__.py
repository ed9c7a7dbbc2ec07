"""The micro world (rendered clips with exact ground truth; world 1 and world 2, `get_world`), its detector, look
reader (`read_look`: any image to its nearest world-2 background look) and judge; the micro models are trained by
`pipelines.training.micro_stages` (`python -m pipelines train-micro`).

`MICRO_DIR` is where the trained weights live (diffusers layout, loadable by `AnimateDiffPipeline.from_pretrained`).
"""
from __future__ import annotations

from .world import (
    BACKGROUNDS,
    COLOURS,
    FPS,
    HELD_OUT,
    MOTIONS,
    SHAPES,
    VOCABULARY,
    VOCABULARY2,
    WORLD1,
    WORLD2,
    World,
    caption,
    caption2,
    get_world,
    impact_audio,
    is_held_out,
    parse_caption,
    parse_caption2,
    render_clip,
    sample_attributes,
    synth_impacts_audio,
)
from .detector import detect
from .looks import ALL_LOOKS, Look, LookReading, read_look
from .loading import MICRO_DIR, check_micro_dir, load_micro_clip

__all__ = [
    "MICRO_DIR",
    "BACKGROUNDS",
    "COLOURS",
    "FPS",
    "HELD_OUT",
    "MOTIONS",
    "SHAPES",
    "VOCABULARY",
    "VOCABULARY2",
    "WORLD1",
    "WORLD2",
    "World",
    "caption",
    "caption2",
    "get_world",
    "ALL_LOOKS",
    "Look",
    "LookReading",
    "read_look",
    "impact_audio",
    "is_held_out",
    "parse_caption",
    "parse_caption2",
    "render_clip",
    "sample_attributes",
    "synth_impacts_audio",
    "detect",
    "check_micro_dir",
    "load_micro_clip",
]
