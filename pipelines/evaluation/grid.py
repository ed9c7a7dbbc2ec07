"""The grid: suites × cases × method specs × seeds, run, resumed, sharded across processes and summarised.

Every generation is one *cell* (suite, case, method spec, seed, η) and one JSON line in `DIR/rows.jsonl`; a rerun
skips the cells already there (resumable). The summary (`summary.md`, `summary.csv`), the plots (`plots/`) and, on
the micro preset, the contact sheets (`sheets/SUITE/METHOD.png`, the first seed's videos of every (suite, method))
are rebuilt from all rows at the end. Every method is compared with `none` at the same case, seed and η.

Sharding: under `accelerate launch` (or `torchrun`) accelerate's `PartialState().split_between_processes` gives each
process a contiguous share of the whole grid (`shard`), run on its own GPU when there are several; each process
writes `rows.rank{r}.jsonl`, and the main process merges them into `rows.jsonl` in grid order after
`wait_for_everyone`, so the summary equals a one-process run's. A process started alone runs the whole grid without
creating accelerate's state; without accelerate installed the grid runs in one process.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..presets import is_micro_world, micro_world
from . import real as er
from .cases import Case
from .micro import PRIMARY, SUITES, cases, metrics, suite_cases
from .specs import parse_spec


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


def grid(suites, specs, seeds, eta, steps, frames, max_cases=None, case_fn=None, tag="", world: int = 1) -> list[Cell]:
    """Every cell of suites × cases × specs × seeds; `case_fn(suite, frames)` gives a suite's cases (default: the
    micro suites' `cases` of micro world `world`). `max_cases`: the first N cases of each suite, or (micro suites)
    case ids such as `example` (`micro.suite_cases`)."""
    cells = []
    for suite in suites:
        if case_fn is None:
            cs = suite_cases(suite, frames, max_cases, world=world)
        else:
            cs = case_fn(suite, frames)
            if max_cases:
                if not (isinstance(max_cases, int) or str(max_cases).strip().isdigit()):
                    raise ValueError(f"--cases: {max_cases!r}: this preset's suites take a number of cases")
                cs = _first_cases(cs, int(max_cases))
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
    from ..request import Generation, GenerationRequest, validate

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
        "metrics": measure(cell, frames, gen) if measure else metrics(cell.suite, cell.case, frames,
                                                                      world=micro_world(preset) or 1),
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
    the real suite's (`real.REAL_PRIMARY`)."""
    if preset is not None and not is_micro_world(preset) and suite in er.REAL_PRIMARY:
        return er.REAL_PRIMARY[suite]
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
_LEAD = ["target", "fidelity", "smooth", "content", "clean", "one_object", "residual", "halo_px"]
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
class _OneProcess:
    """The process state of a run without accelerate: one process, nothing to wait for."""

    num_processes = 1
    process_index = 0
    local_process_index = 0
    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass


@dataclass
class _ProcessView:
    """A process index and count as accelerate's split reads them: `shard` with an explicit process."""

    process_index: int
    num_processes: int


#: The variables by which a launcher (torchrun, `accelerate launch`, MPI) tells a process how many there are.
_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes the launcher started (1 when run directly)."""
    return max([int(os.environ.get(v, "1") or 1) for v in _WORLD_VARS])


def process_state(cpu: Optional[bool] = None):
    """accelerate's `PartialState` when several processes were launched (under `accelerate launch` or `torchrun` it
    knows this process's index and count, and sets up the process group: gloo with `cpu`, by default where CUDA is
    not available) or when this process already has one; else a one-process state, which leaves accelerate's global
    state alone for whatever else runs in the process (a single process splits nothing: the same cells either way).
    Several processes without accelerate installed are refused."""
    try:
        from accelerate import PartialState
    except ImportError:
        if launched_processes() > 1:
            raise ValueError("a multi-process evaluate needs accelerate: pip install accelerate") from None
        return _OneProcess()
    if launched_processes() <= 1 and not getattr(PartialState, "_shared_state", None):
        return _OneProcess()
    if cpu is None:
        import torch

        cpu = not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def shard(cells: list, done=frozenset(), process_index: Optional[int] = None,
          num_processes: Optional[int] = None, state=None) -> list:
    """The pending cells of one process: its share of the *whole* grid by accelerate's
    `split_between_processes` (contiguous, sizes differing by at most one), minus the finished cells in `done`.

    By default the process is this one (`state`, else `process_state()`); `process_index` and `num_processes` name
    another (tests, planning). Splitting the whole grid rather than the pending cells keeps the shares disjoint and
    complete whatever each process saw when it started (a process that starts late would otherwise read rows
    another one has already written, split a different list, and leave cells unrun)."""
    if process_index is not None or num_processes is not None:
        if process_index is None or num_processes is None or not 0 <= process_index < num_processes:
            raise ValueError(f"shard: process {process_index} of {num_processes}")
        state = _ProcessView(int(process_index), int(num_processes))
    elif state is None:
        state = process_state()
    cells = list(cells)
    if state.num_processes > 1:
        from accelerate import PartialState

        # accelerate's own split, reading process_index / num_processes from `state` (this process's PartialState,
        # or a _ProcessView standing in for another's)
        with PartialState.split_between_processes(state, cells) as part:
            cells = list(part)
    return [c for c in cells if c.key not in done]


def merge_rows(out: Path, cells: list, write: bool = True) -> list[dict]:
    """Every row in `out` (rows.jsonl and the processes' rows.rank*.jsonl) in grid order (then any others, in file
    order), so that the summary does not depend on which process ran a cell. With `write` (a sharded run) they are
    written back as one rows.jsonl and the rank files removed; the main process calls this after every process is
    done."""
    rows = read_rows(out)
    order = {c.key: i for i, c in enumerate(cells)}
    rows.sort(key=lambda r: order.get(r["key"], len(order)))  # stable: rows of other grids keep their order
    if not write:
        return rows
    tmp = out / "rows.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, default=_json_default) + "\n" for r in rows))
    os.replace(tmp, out / "rows.jsonl")
    for p in out.glob("rows.rank*.jsonl"):
        p.unlink()
    return rows


def run_shard(mine: list, run, out: Path, rank: int, world: int, first_seed, log=print, save_frames: bool = True):
    """Run this process's cells with `run(cell) -> row`, appending each row to its own file as it finishes."""
    shard_path = out / (f"rows.rank{rank}.jsonl" if world > 1 else "rows.jsonl")
    t0 = time.perf_counter()
    for n, cell in enumerate(mine, 1):
        row = run(cell)
        frames = row.pop("_frames", None)
        if save_frames and frames is not None and cell.seed == first_seed:  # the first seed's, for contact sheets
            _save_frames(out, row["key"], frames)
        with open(shard_path, "a") as fh:
            fh.write(json.dumps(row, default=_json_default) + "\n")
        eta_s = (time.perf_counter() - t0) / n * (len(mine) - n)
        log(f"[{rank}] {n}/{len(mine)} {cell.suite} {cell.case.id} {cell.spec} seed {cell.seed}: "
            f"{_short(row['metrics'])} ({row['seconds']:.1f} s, ~{eta_s / 60:.1f} min left)")


