"""Issue #32's runtime safety: one job per slot (examples included), an example that fails does not stop start-up, a
wall-clock cap per job, the model cache bounded in bytes, and torch threads chosen from the free cores."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from pipelines.studio import handlers
from pipelines.studio.examples import EXAMPLE_FAILED, drop_failed_cache, example_fn
from pipelines.studio.handlers import Studio
from pipelines.studio.limits import DEFAULT_JOB_SECONDS, Deadline, default_job_seconds, job_cap, parse_seconds
from pipelines.studio.runs import RunStore
from pipelines.studio.threads import FreeCores, ThreadPolicy

PROMPT = "a red circle moving left to right on a black background"


def _kw(preset, **over):
    kw = dict(prompt=PROMPT, method="none", mg_scale=0, seed=0, steps=2, cfg=7.5, frames=8, size=preset.default_size,
              eta=1.0)
    kw.update(over)
    return kw


# ------------------------------------------------------------------------------------------------ one job per slot
def test_a_job_holds_the_slot_until_it_ends_or_is_closed(preset, tmp_path):
    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=4))
    assert studio.slots == 1

    def rows():
        yield 1
        yield 2

    it = studio.iterate(rows())
    assert next(it) == 1
    assert not studio._slots.acquire(blocking=False)  # a second job (an example, a request) would wait here
    it.close()  # a cancel at a yield gives the slot back
    assert studio._slots.acquire(blocking=False)
    studio._slots.release()
    assert list(studio.iterate(rows())) == [1, 2]
    assert studio._slots.acquire(blocking=False)
    studio._slots.release()


def test_a_second_job_starts_only_after_the_first_ends(preset, tmp_path):
    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=4))
    order, inside = [], threading.Event()
    release = threading.Event()

    def rows(name):
        order.append(f"{name} start")
        inside.set()
        release.wait(timeout=60)
        yield name
        order.append(f"{name} end")

    a = threading.Thread(target=lambda: list(studio.iterate(rows("a"))))
    a.start()
    assert inside.wait(timeout=60)
    b = threading.Thread(target=lambda: list(studio.iterate(rows("b"))))
    b.start()
    release.set()  # b may only be waiting for the slot: it must start after a ended
    a.join(timeout=60)
    b.join(timeout=60)
    assert order == ["a start", "a end", "b start", "b end"]


def test_examples_run_as_jobs_and_a_failing_one_returns_its_error(preset, tmp_path, monkeypatch):
    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=4))
    through = []
    real_iterate = studio.iterate
    monkeypatch.setattr(studio, "iterate", lambda rows: through.append(1) or real_iterate(rows))
    fn = example_fn(studio, "t2v", _kw(preset), ["prompt", "method", "mg_scale", "seed"])
    row = fn(PROMPT, "none", 0, 0)
    assert through == [1] and Path(row[2]).exists() and "2 steps" in row[-1]

    def broken(*a, **k):
        raise RuntimeError("Trying to access a forward AD level with an invalid index")
        yield  # a generator, like the real one

    monkeypatch.setattr(studio, "generate", broken)
    row = fn(PROMPT, "titan", 0, 1)
    assert row[:4] == (None, None, None, None)
    assert row[-1].startswith(EXAMPLE_FAILED) and "forward AD level" in row[-1]


def test_a_cached_failed_example_is_computed_again_at_the_next_start(tmp_path):
    class Ex:
        cached_folder = tmp_path / "cache" / "123"
        cached_file = cached_folder / "log.csv"

    Ex.cached_folder.mkdir(parents=True)
    Ex.cached_file.write_text("preview,plot,video,report,status\n,,a.mp4,a.json,fine\n")
    assert not drop_failed_cache(Ex) and Ex.cached_file.exists()
    Ex.cached_file.write_text(Ex.cached_file.read_text() + f",,,,{EXAMPLE_FAILED} boom\n")
    assert drop_failed_cache(Ex) and not Ex.cached_folder.exists()
    assert not drop_failed_cache(Ex)  # nothing cached: nothing to do


# ------------------------------------------------------------------------------------------------------ time cap
def test_default_cap_follows_the_preset_and_device_and_the_operator_wins():
    class P:
        def __init__(self, name, device):
            self.name, self.device = name, torch.device(device)

    assert default_job_seconds(P("micro", "cpu"))[0] == DEFAULT_JOB_SECONDS[(True, "cpu")]
    assert default_job_seconds(P("animatediff", "cpu"))[0] == DEFAULT_JOB_SECONDS[(False, "cpu")]
    assert DEFAULT_JOB_SECONDS[(False, "cpu")] > DEFAULT_JOB_SECONDS[(True, "cpu")]
    assert job_cap(P("micro", "cpu"), "12.5", env={}) == (12.5, "--max-job-seconds")
    assert job_cap(P("micro", "cpu"), None, env={"GVS_MAX_JOB_S": "0"}) == (0.0, "GVS_MAX_JOB_S")
    for bad in ("-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match="--max-job-seconds"):
            parse_seconds(bad)


def test_app_flags_are_checked(capsys):
    import app

    assert app.parse_args(["--max-job-seconds", "30"]).max_job_seconds == "30"
    for argv in (["--max-job-seconds", "-5"], ["--threads", "0"], ["--threads", "many"]):
        with pytest.raises(SystemExit):
            app.parse_args(argv)
    err = capsys.readouterr().err
    assert "--max-job-seconds" in err and "--threads" in err


class StepClock:
    """A clock that moves one second each time it is read: the deadline expires after a known number of checks."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1.0
        return self.t


