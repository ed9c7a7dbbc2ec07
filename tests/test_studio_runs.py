"""The studio's runs without a server: a Cancel belongs to one run (never a later one, never a 500), crosses
processes (a forking stand-in for ZeroGPU's `spaces.GPU`), run folders are pruned, history and examples behave."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import pytest

from pipelines.studio.handlers import Studio
from pipelines.studio.runs import RunStore

PROMPT = "a red circle moving left to right on a black background"


@pytest.fixture
def studio(preset, tmp_path):
    """Streams every step (`stream_every_s=0`), so a test can count rows per step."""
    return Studio(preset, store=RunStore(tmp_path / "runs", keep=4), stream_every_s=0)


def _kw(preset, **over):
    kw = dict(prompt=PROMPT, method="none", mg_scale=0, seed=0, steps=2, cfg=7.5, frames=8,
              size=preset.default_size, eta=1.0)
    kw.update(over)
    return kw


def _status(outs):
    return outs[-1][-1]


def test_cancel_while_idle_never_reaches_the_next_run(studio, preset):
    """The issue's three tries: Cancel after a Generate and after a Compare, then Generate: it runs to the end."""
    first, _ = studio.begin()
    assert "summary" not in _status(list(studio.generate("t2v", _kw(preset), token=first)))
    for before in ("generate", "compare"):
        tok, _ = studio.begin()
        if before == "generate":
            outs = list(studio.generate("t2v", _kw(preset), token=tok))
        else:
            outs = list(studio.compare("t2v", _kw(preset, method="titan"), token=tok))
        assert "before" in _status(outs)
        # Cancel with nothing running: with the finished run's token, with none, with garbage
        for t in (tok, None, "../../etc", "r0000000000000000-deadbeef"):
            assert studio.cancel(t) == {"__type__": "update"}  # gr.skip(): the status stays as it was
        nxt, status = studio.begin()
        assert status.startswith("queued")
        outs = list(studio.generate("t2v", _kw(preset, steps=3), token=nxt))
        assert "3 steps" in _status(outs) and len(outs) == 4, _status(outs)
        assert studio.store.get(nxt).state == "done"


def test_cancel_a_queued_run_stops_only_that_run(studio, preset):
    tok, _ = studio.begin()
    assert studio.cancel(tok).startswith("cancelling: the run had not started")
    outs = list(studio.generate("t2v", _kw(preset), token=tok))
    assert len(outs) == 1 and _status(outs).startswith("cancelled before it started")
    assert studio.store.get(tok).state == "cancelled"
    later, _ = studio.begin()
    assert "2 steps" in _status(list(studio.generate("t2v", _kw(preset), token=later)))


def test_cancel_stops_a_running_run_at_the_next_step_and_says_where(studio, preset):
    tok, _ = studio.begin()
    outs = []
    for out in studio.generate("t2v", _kw(preset, steps=50), token=tok):
        outs.append(out)
        if len(outs) == 3:
            assert studio.cancel(tok) == "cancelling after sample step 3/50…"
    assert len(outs) == 4 and _status(outs).startswith("cancelled at step 3/50")
    assert studio.store.get(tok).state == "cancelled" and not studio.trackers
    assert studio.cancel(tok) == {"__type__": "update"}  # finished: nothing to cancel


def test_a_refused_request_leaves_its_run_failed_with_the_message(studio, preset):
    import gradio as gr

    tok, _ = studio.begin()
    with pytest.raises(gr.Error, match="steps"):
        list(studio.generate("t2v", _kw(preset, steps=2.5), token=tok))
    assert studio.store.get(tok).state == "failed"
    assert studio.failure_text(tok).startswith("not run: steps: must be a whole number")


class ForkingSpaces:
    """A stand-in for ZeroGPU's `spaces`: `GPU(duration=...)` runs the generator in a forked process and relays its
    rows, as ZeroGPU does; the parent's memory is never shared back."""

    durations: list = []

    @classmethod
    def GPU(cls, duration=60):  # noqa: N802 - mirrors spaces.GPU
        def deco(fn):
            def wrapper(*args, **kwargs):
                cls.durations.append(duration(*args, **kwargs) if callable(duration) else duration)
                ctx = mp.get_context("fork")
                q = ctx.Queue()

                def child():
                    try:
                        for row in fn(*args, **kwargs):
                            q.put(("row", str(row[-1])))
                        q.put(("end", os.getpid()))
                    except BaseException as e:  # noqa: BLE001
                        q.put(("error", repr(e)))

                p = ctx.Process(target=child, daemon=True)
                p.start()
                try:
                    while True:
                        kind, value = q.get(timeout=240)
                        if kind == "row":
                            yield value
                        elif kind == "error":
                            raise RuntimeError(value)
                        else:
                            assert value != os.getpid()  # it really ran in another process
                            return
                finally:
                    p.join(timeout=30)
            return wrapper
        return deco