def evaluate(suites, specs, seeds, out, *, preset_name="micro", eta=None, steps=None, frames=None,
             max_cases=None, params_override=None, device=None, threads=None, log=print, metrics_config=None,
             metric_options=None, style_image=None, audio=None, reference_videos=None,
             model_options=None) -> list[dict]:
    """Run the pending cells (this process's share) and, on the main process, write the summary and plots.

    Real presets only: `metrics_config` (a `rewards.metrics.MetricsConfig`; tests inject tiny models here),
    `metric_options` (overrides of its fields: clip, style_clip, imagebind, i3d, i3d_size, motion), `style_image`
    and `audio` (user files for the style / audio suites), `reference_videos` (a folder, for FVD).
    `model_options`: a `pipelines.model_options.ModelOptions` (trained video parts, LoRAs) put under the preset's
    image model; its rows carry `model` and their keys differ from the plain preset's."""
    import torch

    from ..presets import load_preset
    from ..request import DEFAULT_ETA

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = process_state(cpu=(str(device).startswith("cpu") or None) if device is not None else None)
    rank, world, local = state.process_index, state.num_processes, state.local_process_index
    if threads:
        torch.set_num_threads(int(threads))
    if device is None and torch.cuda.is_available():
        device = f"cuda:{local % torch.cuda.device_count()}"
    suites = list(suites)
    checked = False
    if not is_micro_world(preset_name) and preset_name != "auto":  # a real preset: check the suites before loading it
        suites = _real_suites(suites, log)
        checked = True
    preset = load_preset(preset_name, device=device)
    real = not is_micro_world(preset.name)  # `auto` may resolve either way
    model_tag = ""
    if model_options is not None and not model_options.is_default:
        import hashlib

        from ..model_options import with_model

        preset = with_model(preset, model_options)  # ModelOptionError (a ValueError) names the field
        model_tag = "model-" + hashlib.sha1(repr(model_options).encode()).hexdigest()[:10]
        log(f"evaluate: {model_options.describe()} ({model_tag})")
    if real:
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
        # micro's cells keep the keys they always had; another micro-world preset's are its own
        tag = model_tag if preset.name == "micro" else preset.name + model_tag
        cells = grid(suites, specs, seeds, eta, steps, frames, max_cases, tag=tag, world=micro_world(preset) or 1)

        def run(cell):
            return run_cell(cell, preset, params_override)
    done = {r["key"] for r in read_rows(out)}
    todo = [c for c in cells if c.key not in done]
    mine = shard(cells, done, state=state)
    log(f"evaluate: {len(cells)} cells, {len(cells) - len(todo)} done before, {len(mine)} for process "
        f"{rank}/{world} on {preset.device}")
    run_shard(mine, run, out, rank, world, seeds[0], log, save_frames=not real)
    state.wait_for_everyone()
    if not state.is_main_process:
        return []
    rows = merge_rows(out, cells, write=world > 1)
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
    from .sheets import contact_sheet

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
                          + (f"smooth={_fmt(m.get('smooth'))} " if "smooth" in m else "")
                          + f"content={_fmt(m.get('content'))} clean={_fmt(m.get('clean'))} "
                          + f"res={_fmt(m.get('residual'))}"
                          + (f" halo={_fmt(m.get('halo_px'))}px" if "halo_px" in m else ""))
        if vids:
            paths.append(contact_sheet(vids, labels, out / "sheets" / suite / f"{_slug(method)}.png",
                                       title=f"{suite}: {method}, seed {first}"))
    return paths


def _real_suites(suites, log) -> list[str]:
    run, notes = er.check_suites(list(er.REAL_SUITES) if suites == ["all"] else suites)
    for n in notes:
        log(n)
    if not run:
        raise ValueError(f"--suite: nothing left to run; a real preset runs {', '.join(er.REAL_SUITES)}")
    return run


def _short(m: dict) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in m.items() if not isinstance(v, (list, dict)))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return repr(o)
