"""One thread for all of the app's torch work on a CPU: a run's steps, model loading, example caching.

Why: PyTorch's CPU kernels use GNU OpenMP, which keeps a team of threads per calling thread. Once two threads have
run parallel regions (Gradio calls a handler's `next()` from whichever AnyIO worker is free, and the model was
loaded on the main thread), libgomp counts more threads than cores and stops spin-waiting between regions, and
every kernel of every thread runs about 2x slower: a 20-step micro run took 2.9 s on a worker thread against 1.5 s
on the thread that had loaded the model (`bench/RESULTS_APP.md`). Routing all of it through one long-lived thread
keeps one team. On a GPU the kernels are CUDA launches and several runs may share the process (a pool of GPUs), so
the app uses this only for CPU presets.
"""
from __future__ import annotations

import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


class TorchThread:
    """`call(fn, ...)` runs `fn` on the one thread and returns its result (raising its error); `iterate(gen)` yields
    `gen`'s items with each step run there. The caller's context variables travel with each call (Gradio finds its
    request, `gr.Warning` and `gr.Progress` through them). A call made on the thread itself runs inline, and a forked
    child (ZeroGPU) gets a fresh thread."""

    def __init__(self, name: str = "gvs-torch"):
        self.name = name
        self._lock = threading.Lock()
        self._executor = None
        self._pid = None
        self._ident = None

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
                self._pid = os.getpid()
                self._ident = self._executor.submit(threading.get_ident).result()
            return self._executor

    @property
    def ident(self) -> int:
        """The thread's id (starting it if needed)."""
        self._pool()
        return self._ident

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        pool = self._pool()
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        ctx = contextvars.copy_context()
        return pool.submit(ctx.run, fn, *args, **kwargs).result()

    def submit(self, fn: Callable[..., T], *args, **kwargs):
        """Queue `fn` on the thread and return its Future at once (e.g. cleanup after a run, which then overlaps
        with Gradio sending the run's last row instead of delaying it). From the thread itself, it runs after the
        work in hand."""
        return self._pool().submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def iterate(self, gen: Iterator[T]) -> Iterator[T]:
        """`gen`'s items, each `next` run on the thread; closing this (a cancel at a yield) closes `gen` there."""
        try:
            while True:
                item = self.call(next, gen, _END)
                if item is _END:
                    return
                yield item
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                self.call(close)

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._executor = None


__all__ = ["TorchThread"]
