"""Exact evaluation of guidance: suites × methods × seeds, read by the micro world's detector.

    python -m pipelines evaluate --suite style,interpolate --methods none,titan,mpgd --seeds 2 --out runs/eval

Every generation is one *cell* (suite, case, method spec, seed, η) and one JSON line in `DIR/rows.jsonl`; a rerun
skips the cells already there (resumable). The summary (`summary.md`, `summary.csv`) and the plots (`plots/`) are
rebuilt from all rows at the end. Every metric comes from the exact detector (`pipelines.micro.detector`), never
from the reward that guides, and every method is compared with `none` at the same case, seed and η. Every row reads the
suite's `target`, the video's `fidelity` (the prompt's content kept, one object per frame, a re-rendering residual:
`pipelines.evaluation.readers`) and their `joint`, the summary's primary column; `DIR/sheets/SUITE/METHOD.png` shows
the first seed's videos of every (suite, method).

A *method spec* is a method name with optional settings in brackets, e.g. `titan[update=rms,step_size=0.1]`:
method parameters, plus the request fields `eta`, `mg` (HARIVO MG α), `mg_norm` (normalised α, when supported),
`cfg`, `steps`, `mode` (the interpolation constraint) and `reward` (the t2v reward, e.g. `reward=lvlm` or
`reward=clip+lvlm borda`; `policy=score|binary` picks the LVLM judge's policy; the judge is configured by the `GVS_LVLM_*` variables, e.g. the micro world's
stand-in judge `python -m pipelines.micro.judge`). The spec string is the row's label.

Suites (micro preset; `cases()` says exactly what each contains):
- `t2v-hard`  held-out prompts sampled in 2 DDIM steps, where unguided sampling misses attributes: colour / shape /
              direction.
- `t2v-reward` held-out captions as the reward's prompt and an empty prompt for the video model (it samples
              unconditioned): only guidance can draw colour and shape; colour / shape / direction accuracy.
- `style`     striped and checkered references on prompts asking for a black or gray background: the share of
              videos whose detected background becomes the reference's pattern.
- `interpolate` key frames with the object where the prompt's motion does not put it (reward mode; a spec's
              `mode=replacement|both` switches): endpoint distance (px), path jerk (second differences of the
              centroid, px), monotone interior.
- `interpolate-agree` key frames that a straight motion of the world joins, with the prompt naming that motion
              (the app's example is of this kind): the same metrics; whether guidance keeps the path smooth when the
              model can draw it.
- `audio`     two impacts one bounce period apart at each of the 4 phases: IoU of floor contacts with impact frames
              at the exact frame (chance 1/4 for a regular bounce of random phase) and within ±1 frame.
- `mg`        plain prompts for a HARIVO MG α sweep: frame-to-frame change, one object per frame, colour kept.

Real presets (`--preset animatediff`, `tiny` in tests): the suites `t2v`, `style` and `audio` of
`pipelines/evaluate_real.py`, measured by `rewards.metrics.real_metrics` with evaluators other than the guiding
models (CLIP-SIM, frame consistency, style score, AV-Align on optical flow, ImageBind; FVD per suite and method in
the summary); the same rows, resume, summary and sharding.

Sharding: under `torchrun` or `accelerate launch` (RANK / WORLD_SIZE in the environment) each process takes every
WORLD_SIZE-th pending cell, on its own GPU when there are several, writes `rows.rank{r}.jsonl`, and process 0 merges
after a barrier.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

SUITES = ("t2v-hard", "t2v-reward", "style", "interpolate", "interpolate-agree", "audio", "mg")
#: Request fields a method spec may set (the rest of its settings are method parameters).
REQUEST_KEYS = {"eta": "eta", "mg": "mg_scale", "mg_norm": "mg_normalized", "cfg": "cfg", "steps": "steps"}
#: The metric each suite is judged by, and whether higher is better (the first column of the summary).
PRIMARY = {suite: ("joint", True) for suite in SUITES}


@dataclass
class Case:
    id: str
    task: str
    prompt: str
    inputs: dict = field(default_factory=dict)  # GenerationRequest fields (media, interpolation mode)
    target: dict = field(default_factory=dict)  # what the metric compares with
    cfg: Optional[float] = None
    steps: Optional[int] = None  # the suite's own step count (overrides --steps)


# ------------------------------------------------------------------------------------------------------ suites
def _pil(frame) -> Any:
    from PIL import Image

    a = np.asarray(frame, np.float32)
    return Image.fromarray((np.clip(a.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8))


def _reference(pattern: str):
    from .micro import world

    img = np.repeat(world.background_image(pattern)[None], 3, 0)
    return _pil(img)


#: t2v-hard: few-step sampling, where the unguided micro model misses attributes. It follows its prompts at any CFG
#: (1.0–7.5 all gave 100 % on the held-out prompts at 20 steps), so CFG cannot leave room; the step count can
#: (bench/EVALUATE.md has the sweep behind this choice).
T2V_HARD_CFG = 7.5
T2V_HARD_STEPS = 2
#: interpolate: key positions (top-left x, y) of the object in the first and last frame: corners and edges that
#: a straight motion of the prompt would not connect.
KEY_POSITIONS = [((2, 2), (20, 20)), ((20, 2), (2, 20)), ((2, 20), (20, 2)), ((11, 2), (11, 20))]
#: interpolate-agree: (first, last) top-left positions 7 frames apart at the world's top speed (3 px per frame),
#: on the edge of the cross-axis range, and the motion that joins them.
AGREE_KEYS = [(((1, 2), (22, 2)), "moving left to right"), (((22, 20), (1, 20)), "moving right to left"),
              (((2, 1), (2, 22)), "moving down"), (((20, 22), (20, 1)), "moving up")]
#: audio: the frame of the first impact (the second one follows a bounce period later).
AUDIO_PHASES = (0, 1, 2, 3)


def _key_case(cid: str, colour: str, shape: str, motion: str, p0, p1) -> Case:
    """An interpolation case: key frames with the object's top-left at p0 and p1 on gray, reward mode."""
    from .micro import world

    frames = world.render_positions(colour, shape, "gray", [p0, p1])
    keys = _centroids(frames)
    return Case(cid, "interpolate", world.caption(colour, shape, motion, "gray"),
                inputs=dict(first_frame=_pil(frames[0]), last_frame=_pil(frames[1]), interpolation_mode="reward"),
                target=dict(first=keys[0], last=keys[1]))


