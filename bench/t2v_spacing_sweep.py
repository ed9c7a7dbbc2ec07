"""Why `t2v-hard` leaves guidance no room: unguided accuracy of the micro model on the 9 held-out prompts × 2 seeds
at few DDIM steps, by timestep spacing and CFG (bench/EVALUATE.md, "Text, few steps").

    python bench/t2v_spacing_sweep.py > bench/t2v_spacing_sweep.txt

The micro scheduler uses diffusers' "leading" spacing: 2 steps are the timesteps 501 and 1, so sampling starts at
t = 501 from pure noise (the mismatch that makes 2 steps miss attributes), and the one guided step lands at t = 1,
where Free²Guide's candidates differ only by σ_1.
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler

from pipelines.evaluation.cases import Case
from pipelines.evaluation.micro import metrics
from pipelines.micro import world
from pipelines.presets import load_preset
from pipelines.request import Generation, GenerationRequest, validate

SETTINGS = [(2, "leading", 7.5), (3, "leading", 7.5), (4, "leading", 7.5), (2, "trailing", 7.5),
            (3, "trailing", 7.5), (4, "trailing", 7.5), (2, "trailing", 3.0), (4, "trailing", 1.5)]


def main() -> None:
    torch.set_num_threads(1)
    preset = load_preset("micro")
    base = preset.pipe.scheduler.config
    print("| steps | spacing | timesteps | CFG | accuracy | colour | shape | direction |")
    print("|---|---|---|---|---|---|---|---|")
    for steps, spacing, cfg in SETTINGS:
        preset.pipe.scheduler = DDIMScheduler.from_config(base, timestep_spacing=spacing)
        preset.pipe.scheduler.set_timesteps(steps)
        ts = [int(t) for t in preset.pipe.scheduler.timesteps]
        acc = []
        for i, (c, s, m) in enumerate(world.HELD_OUT):
            prompt = world.caption(c, s, m, world.BACKGROUNDS[i % len(world.BACKGROUNDS)])
            for seed in (0, 1):
                g = Generation(validate(GenerationRequest(task="t2v", prompt=prompt, seed=seed, eta=1.0, steps=steps,
                                                          cfg=cfg), preset), preset, preview_every=0)
                for _ in g:
                    pass
                mt = metrics("t2v-hard", Case("x", "t2v", prompt, target=dict(colour=c, shape=s, motion=m)),
                             g.final_event.frames)
                acc.append([mt["colour"], mt["shape"], mt["motion"]])
        a = np.mean(acc, 0)
        print(f"| {steps} | {spacing} | {ts} | {cfg:g} | {a.mean():.3f} | {a[0]:.2f} | {a[1]:.2f} | {a[2]:.2f} |",
              flush=True)
    preset.pipe.scheduler = DDIMScheduler.from_config(base)


if __name__ == "__main__":
    main()