def test_cancel_reaches_a_run_in_a_forked_gpu_process(studio, preset):
    from pipelines.studio.gpu import gpu_decorator

    names = list(_kw(preset))
    ForkingSpaces.durations.clear()

    def handler(*values, token=None):
        yield from studio.generate("t2v", dict(zip(names, values)), token=token)

    wrapped = gpu_decorator(names, spaces_module=ForkingSpaces)(handler)
    tok, _ = studio.begin()
    statuses = []
    for status in wrapped(*_kw(preset, steps=100).values(), token=tok):
        statuses.append(status)
        if len(statuses) == 2:
            said = studio.cancel(tok)  # in this (the server's) process
            assert said.startswith("cancelling after sample step"), said
    assert statuses[-1].startswith("cancelled at step"), statuses[-1]
    assert len(statuses) < 100
    assert studio.store.get(tok).state == "cancelled"  # written by the child, read here
    # the next run in a fresh fork is not touched by that Cancel
    tok2, _ = studio.begin()
    statuses = list(wrapped(*_kw(preset, steps=2).values(), token=tok2))
    assert "2 steps" in statuses[-1]
    from pipelines.studio.gpu import gpu_seconds

    # the GPU time asked for is sized per request, from the same arguments the handler gets
    assert ForkingSpaces.durations == [gpu_seconds(_kw(preset, steps=100)), gpu_seconds(_kw(preset, steps=2))]


def test_gpu_seconds_grow_with_the_request():
    from pipelines.studio.gpu import MAX_S, MIN_S, gpu_seconds

    base = dict(method="none", steps=25, frames=16, size=512)
    none = gpu_seconds(base)
    titan = gpu_seconds({**base, "method": "titan"})
    assert MIN_S <= none < titan < gpu_seconds({**base, "method": "titan"}, compare=True) <= MAX_S
    assert gpu_seconds({**base, "steps": 50}) > none and gpu_seconds({**base, "frames": 24}) > none
    assert gpu_seconds({**base, "method": "doodl", "steps": 200, "frames": 24}) == MAX_S
    assert gpu_seconds({"steps": "x", "method": None}) >= MIN_S  # garbage: a safe default, validation refuses later


def test_prune_keeps_the_newest_finished_runs_and_drops_old_ones(tmp_path):
    store = RunStore(tmp_path, keep=3, max_age_s=3600)
    runs = [store.new() for _ in range(6)]
    for r in runs[:5]:
        r.set_state("done")
    (runs[0].dir / "video.mp4").write_bytes(b"x" * 1000)
    active = store.new()  # prunes: 5 finished -> the newest 3; the queued one and this one stay
    left = {r.token for r in store.runs()}
    assert left == {runs[2].token, runs[3].token, runs[4].token, runs[5].token, active.token}
    assert not runs[0].dir.exists()
    # past the age, any run goes (crashed or abandoned ones included)
    gone = store.prune(now=time.time() + 3601)
    assert set(gone) == left and store.runs() == []


def test_history_remembers_finished_runs_only_and_never_a_compare_json(studio, preset, tmp_path):
    from pipelines.studio import history

    hist = []
    tok, _ = studio.begin()
    list(studio.generate("t2v", _kw(preset), token=tok))
    hist, items = history.remember_run(hist, tok, studio.store)
    assert len(hist) == 1 and "none · seed 0 · 2 steps" in items[0][1]
    cancelled, _ = studio.begin()
    studio.cancel(cancelled)
    list(studio.generate("t2v", _kw(preset), token=cancelled))
    assert history.remember_run(hist, cancelled, studio.store) is None
    cmp, _ = studio.begin()
    outs = list(studio.compare("t2v", _kw(preset, method="titan"), token=cmp))
    compare_json = outs[-1][5]
    assert "unguided" in json.loads(open(compare_json).read())
    # the compare's combined JSON on screen is not a run: no KeyError, no entry (the old HTTP 500)
    assert history.remember_shown(hist, compare_json, None, outs[-1][0]) is None
    hist, items = history.remember_run(hist, cmp, studio.store)  # its guided run is
    assert "titan" in items[0][1] and len(hist) == 2
    assert history.history_caption({}) == "? · seed ? · ? steps"
    assert studio.result_video(cmp).endswith("_guided.mp4")


def test_history_drops_entries_whose_runs_were_deleted(studio, preset):
    from pipelines.studio import history

    hist = []
    for seed in range(6):  # the store keeps 4 finished runs (+ the one a new run is made beside)
        tok, _ = studio.begin()
        list(studio.generate("t2v", _kw(preset, seed=seed, steps=1), token=tok))
        hist, _ = history.remember_run(hist, tok, studio.store)
    assert len(studio.store.runs()) == 5
    assert all(os.path.exists(h["report"]) for h in hist)
    assert [h["caption"].split(" · ")[1] for h in hist] == [f"seed {s}" for s in (5, 4, 3, 2, 1)]


