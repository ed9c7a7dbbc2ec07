"""Accuracy of micro world 2's exact detector and look reader (CPU, seconds).

For every look of the family (`looks.ALL_LOOKS`) and each seed, one clip (object colour, shape and motion cycling
over the world's values) is rendered and read by `detect(..., world=2)`: clean, and blurred (Gaussian, sigma px) plus
Gaussian noise (std) at each level. Per condition it prints the share of clips read exactly (colour, shape, motion,
look all right) and per attribute. `read_look` is measured on each look's image at a random phase, upscaled 8x
(256 px) with noise, as a user's reference would come.

    OMP_NUM_THREADS=1 python bench/micro_world2_detector.py [--seeds 2] [--sheet sheet.png]

`--sheet PATH` writes a contact sheet instead: world 1's four backgrounds and 20 random looks, each a clip's frames
0, 3 and 7 (upscaled 3x), with the captions printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.micro import looks, world  # noqa: E402
from pipelines.micro.detector import detect  # noqa: E402

LEVELS = [(0.0, 0.0), (0.6, 0.03), (0.8, 0.06), (1.0, 0.1)]  # (blur sigma px, noise std)


def sheet(path: str) -> int:
    from PIL import Image

    rng = np.random.default_rng(5)
    picks = list(looks.WORLD1_LOOKS.values()) + [looks.sample_look(rng, "all") for _ in range(20)]
    rows = []
    for i, lk in enumerate(picks):
        v, meta = world.render_clip(list(world.COLOURS)[i % 6], world.SHAPES[i % 3], world.MOTIONS[i % 5], lk, rng=rng)
        rows.append(np.concatenate(list((v.numpy()[[0, 3, 7]].transpose(0, 2, 3, 1) * 255).astype(np.uint8)), 1))
        print(f"{i // 4}, {i % 4}: {meta['caption']}")
    grid = np.concatenate([np.concatenate(rows[j:j + 4], 1) for j in range(0, len(rows), 4)], 0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--sheet", default=None, help="write a contact sheet PNG here and stop")
    args = p.parse_args(argv)
    if args.sheet:
        return sheet(args.sheet)
    t0 = time.time()
    keys = ("colour", "shape", "motion", "look")
    stats = {lv: {k: 0 for k in (*keys, "all")} for lv in LEVELS}
    n = 0
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for i, lk in enumerate(looks.ALL_LOOKS):
            c, s, m = list(world.COLOURS)[i % 6], world.SHAPES[(i // 6) % 3], world.MOTIONS[(i + seed) % 5]
            v, _ = world.render_clip(c, s, m, lk, rng=rng)
            truth = dict(colour=c, shape=s, motion=m, look=lk)
            for lv in LEVELS:
                x = v.numpy()
                if lv[0] > 0:
                    x = ndimage.gaussian_filter(x, sigma=(0, 0, lv[0], lv[0]))
                if lv[1] > 0:
                    x = np.clip(x + rng.normal(0, lv[1], x.shape), 0, 1)
                d = detect(x, world=2)
                ok = {k: d[k] == truth[k] for k in keys}
                for k in keys:
                    stats[lv][k] += ok[k]
                stats[lv]["all"] += all(ok.values())
            n += 1
    print(f"{len(looks.ALL_LOOKS)} looks x {args.seeds} seeds = {n} clips per condition")
    print("| blur sigma (px) | noise std | all exact | colour | shape | motion | look |")
    print("|---|---|---|---|---|---|---|")
    for lv in LEVELS:
        st = stats[lv]
        print(f"| {lv[0]} | {lv[1]} | {st['all'] / n:.2%} | " + " | ".join(f"{st[k] / n:.2%}" for k in keys) + " |")
    from PIL import Image

    rng = np.random.default_rng(0)
    right = 0
    for lk in looks.ALL_LOOKS:
        ph = (int(rng.integers(16)), int(rng.integers(16)))
        img = looks.look_rgb(lk, 32, ph).transpose(1, 2, 0)
        img = np.repeat(np.repeat(img, 8, 0), 8, 1)
        img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
        right += looks.read_look(Image.fromarray((img * 255).round().astype(np.uint8))).look == lk
    print(f"read_look on 256 px references (random phase, noise std 0.05): {right}/{len(looks.ALL_LOOKS)} "
          f"= {right / len(looks.ALL_LOOKS):.2%} read as their look")
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
