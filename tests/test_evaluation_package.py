"""One evaluation package (`pipelines.evaluation`): no import circle, every module importable first in a fresh
interpreter, one object definition, and the grid's sharding (accelerate's split) equal to a one-process run."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.evaluation import grid as gr
from pipelines.evaluation import micro
from tests.test_import_graph import import_graph

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pipelines"


# ------------------------------------------------------------------------------------------------- import graph
# One reader of the import graph: bench/import_graph.py (edges from every import statement, lazy ones too).
def _modules() -> dict[str, Path]:
    return {m: p for m, p in import_graph.module_files(ROOT).items() if m.split(".")[0] == "pipelines"}


def _import_graph() -> dict[str, set[str]]:
    """module -> the library modules it imports anywhere in its text (top level and inside functions):
    `from X import name` is an edge to X.name where that is a module, else to X."""
    mods = import_graph.module_files(ROOT)
    return {name: {t for t, _, _ in import_graph.imports_of(name, path, mods)} for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module."""
    edges = {v: set(graph.get(v, ())) for v in set(graph) | {w for ws in graph.values() for w in ws}}
    return sorted(g for g in import_graph.strongly_connected(sorted(edges), edges) if len(g) > 1)


def _evaluation_modules() -> list[str]:
    return sorted(m for m in _modules() if m.startswith("pipelines.evaluation"))


