"""Running: a validated request sampled step by step through the preset's pipeline, with cancel and memory release."""
from __future__ import annotations

import gc
import math
import time
from typing import Callable, Iterator, Optional

from .validation import Prepared, validate


class Generation:
    """Iterate to sample: yields every `StepEvent` of `preset.pipe.stream` and records the trace for the report.

    `should_stop()` is checked once per step; when it returns True the stream raises
    `pipelines.sampler.Cancelled`, memory is released, and the exception propagates.
    """

    def __init__(self, prepared: Prepared, preset, should_stop: Optional[Callable[[], bool]] = None,
                 preview_every: int = 1):
        self.prepared = prepared
        self.preview_every = preview_every  # 0: no per-step previews nor per-step rewards (batch evaluation)
        self.preset = preset
        self.should_stop = should_stop
        self.reward_per_step: list[Optional[float]] = []
        self.rewards_per_step: list[dict] = []
        self.phases: list[str] = []
        self.final_event = None
        self.peak_memory_bytes = 0
        self.seconds = 0.0
        self.started = None

    def mg_alpha(self) -> float:
        """The raw MG α the sampler uses (`mg_normalized`: converted from HARIVO's setting to this latent size)."""
        p, r = self.prepared, self.prepared.request
        if not (r.mg_normalized and r.mg_scale):
            return float(r.mg_scale)
        from ..guidance.temporal import normalized_mg_scale

        pipe = self.preset.pipe
        if getattr(pipe, "unet", None) is None:  # Wan: 1 + (frames − 1)/4 latent frames, 8× smaller in space
            h, w = p.height or p.size, p.width or p.size
            st, ss = pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial
            return normalized_mg_scale(float(r.mg_scale), (p.frames - 1) // st + 1, (h // ss, w // ss),
                                       int(pipe.transformer.config.in_channels))
        return normalized_mg_scale(float(r.mg_scale), p.frames, p.size // pipe.vae_scale_factor,
                                   int(pipe.unet.config.in_channels))

    def __iter__(self) -> Iterator:
        import torch

        from ..sampler import Cancelled

        p, r = self.prepared, self.prepared.request
        self.started = time.perf_counter()
        gen = torch.Generator(device="cpu").manual_seed(int(p.seed))
        stream = self.preset.pipe.stream(
            r.prompt, negative_prompt=r.negative_prompt or None, num_frames=p.frames, height=p.height or p.size,
            width=p.width or p.size,
            num_inference_steps=p.steps, guidance_scale=p.cfg, generator=gen, guidance=p.guidance, eta=p.eta,
            reward=p.setup.reward, mg_scale=self.mg_alpha(), cfg_schedule="harivo" if r.cfg_schedule else None,
            hooks=p.setup.hooks, should_stop=self.should_stop, preview_every=self.preview_every,
        )
        try:
            for ev in stream:
                self.peak_memory_bytes = max(self.peak_memory_bytes, int(getattr(ev, "peak_memory_bytes", 0) or 0))
                if getattr(ev, "final", False):
                    self.final_event = ev
                else:
                    self.reward_per_step.append(None if ev.reward is None else float(ev.reward))
                    self.rewards_per_step.append({k: float(v) for k, v in (ev.rewards or {}).items()
                                                  if _is_number(v)})
                    self.phases.append(getattr(ev, "phase", "sample"))
                self.seconds = time.perf_counter() - self.started
                yield ev
        except (Cancelled, GeneratorExit):
            stream.close()
            release_memory()
            raise
        finally:
            self.seconds = time.perf_counter() - self.started

    def final_reward(self) -> Optional[float]:
        """The task's reward of the final video (mean over frames), as computed by the stream's final event."""
        ev = self.final_event
        return None if ev is None or ev.reward is None else float(ev.reward)


def _is_number(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


def run(request_or_prepared, preset, should_stop: Optional[Callable[[], bool]] = None) -> Generation:
    prepared = request_or_prepared if isinstance(request_or_prepared, Prepared) else validate(request_or_prepared,
                                                                                              preset)
    return Generation(prepared, preset, should_stop)
