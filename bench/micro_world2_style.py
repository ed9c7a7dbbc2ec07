"""World 2's style suite on a world-2 micro preset (`micro2`), per reference family, with the style reward chosen:

    python bench/micro_world2_style.py --reward clip-gram --methods none,titan --seeds 1,2 --out runs/style2-gram
    python bench/micro_world2_style.py --reward patch --methods titan --seeds 1,2 --out runs/style2-patch
    python bench/micro_world2_style.py --table runs/style2-gram runs/style2-patch    # the table of both

Each run is `pipelines.evaluation.grid.evaluate` on the style suite (`cases("style", world=2)`: 4 families × 4
cases) with the preset's `style_reward` set to `--reward`; rows, summary and contact sheets land in `--out`. The
table: per folder, method and family, joint / target (the reference's look: pattern, angle, both colours) /
fidelity (the prompt's colour, shape and motion in a clean video) over the videos, then fidelity's two halves
(content: colour, shape and motion read; clean: one object, residual and halo within bounds) and the look's pattern
and colours alone.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def table(folders) -> str:
    """Per style reward, method and reference family, over every row of `folders` (runs of one grid split by cases
    add up)."""
    lines = ["| reward | method | family | joint | target (look) | fidelity | content | clean | pattern | "
             "colours | s/video |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for folder in folders:
        rows = [json.loads(x) for x in (Path(folder) / "rows.jsonl").read_text().splitlines() if x.strip()]
        reward = (Path(folder) / "reward.txt").read_text().strip() if (Path(folder) / "reward.txt").exists() else "?"
        for r in rows:
            label = reward if r["method"] != "none" else "–"
            for fam in (r["metrics"].get("family"), "all"):
                groups.setdefault((label, r["method"], fam), {})[(r["case"], r["seed"])] = r
    order = {"flat": 0, "stripes": 1, "checks": 2, "photo": 3, "all": 9}
    for (label, method, fam), by_key in sorted(groups.items(), key=lambda kv: (kv[0][1] != "none", kv[0][0],
                                                                              kv[0][1], order.get(kv[0][2], 5))):
        rs = list(by_key.values())
        n = len(rs)

        def count(k):
            return sum(float(r["metrics"].get(k) or 0) == 1.0 for r in rs)

        sec = sum(r["seconds"] for r in rs) / n
        lines.append(f"| {label} | {method} | {fam} | {count('joint')}/{n} | {count('target')}/{n} | "
                     f"{count('fidelity')}/{n} | {count('content')}/{n} | {count('clean')}/{n} | "
                     f"{count('look_pattern')}/{n} | {count('look_colours')}/{n} | {sec:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reward", choices=("clip-gram", "patch"), default="clip-gram")
    p.add_argument("--methods", default="none,titan")
    p.add_argument("--seeds", default="1,2", help="comma list")
    p.add_argument("--cases", default=None, help="case ids (comma list), default all 16")
    p.add_argument("--preset", default="micro2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--table", nargs="+", default=None, metavar="FOLDER")
    a = p.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    if not a.out:
        p.error("--out is required to run")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipelines.evaluation.grid import evaluate
    from pipelines.evaluation.specs import split_specs
    from pipelines.presets import load_preset, micro_world

    preset = load_preset(a.preset, device="cpu")  # the cached preset `evaluate` loads again
    if micro_world(preset) != 2:
        p.error(f"--preset: {a.preset} is not a world-2 preset")
    preset.style_reward = a.reward
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "reward.txt").write_text(a.reward + "\n")
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    evaluate(["style"], split_specs(a.methods), seeds, a.out, preset_name=a.preset, max_cases=a.cases,
             device="cpu", threads=a.threads, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(table([a.out]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