def cases(suite: str, num_frames: int = 8) -> list[Case]:
    from .micro import world

    held = list(world.HELD_OUT)
    if suite == "t2v-hard":
        out = []
        for i, (c, s, m) in enumerate(held):
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append(Case(f"h{i}", "t2v", world.caption(c, s, m, bg), target=dict(colour=c, shape=s, motion=m),
                            cfg=T2V_HARD_CFG, steps=T2V_HARD_STEPS))
        return out
    if suite == "t2v-reward":
        out = []
        for i, (c, s, m) in enumerate(held):
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append(Case(f"r{i}", "t2v", "", inputs=dict(reward_prompt=world.caption(c, s, m, bg)),
                            target=dict(colour=c, shape=s, motion=m)))
        return out
    if suite == "style":
        out = []
        for i, (c, s, m) in enumerate(held[:4]):
            pattern = ("striped", "checkered")[i % 2]
            bg = ("black", "gray")[(i // 2) % 2]
            out.append(Case(f"{pattern}-{i}", "style", world.caption(c, s, m, bg),
                            inputs=dict(style_image=_reference(pattern)), target=dict(background=pattern)))
        return out
    if suite == "interpolate":  # a motion that does not join the keys
        return [_key_case(f"k{i}", c, s, "moving left to right" if i != 0 else "moving up", p0, p1)
                for i, ((p0, p1), (c, s, _m)) in enumerate(zip(KEY_POSITIONS, held))]
    if suite == "interpolate-agree":  # the motion that joins the keys
        return [_key_case(f"a{i}", c, s, motion, p0, p1)
                for i, (((p0, p1), motion), (c, s, _m)) in enumerate(zip(AGREE_KEYS, held))]
    if suite == "audio":
        out = []
        fps = world.FPS
        for k, (c, s, _m) in zip(AUDIO_PHASES, held):
            impacts = [f for f in (k, k + world.BOUNCE_PERIOD) if f < num_frames]
            wave = world.synth_impacts_audio([f / fps for f in impacts], num_frames / fps)
            bg = world.BACKGROUNDS[k % len(world.BACKGROUNDS)]
            out.append(Case(f"phase{k}", "audio", world.caption(c, s, "bouncing", bg),
                            inputs=dict(audio=(wave, world.SAMPLE_RATE)), target=dict(impacts=impacts)))
        return out
    if suite == "mg":
        out = []
        for i, (c, s, m) in enumerate(held[:4]):
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append(Case(f"m{i}", "t2v", world.caption(c, s, m, bg), target=dict(colour=c, shape=s, motion=m)))
        return out
    raise ValueError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")


def _centroids(frames) -> list[tuple[float, float]]:
    """Centroids (x, y) in px of the object in rendered frames, as the detector reads them."""
    from .micro.detector import detect

    return [tuple(c) for c in detect(frames)["centroids"]]


# ----------------------------------------------------------------------------------------------------- metrics
def _match(a: list[int], b: list[int], tol: int) -> int:
    """Size of a one-to-one matching of frame lists `a` and `b` within `tol` frames (greedy, sorted)."""
    used, n = set(), 0
    for x in sorted(a):
        for j, y in enumerate(sorted(b)):
            if j not in used and abs(x - y) <= tol:
                used.add(j)
                n += 1
                break
    return n


#: Interpolation targets: the ends within this many px of the keys (keys a motion of the world joins / conflicting keys).
ENDS_PX = {"interpolate-agree": 2.0, "interpolate": 3.0}


def _content_keys(suite: str) -> tuple[str, ...]:
    """The prompt's attributes a suite's video must keep: conflicting interpolation keys cannot follow the prompt's
    motion (no motion of the world joins them), so there only colour and shape."""
    return ("colour", "shape") if suite == "interpolate" else ("colour", "shape", "motion")


def metrics(suite: str, case: Case, frames) -> dict:
    """The suite's exact metrics of one generated video `frames` (f, 3, H, W) in [0, 1].

    Every suite reads three things (`pipelines.evaluation.readers`): `target` (the suite's effect: the pattern, the
    key positions, the contacts, the prompt's attributes), `fidelity` (the prompt's content kept, one object in every
    frame, no artefacts) and `joint` (both: the figure methods and defaults are chosen on)."""
    from .evaluation.readers import count_objects, fidelity, target_of
    from .micro.detector import _to_numpy, detect

    d = detect(frames)
    a = _to_numpy(frames)
    out: dict[str, Any] = {}
    prompt_target = case.target if suite in ("t2v-hard", "t2v-reward", "mg") else target_of(case.prompt)
    fid = fidelity(a, prompt_target, _content_keys(suite), d=d)
    if suite in ("t2v-hard", "t2v-reward", "mg"):
        t = case.target
        for k in ("colour", "shape", "motion"):
            out[k] = float(d[k] == t[k])
        out["accuracy"] = (out["colour"] + out["shape"] + out["motion"]) / 3
        out["target"] = out["accuracy"]
    if suite == "mg":
        out["change"] = float(np.abs(np.diff(a, axis=0)).mean())
        out["colour_kept"] = float(d["colour_consistency"] if d["colour"] == case.target["colour"] else 0.0)
    if suite == "style":
        out["background"] = d["background"]
        out["style_changed"] = float(d["background"] == case.target["background"])
        out["target"] = out["style_changed"]
    if suite in ("interpolate", "interpolate-agree"):
        cents = d["centroids"]
        size = a.shape[-1]
        dist = []
        for k, key in ((0, case.target["first"]), (-1, case.target["last"])):
            c = cents[k]
            dist.append(float(size) if c is None else math.hypot(c[0] - key[0], c[1] - key[1]))
        out["endpoint_px"] = float(np.mean(dist))
        out["ends_max_px"] = float(max(dist))
        pts = np.asarray([c for c in cents if c is not None], np.float64)
        out["jerk_px"] = float(np.linalg.norm(np.diff(pts, 2, axis=0), axis=1).mean()) if len(pts) >= 3 else None
        out["object_frames"] = int(d["object_frames"])
        # monotone: every centroid's projection on the first→last key axis moves forward (1 px slack)
        k0, k1 = np.asarray(case.target["first"]), np.asarray(case.target["last"])
        axis = (k1 - k0) / (np.linalg.norm(k1 - k0) + 1e-9)
        if len(pts) == len(cents):
            proj = (pts - k0) @ axis
            out["monotone"] = float(bool(np.all(np.diff(proj) >= -1.0)))
        else:
            out["monotone"] = 0.0
        ends_ok = out["ends_max_px"] <= ENDS_PX[suite]
        out["target"] = float(ends_ok and (out["monotone"] == 1.0 or suite == "interpolate"))
    if suite == "audio":
        impacts = case.target["impacts"]
        contacts = list(d.get("bounce_frames") or [])
        for name, tol in (("sync_iou", 0), ("sync_iou_1", 1)):
            m = _match(impacts, contacts, tol)
            out[name] = m / float(len(impacts) + len(contacts) - m)
        out["impacts_met"] = _match(impacts, contacts, 1) / float(len(impacts))
        out["contacts"] = contacts
        out["target"] = out["sync_iou"]
    out.update({k: fid[k] for k in ("content", "one_object", "residual", "clean", "fidelity")})
    if suite in ("t2v-hard", "t2v-reward", "mg"):  # the prompt is the target: its accuracy counts in clean videos
        out["joint"] = out["target"] * out["clean"]
    else:
        out["joint"] = out["target"] * out["fidelity"]
    return out


# --------------------------------------------------------------------------------------------------- method specs
_SPEC = re.compile(r"^\s*([a-z0-9_]+)\s*(?:\[(.*)\])?\s*$")


def _value(v: str):
    v = v.strip()
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def parse_spec(spec: str) -> tuple[str, dict, dict]:
    """`titan[update=rms,step_size=0.1,eta=0]` → ("titan", method params, request fields)."""
    from .guidance import METHODS

    m = _SPEC.match(spec)
    if not m or m.group(1) not in METHODS:
        raise ValueError(f"method spec {spec!r}: expected NAME or NAME[key=value,...] with NAME one of "
                         f"{', '.join(METHODS)}")
    params, request = {}, {}
    for item in filter(None, (s.strip() for s in (m.group(2) or "").split(","))):
        if "=" not in item:
            raise ValueError(f"method spec {spec!r}: {item!r} is not key=value")
        k, v = (s.strip() for s in item.split("=", 1))
        if k in REQUEST_KEYS:
            request[REQUEST_KEYS[k]] = _value(v)
        elif k == "mode":
            request["interpolation_mode"] = v
        elif k == "reward":  # the t2v reward: clip, lvlm, or "clip+lvlm weighted|normalized|borda"
            request["t2v_reward"] = v
        elif k == "policy":  # the LVLM judge's policy for this cell
            from rewards.lvlm import POLICIES

            if v not in POLICIES:
                raise ValueError(f"method spec {spec!r}: policy must be one of {', '.join(POLICIES)}")
            request["lvlm_policy"] = v
        else:
            params[k] = _value(v)
    return m.group(1), params, request


def split_specs(text: str) -> list[str]:
    """Split a comma list of specs, keeping commas inside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


# ------------------------------------------------------------------------------------------------------ the grid
@dataclass
class Cell:
    suite: str
    case: Case
    spec: str
    seed: int
    eta: float
    steps: int
    frames: int
    tag: str = ""  # real presets: the preset's name (a micro cell's key is what it always was)

    @property
    def key(self) -> str:
        raw = [self.suite, self.case.id, self.spec, self.seed, self.eta, self.steps, self.frames]
        if self.tag:
            raw.append(self.tag)
        return hashlib.sha1(json.dumps(raw).encode()).hexdigest()[:16]


def grid(suites, specs, seeds, eta, steps, frames, max_cases=None, case_fn=None, tag="") -> list[Cell]:
    """Every cell of suites × cases × specs × seeds; `case_fn(suite, frames)` gives a suite's cases (default: the
    micro suites' `cases`)."""
    cells = []
    for suite in suites:
        cs = (case_fn or cases)(suite, frames)
        if max_cases:
            cs = _first_cases(cs, max_cases)
        for case in cs:
            for spec in specs:
                for seed in seeds:
                    cells.append(Cell(suite, case, spec, seed, eta, case.steps or steps, frames, tag))
    return cells


def _first_cases(cs: list[Case], n: int) -> list[Case]:
    return cs[:n]


def run_cell(cell: Cell, preset, params_override: Optional[dict] = None, measure=None) -> dict:
    """Generate one cell and return its row; `measure(cell, frames, gen)` gives the metrics (default: the micro
    suites' exact `metrics`)."""
    from .request import Generation, GenerationRequest, validate

    method, params, request = parse_spec(cell.spec)
    params = {**(params_override or {}).get(method, {}), **params}
    fields = dict(task=cell.case.task, prompt=cell.case.prompt, method=method, params=params, seed=cell.seed,
                  eta=cell.eta, steps=cell.steps, frames=cell.frames, cfg=cell.case.cfg, **cell.case.inputs)
    fields.update(request)
    gen = Generation(validate(GenerationRequest(**fields), preset), preset, preview_every=0)
    t0 = time.perf_counter()
    for _ in gen:
        pass
    seconds = time.perf_counter() - t0
    frames = gen.final_event.frames
    p = gen.prepared
    return {
        "key": cell.key, "suite": cell.suite, "case": cell.case.id, "method": cell.spec, "base_method": method,
        "seed": cell.seed, "eta": p.eta, "steps": p.steps, "cfg": p.cfg, "frames": p.frames,
        "mg_scale": p.request.mg_scale, "params": p.params,
        "metrics": measure(cell, frames, gen) if measure else metrics(cell.suite, cell.case, frames),
        "final_reward": gen.final_reward(), "seconds": round(seconds, 4),
        "peak_memory_bytes": int(gen.peak_memory_bytes), "device": p.device, "preset": p.preset_name,
        "max_shift_ratio": _max_shift(gen), "_frames": frames,
        **({"model": preset.model_options.describe()} if getattr(preset, "model_options", None) else {}),
    }


def _max_shift(gen) -> Optional[float]:
    """The largest guided step of the run, in units of the noise left at its step (the step policy's bound)."""
    vals = [d["shift_ratio"] for d in gen.rewards_per_step if "shift_ratio" in d]
    return max(vals) if vals else None


# ------------------------------------------------------------------------------------------------------- summary
def read_rows(out: Path) -> list[dict]:
    rows, seen = [], set()
    for path in [out / "rows.jsonl"] + sorted(out.glob("rows.rank*.jsonl")):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a killed run: that cell runs again
                continue
            if r.get("key") not in seen:
                seen.add(r["key"])
                rows.append(r)
    return rows


def _mean(xs):
    xs = [x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool) and x is not None]
    return statistics.mean(xs) if xs else None


def primary_metric(suite: str, preset: Optional[str] = "micro") -> tuple[str, bool]:
    """(metric, higher is better) a suite is judged by: the micro suites' exact metric, or on a real preset's rows
    the real suite's (`evaluate_real.REAL_PRIMARY`)."""
    if preset not in (None, "micro"):
        from .evaluate_real import REAL_PRIMARY

        if suite in REAL_PRIMARY:
            return REAL_PRIMARY[suite]
    return PRIMARY[suite]


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (suite, method spec): means of every numeric metric, the primary metric's change against
    `none` at the same case, seed and η (over the pairs that exist), seconds and peak memory."""
    base = {(r["suite"], r["case"], r["seed"], r["eta"]): r for r in rows if r["method"] == "none"}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["suite"], r["method"]), []).append(r)
    out = []
    for (suite, method), rs in groups.items():
        names = sorted({k for r in rs for k, v in r["metrics"].items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        primary, higher = primary_metric(suite, rs[0].get("preset"))
        diffs, wins = [], []
        for r in rs:
            b = base.get((suite, r["case"], r["seed"], r["eta"]))
            if b is None or method == "none":
                continue
            x, y = r["metrics"].get(primary), b["metrics"].get(primary)
            if x is None or y is None:
                continue
            diffs.append(x - y)
            wins.append((x - y) * (1 if higher else -1))
        out.append({
            "suite": suite, "method": method, "n": len(rs), "primary": primary, "higher_is_better": higher,
            **{k: _mean(r["metrics"].get(k) for r in rs) for k in names},
            "delta_vs_none": _mean(diffs), "better_than_none": (sum(w > 0 for w in wins) / len(wins)) if wins else None,
            "worse_than_none": (sum(w < 0 for w in wins) / len(wins)) if wins else None,
            "seconds": _mean(r["seconds"] for r in rs),
            "peak_memory_mib": max(r["peak_memory_bytes"] for r in rs) / 2**20,
            "eta": sorted({r["eta"] for r in rs}),
        })
    order = {**{s: i for i, s in enumerate(SUITES)}, "t2v": -1}
    out.sort(key=lambda s: (order.get(s["suite"], 99), s["method"] != "none"))
    return out


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def write_summary(rows: list[dict], out: Path, set_metrics=None) -> list[dict]:
    """summary.md / summary.csv from `rows`. `set_metrics(summary)` may add set metrics (FVD) to the entries and
    returns {suite: [note, ...]}, written under that suite's table."""
    summary = summarize(rows)
    notes = set_metrics(summary) if set_metrics else {}
    lines = []
    for suite in dict.fromkeys(s["suite"] for s in summary):
        ss = [s for s in summary if s["suite"] == suite]
        primary, higher = ss[0]["primary"], ss[0]["higher_is_better"]
        extra = sorted({k for s in ss for k in s if k not in _FIXED and k != primary},
                       key=lambda k: (_LEAD.index(k) if k in _LEAD else len(_LEAD), k))
        cols = ["method", "n", primary, "delta_vs_none", "better_than_none", "worse_than_none", *extra,
                "seconds", "peak_memory_mib", "eta"]
        lines += [f"### {suite} ({primary}: {'higher' if higher else 'lower'} is better)", "",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for s in ss:
            lines.append("| " + " | ".join(_fmt(s.get(c)) for c in cols) + " |")
        lines.append("")
        if notes.get(suite):
            lines += [*(f"- {n}" for n in notes[suite]), ""]
    (out / "summary.md").write_text("\n".join(lines))
    keys = list(dict.fromkeys(k for s in summary for k in s))
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for s in summary:
            w.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in s.items()})
    return summary


