"""Guided Video Studio: guided sampling on AnimateDiff (TITAN-Guide, Free²Guide, HARIVO MG and baselines).

`from pipelines import GuidedAnimateDiffPipeline` or `GuidedWanPipeline` (Wan 2.1, flow matching; imported lazily so
that `import pipelines` stays cheap).
"""
from __future__ import annotations

__all__ = ["GuidedAnimateDiffPipeline", "GuidedWanPipeline", "StepEvent", "Cancelled"]


def __getattr__(name):
    if name == "GuidedAnimateDiffPipeline":
        from .pipeline import GuidedAnimateDiffPipeline

        return GuidedAnimateDiffPipeline
    if name == "GuidedWanPipeline":
        from .wan import GuidedWanPipeline

        return GuidedWanPipeline
    if name in ("StepEvent", "Cancelled"):
        from . import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
