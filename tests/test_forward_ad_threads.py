"""Issue #32: forward-mode AD levels are process-wide, so two threads inside `torch.func.jvp` at once break each other.
`forward_ad_safe` (where every jvp of the engine runs) holds one process-wide lock: two TITAN runs on two threads
never have two jvps in flight.

Deterministic: each thread's first jvp waits (up to `MEET_S`) for the other thread to reach its first jvp, so without
the lock the two are sure to overlap (the control test shows the spy sees it)."""
from __future__ import annotations

import threading

import pytest

from pipelines.guidance import forward_ad, titan
from pipelines.request import GenerationRequest, run, validate

PROMPT = "a red circle moving left to right on a black background"
MEET_S = 3.0


class JvpSpy:
    """Wraps titan's `jvp`: counts jvps in flight (the most at once) and makes the threads' first jvps meet."""

    def __init__(self, real, threads: int = 2):
        self.real = real
        self.lock = threading.Lock()
        self.in_flight = self.most = 0
        self.started = threading.Barrier(threads)
        self.first = set()

    def __call__(self, *a, **k):
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            first = threading.get_ident() not in self.first
            self.first.add(threading.get_ident())
        try:
            if first:
                try:  # the other thread's first jvp, or the timeout when a lock keeps it out
                    self.started.wait(timeout=MEET_S)
                except threading.BrokenBarrierError:
                    pass
            return self.real(*a, **k)
        finally:
            with self.lock:
                self.in_flight -= 1


def _two_titan_runs(preset):
    errors, finished = [], []

    def one(seed):
        try:
            prep = validate(GenerationRequest(task="t2v", prompt=PROMPT, method="titan", seed=seed, steps=2,
                                              frames=8), preset)
            gen = run(prep, preset)
            for _ in gen:
                pass
            finished.append(seed)
        except Exception as e:  # noqa: BLE001 - recorded and asserted on below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a TITAN run did not finish within 600 s"
    return errors, finished


def test_two_titan_runs_on_two_threads_never_overlap_their_jvps(preset, monkeypatch):
    spy = JvpSpy(titan.jvp)
    monkeypatch.setattr(titan, "jvp", spy)
    errors, finished = _two_titan_runs(preset)
    assert not errors and sorted(finished) == [0, 1], errors
    assert spy.most == 1


def test_without_the_lock_the_spy_sees_the_two_jvps_overlap(preset, monkeypatch):
    """The control: the check above can fail. With the lock replaced by a no-op, the first jvps meet (and PyTorch may
    then raise its forward-AD level error, which is why the lock exists)."""
    class NoLock:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    spy = JvpSpy(titan.jvp)
    monkeypatch.setattr(titan, "jvp", spy)
    monkeypatch.setattr(forward_ad, "FORWARD_AD_LOCK", NoLock())
    _two_titan_runs(preset)
    assert spy.most == 2


def test_the_lock_is_reentrant_and_held_for_the_whole_region():
    import torch

    lin = torch.nn.Linear(3, 3)
    with forward_ad.forward_ad_safe([lin]):
        assert forward_ad.FORWARD_AD_LOCK._is_owned()
        with forward_ad.forward_ad_region():  # a nested region on the same thread does not deadlock
            pass
        got = []
        t = threading.Thread(target=lambda: got.append(forward_ad.FORWARD_AD_LOCK.acquire(timeout=0.2)))
        t.start()
        t.join()
        assert got == [False]  # another thread is kept out while the region lasts
    assert not forward_ad.FORWARD_AD_LOCK._is_owned()


@pytest.fixture(autouse=True)
def _lock_is_free_after():
    yield
    assert forward_ad.FORWARD_AD_LOCK.acquire(timeout=5)
    forward_ad.FORWARD_AD_LOCK.release()