def test_every_file_of_a_run_is_in_its_folder(studio, preset):
    tok, _ = studio.begin()
    outs = list(studio.generate("t2v", _kw(preset, steps=3), token=tok))
    run = studio.store.get(tok)
    for value in (outs[1][0], *outs[-1][:4]):
        if isinstance(value, str):
            assert os.path.dirname(value) == str(run.dir), value
    names = sorted(p.name for p in run.dir.iterdir())
    assert sum(n.startswith("preview-") for n in names) == 3 and any(n.endswith(".mp4") for n in names)


def test_cached_examples_carry_no_load_notice(studio, preset, monkeypatch):
    from pipelines.studio import examples, handlers

    monkeypatch.setattr(handlers, "busy_notice", lambda: "the machine is busy (test)")
    names = examples.example_names("t2v", [])
    fn = examples.example_fn(studio, "t2v", _kw(preset, steps=1), names)
    row = fn(*examples.example_rows("t2v")[0])
    assert "summary" not in row[-1] and "busy" not in row[-1] and "before" in row[-1]
    tok, _ = studio.begin()  # a user's own run still says so
    assert "busy (test)" in _status(list(studio.generate("t2v", _kw(preset, steps=1), token=tok)))


def test_every_streamed_row_carries_the_reward_plot_so_far(studio, preset):
    """The plot is Gradio's LinePlot fed (step, reward, series) rows: each streamed row holds every step's reward
    so far (steps from 1), and the final row all of them, equal to the report's."""
    outs = list(studio.generate("t2v", _kw(preset, steps=3), token=studio.begin()[0]))
    plots = [o[1].dropna() for o in outs]  # a NaN row names the series without a point ("guided")
    assert [len(p) for p in plots] == [1, 2, 3, 3], [o[-1] for o in outs]
    final = plots[-1]
    assert final["step"].tolist() == [1, 2, 3] and set(final["series"]) == {"unguided"}  # method none
    report = json.loads(open(outs[-1][3]).read())
    assert final["reward"].tolist() == pytest.approx(report["reward_per_step"])


def test_a_compares_plot_has_one_line_per_run(studio, preset):
    outs = list(studio.compare("t2v", _kw(preset, method="titan", steps=2), token=studio.begin()[0]))
    final = outs[-1][1]
    assert sorted(final["series"].unique()) == ["guided", "unguided"]  # the page's two colours (PLOT_SERIES)
    assert all(final[final["series"] == s]["step"].tolist() == [1, 2] for s in ("unguided", "guided"))
    guided = list(studio.generate("t2v", _kw(preset, method="titan", steps=2), token=studio.begin()[0]))
    assert set(guided[-1][1].dropna()["series"]) == {"guided"}


def test_a_running_job_streams_its_first_step_and_at_most_one_row_per_interval(preset, tmp_path, monkeypatch):
    """Each streamed row costs the run time in Gradio's queue: a long interval leaves the first step and the final
    row (no row for the last step, which the final row follows at once); the status still counts every step."""
    from pipelines.studio import handlers

    slow = Studio(preset, store=RunStore(tmp_path / "slow", keep=4), stream_every_s=3600)
    outs = list(slow.generate("t2v", _kw(preset, steps=5), token=slow.begin()[0]))
    assert len(outs) == 2, [o[-1] for o in outs]
    assert "1/5" in outs[0][-1] and "5 steps" in _status(outs)
    assert outs[-1][0].endswith("_seed0.png")  # the final row shows the final frames

    class Clock:  # each step reads the clock once: steps at t = 0, 0.1, 0.2, ...
        t = -0.1

        def perf_counter(self):
            self.t += 0.1
            return self.t

    monkeypatch.setattr(handlers, "time", Clock())
    timed = Studio(preset, store=RunStore(tmp_path / "timed", keep=4), stream_every_s=0.25)
    outs = list(timed.generate("t2v", _kw(preset, steps=5), token=timed.begin()[0]))
    # step 1 (t = 0), step 4 (t = 0.3: 0.25 s after the last row), then the final row
    assert ["1/5" in outs[0][-1], "4/5" in outs[1][-1], len(outs)] == [True, True, 3], [o[-1] for o in outs]
    assert outs[1][0].endswith("-003.png")  # the newest step's preview (index 3 = step 4), not a stale one
    monkeypatch.undo()
    every = Studio(preset, store=RunStore(tmp_path / "every", keep=4), stream_every_s=0)
    assert len(list(every.generate("t2v", _kw(preset, steps=5), token=every.begin()[0]))) == 6

    for raw, want in (("0", 0.0), ("1.5", 1.5), ("", handlers.STREAM_EVERY_S), ("-1", handlers.STREAM_EVERY_S),
                      ("soon", handlers.STREAM_EVERY_S), ("nan", handlers.STREAM_EVERY_S)):
        monkeypatch.setenv("GVS_STREAM_EVERY_S", raw)
        assert handlers.stream_every() == want, raw
