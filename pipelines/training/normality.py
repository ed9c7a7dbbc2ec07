"""HARIVO Table A1: is correlated video noise Gaussian? (seed 002, Appendix B), and a second reading on frame
differences of micro videos (METHODS.md, MG).

**Table A1 as the paper runs it** (`--reading noise`, the default): draw many noise videos `(f, c, h, w)` from
PYoCo's correlated noise models and from i.i.d. N(0, I), run the Jarque–Bera test on each whole video (all f·c·h·w
values) and report the share that passes at p > 0.05 (the paper: 63.01 % correlated, 94.42 % random, 10 000 each).
Both PYoCo models are N(0, 1) per element and per frame; what breaks is the whole video: its values share one
component, so they are far fewer independent draws than their count and their moments scatter more than a
Gaussian sample's of that size. The two models, with α the correlation strength:
- `mixed`: ε_f = ε_shared + ε_f^ind, ε_shared ~ N(0, α²/(1+α²)) shared by every frame, ε_f^ind ~ N(0, 1/(1+α²));
- `progressive`: ε_0 ~ N(0, 1), ε_f = α/√(1+α²) ε_{f−1} + 1/√(1+α²) ξ_f (an AR(1) chain over frames).

    python -m pipelines.training.normality --samples 10000 --out bench/harivo-normality/table-a1

**Frame differences** (`--reading frame-differences`): HARIVO argues from the Jarque–Bera test (Table A1: 63 % of PYoCo's correlated noises pass at p > 0.05, against 94 %
of i.i.d. Gaussian noise) and designs MG's kernel `exp(−n_i²/S)` on the frame-difference norms `n_i = ‖x̂_{i+1} −
x̂_i‖₂`. Here, on the micro world, for three groups of videos (pixels in [0, 1], `f` frames each):

- `rendered`: clips of the micro world (`pipelines.micro.world.render_clip`), train attributes;
- `unguided`: the micro preset's videos for those clips' captions (method `none`, MG off);
- `mg`: the same prompts and seeds with HARIVO MG on (`mg_scale`, α = 40 by default: `GenerationRequest.mg_scale`,
  the `--mg-scale` of `generate`);

and i.i.d. Gaussian noise of the same shape as a calibration row (Table A1's "random noise"); two readings:

1. **pooled norms**: the Jarque–Bera statistic of all frame-difference norms `n_i` of the group (N·(f−1) values)
   and its p-value (is the norm distribution the one a Gaussian kernel on it assumes);
2. **per difference**: the fraction of frame differences `D_i` whose elements (3·H·W values) pass the Jarque–Bera
   test at p > 0.05 (Table A1's reading, on frame differences instead of noise samples), and the mean statistic.

`jarque_bera` is the closed form: `JB = n/6 · (S² + (K − 3)²/4)` with the biased sample skewness `S` and kurtosis
`K`, p-value `exp(−JB/2)` (the χ² survival function with 2 degrees of freedom), as `scipy.stats.jarque_bera`.

    python -m pipelines.training.normality --reading frame-differences --videos 24 --steps 20 --out bench/harivo-normality
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def jarque_bera(x) -> tuple[float, float]:
    """(statistic, p-value) of the Jarque–Bera normality test of the values `x` (any shape, flattened)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    if n < 3:
        raise ValueError(f"the Jarque–Bera test needs at least 3 values, got {n}")
    d = x - x.mean()
    m2 = float(np.mean(d ** 2))
    if m2 == 0.0:
        return float("nan"), float("nan")  # constant values: skewness and kurtosis undefined
    s = float(np.mean(d ** 3)) / m2 ** 1.5
    k = float(np.mean(d ** 4)) / m2 ** 2
    jb = n / 6.0 * (s * s + (k - 3.0) ** 2 / 4.0)
    return jb, math.exp(-jb / 2.0)


def frame_differences(video) -> np.ndarray:
    """`(f, 3, H, W)` (or `(f, H, W, 3)`) frames → `(f−1, 3·H·W)` differences of consecutive frames."""
    v = np.asarray(video, dtype=np.float64)
    if v.ndim != 4:
        raise ValueError(f"a video is (frames, 3, H, W), got shape {v.shape}")
    if v.shape[1] != 3 and v.shape[-1] == 3:
        v = v.transpose(0, 3, 1, 2)
    return (v[1:] - v[:-1]).reshape(v.shape[0] - 1, -1)


