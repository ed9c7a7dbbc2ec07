"""Every gradient method and Free²Guide raise their task's reward over unguided sampling with the same seed.

Tiny random components, the real reward classes (style: Gram of a tiny random CLIP; interpolation: distance to
known first/last frames). Parameters that differ from the METHODS.md defaults are the tiny preset's
(`Preset.method_defaults`) plus shorter runs for speed; the gains table for the micro preset is in bench/RESULTS.md.
"""
import pytest
import torch

from pipelines.guidance import METHODS, make_guidance
from rewards.interpolation import InterpolationReward
from rewards.style import StyleReward
from rewards.testing import tiny_clip
from tests.engine_helpers import tiny_pipe

PARAMS = {
    "tfg": {"normalize": "rms", "mu": 0.05},
    "doodl": {"iterations": 2},
    "free2guide": {"num_candidates": 8, "guided_fraction": 0.5},
}
SEEDS = (0, 1)
KW = dict(num_frames=8, height=16, width=16, num_inference_steps=6, output_type="pt", eta=1.0)


@pytest.fixture(scope="module")
def rewards():
    style = torch.zeros(3, 16, 16)
    style[:, ::4] = 1.0
    style[0] = 0.8
    known = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    return {"style": StyleReward(style, clip=tiny_clip()), "interpolation": InterpolationReward(known, indices=[0, 7])}


@pytest.fixture(scope="module")
def baselines(rewards):
    pipe = tiny_pipe()
    return {
        (name, seed): pipe("a red circle", generator=torch.Generator().manual_seed(seed), reward=r, **KW).final_reward
        for name, r in rewards.items()
        for seed in SEEDS
    }


@pytest.mark.parametrize("reward_name", ["style", "interpolation"])
@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_guidance_raises_the_task_reward(method, reward_name, rewards, baselines):
    pipe = tiny_pipe()
    gains = []
    for seed in SEEDS:
        guidance = make_guidance(method, **PARAMS.get(method, {}))
        out = pipe("a red circle", generator=torch.Generator().manual_seed(seed), reward=rewards[reward_name],
                   guidance=guidance, **KW)
        gains.append(out.final_reward - baselines[(reward_name, seed)])
    print(f"{method:>10} {reward_name:>13} gains {['%+.4f' % g for g in gains]}")
    assert all(g > 0 for g in gains), gains
