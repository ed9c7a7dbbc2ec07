"""ZeroGPU: `spaces.GPU` with a duration sized per request (steps x frames x size x method, doubled-ish for a
Compare), and a no-op decorator everywhere else."""
from __future__ import annotations

import math

#: Guided steps cost this many unguided steps (backprop through the VAE decoder, candidates, x_T optimisation).
METHOD_COST = {"none": 1.0, "mpgd": 3.0, "freedom": 4.0, "tfg": 5.0, "titan": 4.0, "free2guide": 6.0, "doodl": 12.0}
SECONDS_PER_FRAME_STEP = 0.06  # AnimateDiff at 512², one frame, one unguided step with CFG, on a ZeroGPU slice
OVERHEAD_S = 20.0  # decode, reward of the final video, mp4
MIN_S, MAX_S = 30, 600


def gpu_seconds(kw: dict, compare: bool = False) -> int:
    """Seconds to ask ZeroGPU for one request (`kw`: the handler's named inputs)."""
    def num(name, default):
        try:
            v = float(kw.get(name) if kw.get(name) is not None else default)
            return v if math.isfinite(v) and v > 0 else default
        except (TypeError, ValueError):
            return default

    steps, frames, size = num("steps", 25), num("frames", 16), num("size", 512)
    cost = METHOD_COST.get(str(kw.get("method")), max(METHOD_COST.values()))
    if compare:
        cost += METHOD_COST["none"]
    secs = OVERHEAD_S * (2 if compare else 1) + steps * frames * (size / 512.0) ** 2 * cost * SECONDS_PER_FRAME_STEP
    return int(min(MAX_S, max(MIN_S, math.ceil(secs))))


def gpu_decorator(names: list, compare: bool = False, spaces_module=None):
    """A decorator for a handler taking `names` positionally (the page's widgets, or the API's `request` object of
    named fields and its uploads): `spaces.GPU(duration=...)` sized by
    `gpu_seconds` on ZeroGPU, the function itself elsewhere."""
    if spaces_module is None:
        try:  # Hugging Face ZeroGPU: `spaces.GPU` allocates a GPU per call; a no-op everywhere else
            import spaces as spaces_module  # type: ignore
        except Exception:
            spaces_module = None
    if spaces_module is None:
        return lambda fn: fn

    def duration(*values, **kwargs):
        kw = dict(zip(names, values))
        kw.update({k: v for k, v in kwargs.items() if k in names})
        if isinstance(kw.get("request"), dict):  # the API's named fields (`pipelines.request.fields`)
            kw.update(kw.pop("request"))
        return gpu_seconds(kw, compare)

    def wrap(fn):
        try:
            return spaces_module.GPU(duration=duration)(fn)
        except Exception:  # a spaces version that refuses to run outside a Space
            return fn

    return wrap