#: Columns shown right after the primary (joint) figure, in this order: the suite's effect, then fidelity.
_LEAD = ["target", "fidelity", "content", "clean", "one_object", "residual"]
_FIXED = {"suite", "method", "n", "primary", "higher_is_better", "delta_vs_none", "better_than_none", "worse_than_none", "seconds",
          "peak_memory_mib", "eta"}


def plot(summary: list[dict], out: Path) -> list[Path]:
    """Per suite: the primary metric per method, and against seconds and peak memory. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency; a bare install may lack it
        print("evaluate: matplotlib is not installed; no plots", file=sys.stderr)
        return []
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    paths = []
    for suite in dict.fromkeys(s["suite"] for s in summary):
        ss = [s for s in summary if s["suite"] == suite and s.get(s["primary"]) is not None]
        if not ss:
            continue
        primary, higher = ss[0]["primary"], ss[0]["higher_is_better"]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        names = [s["method"] for s in ss]
        vals = [s[primary] for s in ss]
        axes[0].barh(range(len(ss)), vals, color="#4c72b0")
        axes[0].set_yticks(range(len(ss)), names, fontsize=7)
        axes[0].invert_yaxis()
        axes[0].set_xlabel(primary)
        for ax, key, label in ((axes[1], "seconds", "seconds per video"),
                               (axes[2], "peak_memory_mib", "peak memory (MiB)")):
            ax.scatter([s[key] for s in ss], vals)
            for s, v in zip(ss, vals):
                ax.annotate(s["method"].split("[")[0], (s[key], v), fontsize=7)
            ax.set_xlabel(label)
            ax.set_ylabel(primary)
        fig.suptitle(f"{suite}: {primary} ({'higher' if higher else 'lower'} is better)")
        fig.tight_layout()
        path = folder / f"{suite}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------------- running
def _dist_env() -> tuple[int, int, int]:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def share(cells: list, done: set, rank: int, world: int) -> list:
    """The pending cells process `rank` of `world` runs: a fixed slice of the whole grid, minus finished cells.

    Slicing the grid rather than the pending list keeps the shares disjoint and complete whatever each process
    saw when it started (a process that starts late would otherwise read rows another one has already written,
    slice a different list, and leave cells unrun)."""
    return [c for c in cells[rank::world] if c.key not in done]


def _barrier(world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()


def evaluate(suites, specs, seeds, out, *, preset_name="micro", eta=None, steps=None, frames=None,
             max_cases=None, params_override=None, device=None, threads=None, log=print, metrics_config=None,
             metric_options=None, style_image=None, audio=None, reference_videos=None,
             model_options=None) -> list[dict]:
    """Run the pending cells (this process's share) and, on process 0, write the summary and plots.

    Real presets only: `metrics_config` (a `rewards.metrics.MetricsConfig`; tests inject tiny models here),
    `metric_options` (overrides of its fields: clip, style_clip, imagebind, i3d, i3d_size, motion), `style_image`
    and `audio` (user files for the style / audio suites), `reference_videos` (a folder, for FVD).
    `model_options`: a `pipelines.model_options.ModelOptions` (trained video parts, LoRAs) put under the preset's
    image model; its rows carry `model` and their keys differ from the plain preset's."""
    import torch

    from .presets import load_preset
    from .request import DEFAULT_ETA

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world, local = _dist_env()
    if threads:
        torch.set_num_threads(int(threads))
    if device is None and torch.cuda.is_available():
        device = f"cuda:{local % torch.cuda.device_count()}"
    suites = list(suites)
    checked = False
    if preset_name not in ("micro", "auto"):  # a real preset: check the suites before loading it
        suites = _real_suites(suites, log)
        checked = True
    preset = load_preset(preset_name, device=device)
    real = preset.name != "micro"  # `auto` may resolve either way
    model_tag = ""
    if model_options is not None and not model_options.is_default:
        import hashlib

        from .model_options import with_model

        preset = with_model(preset, model_options)  # ModelOptionError (a ValueError) names the field
        model_tag = "model-" + hashlib.sha1(repr(model_options).encode()).hexdigest()[:10]
        log(f"evaluate: {model_options.describe()} ({model_tag})")
    if real:
        from . import evaluate_real as er

        if not checked:
            suites = _real_suites(suites, log)
        cfg = er.metrics_config_for(preset, metrics_config, **(metric_options or {}))
        er.check_ready(cfg, suites, reference_videos)
        log("evaluate: " + er.describe_config(cfg, preset))
    else:
        suites = list(SUITES) if suites == ["all"] else suites
        bad = [s for s in suites if s not in SUITES]
        if bad:
            raise ValueError(f"--suite: {bad[0]!r} is not one of {', '.join(SUITES)} (the micro preset's suites)")
    eta = DEFAULT_ETA if eta is None else float(eta)
    steps = preset.default_steps if steps is None else int(steps)
    frames = preset.default_frames if frames is None else int(frames)
    for spec in specs:
        parse_spec(spec)  # fail before any work
    if real:
        cells = grid(suites, specs, seeds, eta, steps, frames, max_cases, tag=preset.name + model_tag,
                     case_fn=lambda s, f: er.real_cases(s, f, preset.fps, style_image, audio))

        def run(cell):
            return run_cell(cell, preset, params_override, measure=lambda c, fr, g: er.measure(c, fr, g, cfg, out))
    else:
        cells = grid(suites, specs, seeds, eta, steps, frames, max_cases, tag=model_tag)

        def run(cell):
            return run_cell(cell, preset, params_override)
    done = {r["key"] for r in read_rows(out)}
    todo = [c for c in cells if c.key not in done]
    mine = share(cells, done, rank, world)
    log(f"evaluate: {len(cells)} cells, {len(cells) - len(todo)} done before, {len(mine)} for process "
        f"{rank}/{world} on {preset.device}")
    shard = out / (f"rows.rank{rank}.jsonl" if world > 1 else "rows.jsonl")
    t0 = time.perf_counter()
    for n, cell in enumerate(mine, 1):
        row = run(cell)
        if not real and cell.seed == seeds[0]:  # the first seed's videos, for the contact sheets
            _save_frames(out, row["key"], row.pop("_frames"))
        row.pop("_frames", None)
        with open(shard, "a") as fh:
            fh.write(json.dumps(row, default=_json_default) + "\n")
        eta_s = (time.perf_counter() - t0) / n * (len(mine) - n)
        log(f"[{rank}] {n}/{len(mine)} {cell.suite} {cell.case.id} {cell.spec} seed {cell.seed}: "
            f"{_short(row['metrics'])} ({row['seconds']:.1f} s, ~{eta_s / 60:.1f} min left)")
    _barrier(world)
    if rank != 0:
        return []
    rows = read_rows(out)
    if world > 1:  # merge the shards into rows.jsonl
        tmp = out / "rows.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, default=_json_default) + "\n" for r in rows))
        os.replace(tmp, out / "rows.jsonl")
        for p in out.glob("rows.rank*.jsonl"):
            p.unlink()
    wanted = {c.key for c in cells}
    rows = [r for r in rows if r["key"] in wanted] or rows
    def fvd(summary):
        return er.add_fvd(summary, rows, out, reference_videos, cfg.i3d, cfg.i3d_size, preset.device)

    summary = write_summary(rows, out, fvd if real else None)
    plot(summary, out)
    if not real:
        write_sheets(rows, out)
    return summary


def _save_frames(out: Path, key: str, frames) -> None:
    folder = out / "frames"
    folder.mkdir(exist_ok=True)
    tmp = folder / f"{key}.tmp.npy"
    np.save(tmp, np.asarray(frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else frames,
                            np.float16))
    os.replace(tmp, folder / f"{key}.npy")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:80] or "method"