def test_the_evaluation_modules_import_no_circle():
    graph = _import_graph()
    ours = set(_evaluation_modules())
    assert {"pipelines.evaluation.cases", "pipelines.evaluation.micro", "pipelines.evaluation.real",
            "pipelines.evaluation.grid", "pipelines.evaluation.cli", "pipelines.evaluation.readers"} <= ours
    circles = [c for c in _cycles(graph) if ours & set(c)]
    assert not circles, f"import circles through the evaluation package: {circles}"
    # the graph sees the edges that matter: the real suites build the one Case, the grid runs both kinds of suite
    assert "pipelines.evaluation.cases" in graph["pipelines.evaluation.real"]
    assert {"pipelines.evaluation.micro", "pipelines.evaluation.real"} <= graph["pipelines.evaluation.grid"]
    # no re-export modules under the old names: one name per module
    assert not {"pipelines.evaluate", "pipelines.evaluate_real", "pipelines.micro.evaluate"} & set(_modules())


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_every_evaluation_module_imports_first_in_a_fresh_interpreter():
    """Each module imported first (pipelines.* dropped from sys.modules before each), in one fresh interpreter."""
    code = (
        "import importlib, sys, json\n"
        "mods = json.loads(sys.argv[1])\n"
        "for m in mods:\n"
        "    for k in [k for k in sys.modules if k == 'pipelines' or k.startswith('pipelines.')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
        "print('ok', len(mods))\n"
    )
    mods = _evaluation_modules()
    res = subprocess.run([sys.executable, "-c", code, json.dumps(mods)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == f"ok {len(mods)}"


# ------------------------------------------------------------------------------------------- one object definition
def test_no_scorer_counts_objects_its_own_way():
    """The ablation, the personalised base, the bench and the compare view read videos through the package's readers
    (no detector imported around them, no own IoU or centroid-jump formula)."""
    for path in (PKG / "training" / "ablation.py", PKG / "training" / "personalise.py",
                 ROOT / "bench" / "micro_guidance.py", PKG / "compare.py"):
        text = path.read_text()
        assert "ndimage" not in text and "object_mask" not in text, path
        assert "evaluation.readers" in text and "micro.detector" not in text, path
        assert "match_frames(" not in text and "np.diff" not in text, path
    from pipelines.training import ablation

    assert not hasattr(ablation, "_components")


# ------------------------------------------------------------------------------------------------------ sharding
def _cells():
    return gr.grid(["style", "audio"], ["none", "titan[step_size=0.5]", "mpgd"], [0, 1, 2], 1.0, 3, 8, max_cases=2)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_fake_multi_process_split_covers_the_grid_once(n):
    cells = _cells()
    shares = [gr.shard(cells, set(), process_index=i, num_processes=n) for i in range(n)]
    keys = [c.key for s in shares for c in s]
    assert len(keys) == len(set(keys)) == len(cells)  # no cell twice, none left out
    assert keys == [c.key for c in cells]  # accelerate's split is contiguous, in grid order
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError):
        gr.shard(cells, set(), process_index=n, num_processes=n)


def test_one_process_shard_is_the_whole_pending_grid(monkeypatch):
    for v in gr._WORLD_VARS:
        monkeypatch.delenv(v, raising=False)
    cells = _cells()
    assert gr.shard(cells) == cells  # this process, alone
    assert gr.shard(cells, {cells[0].key, cells[5].key}) == [c for i, c in enumerate(cells) if i not in (0, 5)]
    # a one-process run leaves accelerate's global state alone (an Accelerator made later in the process is free)
    from accelerate import PartialState

    if not PartialState._shared_state:
        assert isinstance(gr.process_state(), gr._OneProcess) and not PartialState._shared_state
    # accelerate's own split, one process: the whole list
    with PartialState.split_between_processes(gr._ProcessView(0, 1), cells) as part:
        assert list(part) == cells


def _fake_run(cell):
    """A row as run_cell writes it, without generating: metrics that depend on the cell only."""
    rng = np.random.default_rng(int(cell.key[:8], 16))
    m = {"joint": float(rng.integers(0, 2)), "target": float(rng.random()), "fidelity": float(rng.integers(0, 2))}
    return {"key": cell.key, "suite": cell.suite, "case": cell.case.id, "method": cell.spec, "seed": cell.seed,
            "eta": cell.eta, "metrics": m, "seconds": 0.5 + rng.random(), "peak_memory_bytes": 2**20,
            "preset": "micro"}


def test_merged_shards_summarise_as_one_process(tmp_path):
    cells = _cells()
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    gr.run_shard(gr.shard(cells, set(), 0, 1), _fake_run, one, 0, 1, 0, log=lambda s: None)
    # two processes; process 1 finishes first and process 0 has one cell from an earlier, killed run
    done_before = {cells[0].key}
    (two / "rows.jsonl").write_text(json.dumps(_fake_run(cells[0])) + "\n")
    for rank in (1, 0):
        gr.run_shard(gr.shard(cells, done_before, rank, 2), _fake_run, two, rank, 2, 0, log=lambda s: None)
    rows_one = gr.merge_rows(one, cells, write=False)
    rows_two = gr.merge_rows(two, cells, write=True)
    assert not list(two.glob("rows.rank*.jsonl"))
    assert [r["key"] for r in rows_two] == [c.key for c in cells] == [r["key"] for r in rows_one]
    assert (two / "rows.jsonl").read_text() == (one / "rows.jsonl").read_text()
    assert gr.write_summary(rows_two, two) == gr.write_summary(rows_one, one)
    assert (two / "summary.md").read_text() == (one / "summary.md").read_text()
    assert (two / "summary.csv").read_text() == (one / "summary.csv").read_text()


def test_micro_and_real_suites_sit_side_by_side():
    from pipelines.evaluation import real
    from pipelines.evaluation.cases import Case

    assert all(isinstance(c, Case) for c in micro.cases("style")) and all(
        isinstance(c, Case) for c in real.real_cases("t2v", 8, 8.0))
    assert gr.primary_metric("style") == micro.PRIMARY["style"]
    assert gr.primary_metric("style", "animatediff") == real.REAL_PRIMARY["style"]


def test_the_compare_view_reads_through_the_package_readers():
    """`pipelines.compare.task_metric` on rendered clips: attributes by `content_kept`, endpoints by `endpoint_mse`."""
    from types import SimpleNamespace

    import torch

    from pipelines.compare import task_metric
    from pipelines.evaluation.micro import _pil
    from pipelines.micro import world

    prompt = world.caption("red", "square", "moving up", "black")
    clip, _ = world.render_clip("red", "square", "moving up", "black", seed=0)
    frames = torch.as_tensor(np.asarray(clip, np.float32))
    req = SimpleNamespace(task="t2v", prompt=prompt, reward_prompt=None)
    prepared = SimpleNamespace(request=req, audio=None, preset_name="micro", fps=8, size=frames.shape[-1])
    m = task_metric(prepared, frames)
    assert (m.name, m.value) == ("attributes", 1.0) and "4/4" in m.text
    assert m.text.endswith("; a clean video of the prompt")  # the joint tables' fidelity, read on the micro preset
    wrong = SimpleNamespace(**{**vars(prepared), "request": SimpleNamespace(
        task="t2v", prompt=world.caption("blue", "square", "moving up", "black"), reward_prompt=None)})
    m = task_metric(wrong, frames)
    assert m.value == 0.75 and "colour" in m.text
    keys = SimpleNamespace(task="interpolate", prompt=prompt, reward_prompt=None, first_frame=_pil(clip[0]),
                           last_frame=_pil(clip[-1]))
    m = task_metric(SimpleNamespace(**{**vars(prepared), "request": keys}), frames)
    assert m.name == "endpoint MSE" and m.value < 1e-4 and not m.higher_is_better


def test_the_compare_view_counts_exact_frames_for_audio_on_micro():
    """Contacts one frame before every thump: AV-Align (±1 frame) reads 1, the exact-frame sync the audio table
    counts reads 0, and the compare view reports the latter."""
    from types import SimpleNamespace

    import torch

    from pipelines.compare import task_metric
    from pipelines.evaluation.readers import detect
    from pipelines.media import Audio
    from pipelines.micro import world

    for seed in range(50):  # a bounce whose contacts are not at frame 0 (an onset needs some sound before it)
        clip, _ = world.render_clip("green", "circle", "bouncing", "black", seed=seed)
        frames = torch.as_tensor(np.asarray(clip, np.float32))
        contacts = list(detect(frames)["bounce_frames"])
        if contacts and min(contacts) >= 1 and max(contacts) <= len(frames) - 2:
            break
    assert contacts and min(contacts) >= 1
    fps = float(world.FPS)

    def metric(shift):
        wave = world.synth_impacts_audio([(k + shift) / fps for k in contacts], len(frames) / fps)
        req = SimpleNamespace(task="audio", prompt=world.caption("green", "circle", "bouncing", "black"),
                              reward_prompt=None)
        prepared = SimpleNamespace(request=req, audio=Audio(wave, world.SAMPLE_RATE), preset_name="micro", fps=fps,
                                   size=frames.shape[-1])
        return task_metric(prepared, frames)

    on, late = metric(0), metric(1)
    assert on.name == "exact-frame sync" and on.value == 1.0 and "clean video of the prompt" in on.text
    assert late.value == 0.0 and "AV-Align within ±1 frame 1" in late.text