def test_a_job_past_its_cap_stops_between_steps_with_a_message_and_its_last_preview(preset, tmp_path, monkeypatch):
    monkeypatch.setattr(handlers, "Deadline", lambda s: Deadline(s, clock=StepClock()))
    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=4), stream_every_s=3600, max_job_s=4,
                    max_job_why="--max-job-seconds")
    token, queued = studio.begin()
    assert "time cap 4 s (--max-job-seconds)" in queued  # announced before the run
    rows = list(studio.iterate(studio.generate("t2v", _kw(preset, steps=30), token=token)))
    assert "time cap 4 s" in rows[0][-1]  # and on the run's status while it runs
    last = rows[-1]
    assert "stopped: the job reached its time cap of 4 s (--max-job-seconds)" in last[-1]
    assert "step 3/30" in last[-1]  # stopped between steps, long before the 30th
    assert isinstance(last[0], str) and Path(last[0]).exists()  # the last step's preview, kept
    assert studio.store.get(token).state == "timed_out"
    assert not list(Path(studio.store.get(token).dir).glob("*.mp4"))


def test_a_job_within_its_cap_says_so_in_its_summary(preset, tmp_path):
    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=4), max_job_s=300, max_job_why="default for micro",
                    threads=ThreadPolicy(1, "--threads"))
    last = list(studio.iterate(studio.generate("t2v", _kw(preset), token=studio.begin()[0])))[-1]
    assert "time cap 300 s (default for micro)" in last[-1] and "1 torch thread (--threads)" in last[-1]
    assert torch.get_num_threads() == 1


# ----------------------------------------------------------------------------------------------- model cache
def test_the_model_cache_is_bounded_in_bytes(preset, tmp_path, monkeypatch):
    from pipelines import model_options as mo

    class Pipe:
        """A pipeline with the preset's modules and one of its own of `mb` MiB."""

        def __init__(self, mb):
            self.components = dict(preset.pipe.components, extra=torch.nn.Linear(1024, int(mb * 256), bias=False))

    sizes = {}
    monkeypatch.setattr(mo, "apply_to_pipe", lambda pipe, options: Pipe(sizes[options.loras[0][0]]))
    monkeypatch.setenv("GVS_MODEL_CACHE_MB", "2.5")
    mo.clear_cache()

    def options(name, mb):
        f = tmp_path / f"{name}.safetensors"
        f.write_bytes(b"x")
        sizes[str(f)] = mb
        return mo.ModelOptions(None, ((str(f), 1.0),))

    a, b, c = options("a", 1), options("b", 1), options("c", 1)
    ma = mo.with_model(preset, a)
    assert mo.cache_size() == (1, 1 << 20)  # only its own tensors count, not the preset's shared ones
    mo.with_model(preset, b)
    assert mo.with_model(preset, a) is ma  # cached, and now the most recently used
    mo.with_model(preset, c)
    n, size = mo.cache_size()
    assert (n, size) == (2, 2 << 20) and mo.with_model(preset, a) is ma  # b, the least recently used, went
    mo.with_model(preset, options("big", 3))  # larger than the budget alone: kept, alone (the run needs it)
    assert mo.cache_size() == (1, 3 << 20)
    mo.clear_cache()


# ---------------------------------------------------------------------------------------------------- threads
class FakeStat:
    """/proc/stat of two cores whose busy/idle jiffies advance as told, and this process's CPU seconds."""

    def __init__(self):
        self.t, self.stat, self.own_s = 0.0, {0: (0, 0), 1: (0, 0)}, 0.0

    def advance(self, seconds, busy_cores, own_cores=0.0):
        """`busy_cores` of the two busy (this process's share included) for `seconds` (100 jiffies a second)."""
        for c in (0, 1):
            share = min(1.0, max(0.0, busy_cores - c))
            b, i = self.stat[c]
            self.stat[c] = (b + int(100 * seconds * share), i + int(100 * seconds * (1 - share)))
        self.own_s += own_cores * seconds
        self.t += seconds

    def cores(self):
        return FreeCores(cores=[0, 1], reader=lambda: dict(self.stat), own=lambda: self.own_s, clock=lambda: self.t,
                         sleep=lambda s: self.advance(s, self.busy, self.own_now))


@pytest.mark.parametrize("others,own,want", [(0.0, 0.0, 2), (1.0, 0.0, 1), (2.0, 0.0, 1), (1.9, 0.0, 1),
                                             (0.0, 2.0, 2), (1.0, 1.0, 1), (0.2, 0.0, 2)])
def test_threads_follow_the_cores_other_processes_leave_free(others, own, want):
    fake = FakeStat()
    fake.busy, fake.own_now = others + own, own
    free = fake.cores()
    free.sample()
    fake.advance(1.5, others + own, own)
    n, why = ThreadPolicy(None, "", free).choose()
    assert n == want, why
    assert "of 2 cores free over 1.5 s" in why


def test_without_an_old_enough_sample_a_short_window_is_taken():
    fake = FakeStat()
    fake.busy, fake.own_now = 2.0, 0.0
    n, why = ThreadPolicy(None, "", fake.cores()).choose()
    assert n == 1 and "over 0.3 s" in why


def test_an_explicit_thread_count_wins():
    assert ThreadPolicy.from_settings("3", env={"OMP_NUM_THREADS": "1"}, background=False).choose() == (3, "--threads")
    assert ThreadPolicy.from_settings("auto", env={"OMP_NUM_THREADS": "1"}, background=False).choose() == (
        1, "OMP_NUM_THREADS=1")
    auto = ThreadPolicy.from_settings("auto", env={}, background=False)
    assert auto.fixed is None and 1 <= auto.choose()[0] <= len(auto.free_cores.cores)
    with pytest.raises(ValueError, match="--threads"):
        ThreadPolicy.from_settings("0", env={}, background=False)
