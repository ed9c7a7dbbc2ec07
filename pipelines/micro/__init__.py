"""The micro world (rendered clips with exact ground truth; world 1 and world 2, `get_world`), its detector, look
reader (`read_look`: any image to its nearest world-2 background look) and judge; the micro models are trained by
`pipelines.training.micro_stages` (`python -m pipelines train-micro`).

`MICRO_DIR` is where the trained weights live (diffusers layout, loadable by `AnimateDiffPipeline.from_pretrained`).
"""
from __future__ import annotations

from pathlib import Path

MICRO_DIR = Path(__file__).resolve().parents[2] / "assets" / "micro"

from .world import (  # noqa: E402
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
from .detector import detect  # noqa: E402
from .looks import ALL_LOOKS, Look, LookReading, read_look  # noqa: E402
from .loading import check_micro_dir, load_micro_clip  # noqa: E402

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