NOISE_MODELS = ("iid", "mixed", "progressive")


def correlated_noise(rng: np.random.Generator, model: str, shape: tuple, alpha: float = 1.0) -> np.ndarray:
    """One noise video `shape = (f, c, h, w)` of PYoCo's `mixed` or `progressive` model (module docstring), or
    i.i.d. N(0, 1) (`iid`). Every element is N(0, 1) in all three."""
    f = shape[0]
    if model == "iid":
        return rng.standard_normal(shape, dtype=np.float32)
    if model not in NOISE_MODELS:
        raise ValueError(f"noise model must be one of {list(NOISE_MODELS)}, got {model!r}")
    a2 = alpha * alpha
    if model == "mixed":
        shared = rng.standard_normal(shape[1:], dtype=np.float32) * np.float32(math.sqrt(a2 / (1 + a2)))
        return shared[None] + rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(1 / (1 + a2)))
    keep, fresh = np.float32(alpha / math.sqrt(1 + a2)), np.float32(1 / math.sqrt(1 + a2))
    out = np.empty(shape, np.float32)
    out[0] = rng.standard_normal(shape[1:], dtype=np.float32)
    for i in range(1, f):
        out[i] = keep * out[i - 1] + fresh * rng.standard_normal(shape[1:], dtype=np.float32)
    return out


def noise_pass_rate(model: str, samples: int, shape: tuple, alpha: float = 1.0, seed: int = 0) -> dict:
    """Table A1's figure for one noise model: the share of `samples` noise videos whose values, all of them at once,
    pass the Jarque–Bera test at p > 0.05; and the same for their single frames (which every model keeps Gaussian)."""
    rng = np.random.default_rng([seed, NOISE_MODELS.index(model)])
    passed = frame_passed = frames = 0
    for _ in range(samples):
        v = correlated_noise(rng, model, shape, alpha)
        passed += jarque_bera(v)[1] > 0.05
        frame_passed += jarque_bera(v[0])[1] > 0.05
        frames += 1
    return {"model": model, "alpha": alpha if model != "iid" else None, "samples": samples, "shape": list(shape),
            "frac_pass_p05": passed / samples, "first_frame_frac_pass_p05": frame_passed / frames}


def noise_table(rows: list[dict], command: str = "") -> str:
    lines = [f"`{command}`", ""] if command else []
    lines += ["| noise | α | videos | shape (f, c, h, w) | whole videos passing JB at p > 0.05 | their first frames "
              "passing |", "|---|---|---|---|---|---|"]
    for r in rows:
        a = "–" if r["alpha"] is None else f"{r['alpha']:g}"
        lines.append(f"| {r['model']} | {a} | {r['samples']} | {tuple(r['shape'])} | "
                     f"{100 * r['frac_pass_p05']:.2f} % | {100 * r['first_frame_frac_pass_p05']:.2f} % |")
    return "\n".join(lines)


def group_stats(videos: list) -> dict:
    norms, per_jb, passed, flat = [], [], 0, 0
    for v in videos:
        d = frame_differences(v)
        norms.extend(np.linalg.norm(d, axis=1).tolist())
        for row in d:
            jb, p = jarque_bera(row)
            if math.isnan(jb):  # an identical pair of frames (a still object on a flat background)
                flat += 1
                continue
            per_jb.append(jb)
            passed += p > 0.05
    jb, p = jarque_bera(norms)
    n_diff = len(per_jb)
    return {"videos": len(videos), "norms": len(norms), "norm_mean": float(np.mean(norms)),
            "norm_median": float(np.median(norms)), "jb_norms": jb, "p_norms": p,
            "diffs_tested": n_diff, "identical_pairs": flat,
            "frac_pass_p05": passed / n_diff if n_diff else float("nan"),
            "jb_diff_median": float(np.median(per_jb)) if per_jb else float("nan")}


def rendered(n: int, frames: int, seed: int = 0):
    from ..micro import world

    rng = np.random.default_rng(seed)
    clips, captions = [], []
    for _ in range(n):
        a = world.sample_attributes(rng, "train")
        clip, meta = world.render_clip(a["colour"], a["shape"], a["motion"], a["background"], num_frames=frames,
                                       rng=rng)
        clips.append(clip)
        captions.append(meta["caption"])
    return clips, captions


