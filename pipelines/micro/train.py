"""Compatibility entry for the micro models' training, which lives in `pipelines.training.micro_stages` (on the
training package's loop, checkpoints and logs): `python -m pipelines.micro.train ...` takes the same flags as
`python -m pipelines.training micro-models ...` and `python -m pipelines train-micro ...`."""
from __future__ import annotations

from ..training.micro_data import STAGES, WorldLatents, render_clips, render_frames, stage_rng
from ..training.micro_models import (CLIP_MEAN, CLIP_STD, MAX_TOKENS, SIZES, build_clip, build_motion_unet,
                                     build_tokenizer, build_unet2d, build_vae, clip_normalize, make_scheduler)
from ..training.micro_stages import (AUX_CLASSES, AUX_WEIGHTS, DEFAULT_STEPS, Trainer, add_arguments, main,
                                     run_from_args)

__all__ = ["STAGES", "WorldLatents", "render_clips", "render_frames", "stage_rng", "CLIP_MEAN", "CLIP_STD",
           "MAX_TOKENS", "SIZES", "build_clip", "build_motion_unet", "build_tokenizer", "build_unet2d", "build_vae",
           "clip_normalize", "make_scheduler", "AUX_CLASSES", "AUX_WEIGHTS", "DEFAULT_STEPS", "Trainer",
           "add_arguments", "main", "run_from_args"]

if __name__ == "__main__":
    raise SystemExit(main())
