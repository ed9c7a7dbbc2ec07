"""Free²Guide's lookahead runs at the timestep the next step evaluates, so its ε̂ is reused under every spacing."""
from __future__ import annotations

import pytest
import torch

from tests.engine_helpers import TargetReward


def _count_unet_calls(spacing: str, steps: int, reuse: bool) -> tuple[int, list]:
    from diffusers import DDIMScheduler

    from pipelines import GuidedAnimateDiffPipeline
    from pipelines.guidance import make_guidance
    from pipelines.testing import tiny_components

    comps = tiny_components()
    comps["scheduler"] = DDIMScheduler.from_config(comps["scheduler"].config, timestep_spacing=spacing)
    pipe = GuidedAnimateDiffPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    calls = []
    forward = pipe.unet.forward

    def counting(sample, timestep, *a, **kw):
        calls.append(int(torch.as_tensor(timestep).reshape(-1)[0]))
        return forward(sample, timestep, *a, **kw)

    pipe.unet.forward = counting
    guidance = make_guidance("free2guide", num_candidates=3, candidate_batch=8, guided_fraction=1.0, key_frames=2,
                             reuse_eps=reuse)
    final = None
    for ev in pipe.stream("a red circle", num_frames=2, height=16, width=16, num_inference_steps=steps,
                          generator=torch.Generator().manual_seed(0), guidance=guidance,
                          reward=TargetReward(torch.full((2, 3, 16, 16), 0.5)), preview_every=0, track_reward=False):
        final = ev
    assert final is not None and torch.isfinite(torch.as_tensor(final.frames)).all()
    return len(calls), calls


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_free2guide_reuses_the_lookahead_eps_for_every_spacing(spacing):
    steps = 10
    n, ts = _count_unet_calls(spacing, steps, reuse=True)
    # 9 guided steps (all but the last), each one batched lookahead whose ε̂ the next step reuses: 10 calls in all,
    # the unguided count. Before the fix, "linspace" and "trailing" looked ahead at t − T//N and paid 19.
    assert n == steps, (spacing, ts)
    n_no_reuse, _ = _count_unet_calls(spacing, steps, reuse=False)
    assert n_no_reuse == 2 * steps - 1
    # every UNet call is at a listed timestep (the lookahead at the next step's, never at t − T//N off the list)
    from diffusers import DDIMScheduler

    from pipelines.testing import tiny_components

    sched = DDIMScheduler.from_config(tiny_components()["scheduler"].config, timestep_spacing=spacing)
    sched.set_timesteps(steps)
    assert set(ts) <= {int(t) for t in sched.timesteps}