def generated(preset, captions: list[str], frames: int, steps: int, mg_scale: float, log=print) -> list:
    from ..request import Generation, GenerationRequest, validate

    out = []
    for i, cap in enumerate(captions):
        req = GenerationRequest(task="t2v", prompt=cap, method="none", seed=i, steps=steps, frames=frames,
                                mg_scale=mg_scale)
        gen = Generation(validate(req, preset), preset, preview_every=0)
        for _ in gen:
            pass
        out.append(np.asarray(gen.final_event.frames.detach().float().cpu()))
        if (i + 1) % 8 == 0:
            log(f"  {i + 1}/{len(captions)} (mg_scale {mg_scale:g})")
    return out


def table(results: dict, command: str = "") -> str:
    def f(x, nd=3):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else (
            f"{x:.2e}" if isinstance(x, float) and (abs(x) < 1e-3 and x != 0) else f"{x:.{nd}f}")

    lines = []
    if command:
        lines += [f"`{command}`", ""]
    lines += ["| videos | N | frame-difference norm, median | JB of the norms | p | differences passing JB at "
              "p > 0.05 | median JB per difference |",
              "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['videos']} ({r['norms']} norms) | {f(r['norm_median'])} | {f(r['jb_norms'], 2)} "
                     f"| {f(r['p_norms'])} | {f(100 * r['frac_pass_p05'], 1)} % of {r['diffs_tested']} | "
                     f"{f(r['jb_diff_median'], 0)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.training.normality", description=__doc__.split("\n")[0])
    p.add_argument("--reading", choices=["noise", "frame-differences"], default="noise",
                   help="noise: Table A1 as the paper runs it (default); frame-differences: micro videos' differences")
    p.add_argument("--samples", type=int, default=10000, help="noise: videos per noise model (the paper: 10 000)")
    p.add_argument("--shape", default="16,4,32,32", help="noise: one video's latent shape f,c,h,w")
    p.add_argument("--alpha", default="1", help="noise: PYoCo's correlation strength α (comma-separated: several rows)")
    p.add_argument("--models", default="mixed,progressive,iid", help="noise: the models, comma-separated")
    p.add_argument("--videos", type=int, default=24, help="frame-differences: videos per group")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--mg-scale", type=float, default=40.0, help="HARIVO MG α of the `mg` group (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for normality.json and normality.md")
    a = p.parse_args(argv)
    t0 = time.time()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    command = "python -m pipelines.training.normality " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.reading == "noise":
        try:
            shape = tuple(int(x) for x in a.shape.split(","))
            alphas = [float(x) for x in a.alpha.split(",")]
            models = [m.strip() for m in a.models.split(",")]
            if len(shape) != 4 or min(shape) < 1 or a.samples < 1 or any(m not in NOISE_MODELS for m in models):
                raise ValueError
        except ValueError:
            p.error(f"--shape f,c,h,w (positive), --samples ≥ 1, --models from {list(NOISE_MODELS)}")
        rows = []
        for m in models:
            for al in (alphas if m != "iid" else [1.0]):
                rows.append(noise_pass_rate(m, a.samples, shape, al, a.seed))
                log(f"  {m} α={al:g}: {100 * rows[-1]['frac_pass_p05']:.2f} % pass ({time.time() - t0:.0f} s)")
        md = noise_table(rows, command.strip())
        print(md)
        if a.out:
            out = Path(a.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "table_a1.json").write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=2))
            (out / "table_a1.md").write_text(md + "\n")
        return 0
    from ..presets import load_preset

    clips, captions = rendered(a.videos, a.frames, a.seed)
    preset = load_preset("micro", device="cpu")
    log(f"rendered {len(clips)} clips; generating unguided and MG (α = {a.mg_scale:g}) videos")
    noise_rng = np.random.default_rng(a.seed + 1)
    groups = {
        "i.i.d. Gaussian noise (calibration)": [noise_rng.normal(size=clips[0].shape) for _ in clips],
        "rendered micro clips": clips,
        "micro, unguided": generated(preset, captions, a.frames, a.steps, 0.0, log),
        f"micro, MG α = {a.mg_scale:g}": generated(preset, captions, a.frames, a.steps, a.mg_scale, log),
    }
    results = {k: group_stats(v) for k, v in groups.items()}
    md = table(results, command.strip())
    print(md)
    log(f"{time.time() - t0:.0f} s")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "normality.json").write_text(json.dumps({"command": command.strip(), "results": results}, indent=2))
        (out / "normality.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