def write_sheets(rows: list[dict], out: Path) -> list[Path]:
    """One contact sheet per (suite, method spec): the first seed's video of every case, a row each, labelled with
    its joint, target and fidelity readings (`sheets/SUITE/METHOD.png`)."""
    from .evaluation.sheets import contact_sheet

    paths = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["suite"], r["method"]), []).append(r)
    for (suite, method), rs in groups.items():
        first = min(r["seed"] for r in rs)
        rs = sorted((r for r in rs if r["seed"] == first), key=lambda r: r["case"])
        vids, labels = [], []
        for r in rs:
            path = out / "frames" / f"{r['key']}.npy"
            if not path.exists():
                continue
            m = r["metrics"]
            vids.append(np.load(path).astype(np.float32))
            labels.append(f"{r['case']} joint={_fmt(m.get('joint'))} target={_fmt(m.get('target'))} "
                          f"content={_fmt(m.get('content'))} clean={_fmt(m.get('clean'))} res={_fmt(m.get('residual'))}")
        if vids:
            paths.append(contact_sheet(vids, labels, out / "sheets" / suite / f"{_slug(method)}.png",
                                       title=f"{suite}: {method}, seed {first}"))
    return paths


def _real_suites(suites, log) -> list[str]:
    from .evaluate_real import REAL_SUITES, check_suites

    run, notes = check_suites(list(REAL_SUITES) if suites == ["all"] else suites)
    for n in notes:
        log(n)
    if not run:
        raise ValueError(f"--suite: nothing left to run; a real preset runs {', '.join(REAL_SUITES)}")
    return run


