"""The app's one torch thread (`pipelines.studio.compute`): every step of a handler runs on it, errors and context
variables travel, a cancel closes the generator there, and a call from the thread itself runs inline."""
from __future__ import annotations

import contextvars
import threading

import pytest

from pipelines.studio.compute import TorchThread

VAR = contextvars.ContextVar("VAR", default="unset")


def test_every_step_runs_on_the_one_thread_and_sees_the_callers_context():
    tt = TorchThread()
    seen = []

    def rows():
        for i in range(3):
            seen.append((threading.get_ident(), VAR.get()))
            yield i

    VAR.set("request-1")  # as Gradio's request context, set in the caller's thread
    out = list(tt.iterate(rows()))
    assert out == [0, 1, 2]
    assert {ident for ident, _ in seen} == {tt.ident} != {threading.get_ident()}
    assert all(v == "request-1" for _, v in seen)
    tt.shutdown()


def test_errors_reach_the_caller_and_closing_runs_the_generators_finally_on_the_thread():
    tt = TorchThread()
    closed = []

    def rows():
        try:
            yield 1
            yield 2
        finally:
            closed.append(threading.get_ident())

    it = tt.iterate(rows())
    assert next(it) == 1
    it.close()  # a cancel at a yield
    assert closed == [tt.ident]
    with pytest.raises(ZeroDivisionError):
        tt.call(lambda: 1 / 0)

    def bad():
        yield 1
        raise ValueError("steps: must be >= 1")

    with pytest.raises(ValueError, match="steps"):
        list(tt.iterate(bad()))
    tt.shutdown()


def test_a_call_from_the_thread_itself_runs_inline_instead_of_deadlocking():
    tt = TorchThread()
    assert tt.call(lambda: tt.call(threading.get_ident)) == tt.ident
    tt.shutdown()


def test_the_studio_runs_its_handlers_on_its_torch_thread(preset, tmp_path, monkeypatch):
    from pipelines.studio import handlers
    from pipelines.studio.handlers import Studio
    from pipelines.studio.runs import RunStore

    tt = TorchThread()
    where = []
    real = handlers.run

    def spy(*a, **k):
        where.append(threading.get_ident())
        return real(*a, **k)

    monkeypatch.setattr(handlers, "run", spy)
    studio = Studio(preset, store=RunStore(tmp_path / "runs", keep=2), compute=tt)
    kw = dict(prompt="a red circle moving left to right on a black background", method="none", mg_scale=0, seed=0,
              steps=2, cfg=7.5, frames=8, size=preset.default_size, eta=1.0)
    outs = list(studio.iterate(studio.generate("t2v", kw, token=studio.begin()[0])))
    assert "2 steps" in outs[-1][-1] and where == [tt.ident]
    tt.shutdown()


def test_a_runs_cleanup_is_queued_on_the_torch_thread_not_run_before_the_last_row(preset, tmp_path, monkeypatch):
    """With a torch thread, the full collection after a run is queued there (it overlaps with Gradio sending the
    last row); without one it runs inline, as on a GPU."""
    from pipelines.studio import handlers
    from pipelines.studio.handlers import Studio
    from pipelines.studio.runs import RunStore

    released = []
    monkeypatch.setattr(handlers, "_release", lambda p: released.append(threading.get_ident()))
    kw = dict(prompt="a red circle moving left to right on a black background", method="none", mg_scale=0, seed=0,
              steps=2, cfg=7.5, frames=8, size=preset.default_size, eta=1.0)
    tt = TorchThread()
    studio = Studio(preset, store=RunStore(tmp_path / "a", keep=2), compute=tt)
    list(studio.iterate(studio.generate("t2v", kw, token=studio.begin()[0])))
    tt.call(lambda: None)  # the queue is in order: once this ran, the cleanup has run
    assert released == [tt.ident]
    tt.shutdown()

    released.clear()
    inline = Studio(preset, store=RunStore(tmp_path / "b", keep=2))
    list(inline.generate("t2v", kw, token=inline.begin()[0]))
    assert released == [threading.get_ident()]