def _short(m: dict) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in m.items() if not isinstance(v, (list, dict)))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return repr(o)


def build_parser(p: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m pipelines evaluate")
    from .evaluate_real import REAL_SUITES

    p.description = ("Guidance suites × methods × seeds: exact suites on the micro preset, real-weight metrics on the "
                     "others (see pipelines/evaluate.py and pipelines/evaluate_real.py).")
    p.add_argument("--suite", required=True,
                   help=f"comma list, or all. micro: {', '.join(SUITES)}; other presets: {', '.join(REAL_SUITES)} "
                        "(interpolate is skipped there with a message)")
    p.add_argument("--methods", default="none,titan", help="comma list of method specs, e.g. none,titan[update=rms]")
    p.add_argument("--seeds", default="2", help="N (seeds 0..N-1) or a comma list")
    p.add_argument("--cases", type=int, default=None, help="at most this many cases per suite")
    p.add_argument("--eta", type=float, default=None, help="DDIM η for every cell (default: the request default)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--preset", default="micro")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a parameter for every spec of that method (a spec's own settings win)")
    from .cli import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--out", required=True, help="output folder (rows.jsonl, summary.md/.csv, plots/)")
    p.add_argument("--summarize", action="store_true",
                   help="run nothing: rebuild summary.md/.csv and the plots from every row in --out")
    g = p.add_argument_group("real presets (not micro): metric models and inputs")
    g.add_argument("--metric-clip", default=None, metavar="ID|DIR",
                   help="CLIP for CLIP-SIM and frame consistency (default openai/clip-vit-large-patch14; the "
                        "animatediff presets guide with openai/clip-vit-base-patch16, which is refused here)")
    g.add_argument("--style-clip", default=None, metavar="ID|DIR",
                   help="CLIP for the style score (default openai/clip-vit-base-patch32)")
    g.add_argument("--imagebind", default=None, metavar="PATH",
                   help="imagebind_huge.pth for the ImageBind score of the audio suite (default: env "
                        "IMAGEBIND_CKPT, else skipped with the reason in each row); on animatediff ImageBind is "
                        "also the audio reward, so AV-Align is the independent audio metric")
    g.add_argument("--motion", choices=("flow", "diff"), default=None,
                   help="AV-Align motion: flow (Farnebäck optical flow, OpenCV; default) or diff (frame differences)")
    g.add_argument("--i3d", default=None, metavar="PATH",
                   help="Kinetics-400 RGB I3D state dict for FVD (default: env GVS_I3D_WEIGHTS)")
    g.add_argument("--i3d-size", type=int, default=None, help="I3D input size (default 224)")
    g.add_argument("--reference-videos", default=None, metavar="DIR",
                   help="real videos (mp4, webm, ...) for FVD, computed in the summary per suite and method over "
                        "DIR/videos of --out; without it FVD is left out with the reason")
    g.add_argument("--style-image", default=None, metavar="PATH",
                   help="style suite: this reference for every prompt (default: procedural stripes, checker, "
                        "gradient, dots)")
    g.add_argument("--audio", default=None, metavar="PATH",
                   help="audio suite: this clip for every prompt (default: synthesised impacts at known times)")
    return p


def main(argv=None, args=None) -> int:
    a = args if args is not None else build_parser().parse_args(argv)
    if a.summarize:
        out = Path(a.out)
        rows = read_rows(out)
        if not rows:
            print(f"error: --out: no rows in {out}", file=sys.stderr)
            return 2
        def fvd(summary):
            import torch

            from .evaluate_real import add_fvd

            device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
            return add_fvd(summary, rows, out, a.reference_videos, a.i3d, a.i3d_size or 224, device)

        real_rows = any(r.get("preset") not in (None, "micro") for r in rows)
        try:
            plot(write_summary(rows, out, fvd if real_rows else None), out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print((out / "summary.md").read_text())
        return 0
    suites = ["all"] if a.suite == "all" else [s.strip() for s in a.suite.split(",") if s.strip()]
    if a.preset == "micro":
        for s in suites:
            if s not in SUITES and s != "all":
                print(f"error: --suite: {s!r} is not one of {', '.join(SUITES)}", file=sys.stderr)
                return 2
    seeds = list(range(int(a.seeds))) if a.seeds.strip().isdigit() else [int(s) for s in a.seeds.split(",")]
    from .request import RequestError, parse_method_param_strings

    try:
        override = {m: {n: _value(v) for n, v in given.items()}
                    for m, given in parse_method_param_strings(a.param).items()}
    except RequestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .cli import model_options_of
    from .model_options import ModelOptionError

    try:
        model_options = model_options_of(a)
    except ModelOptionError as e:
        print(f"error: --{e.field.replace('_', '-')}: {e.message}", file=sys.stderr)
        return 2
    try:
        summary = evaluate(suites, split_specs(a.methods), seeds, a.out, preset_name=a.preset, eta=a.eta,
                           steps=a.steps, frames=a.frames, max_cases=a.cases, params_override=override,
                           device=a.device, threads=a.threads, log=lambda s: print(s, file=sys.stderr, flush=True),
                           metric_options=dict(clip=a.metric_clip, style_clip=a.style_clip, imagebind=a.imagebind,
                                               motion=a.motion, i3d=a.i3d, i3d_size=a.i3d_size),
                           style_image=a.style_image, audio=a.audio, reference_videos=a.reference_videos,
                           model_options=model_options)
    except ModelOptionError as e:
        print(f"error: --{e.field.replace('_', '-')}: {e.message}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary:
        print((Path(a.out) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
