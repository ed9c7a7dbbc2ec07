"""Gradio's queue for the app: bounded, one generation per slot, and polling for work slowly enough to leave the
CPU to the run.

Gradio's queue loop wakes every 1 ms (Linux; 50 ms on Windows) to look for a job to start, and its progress loop every
10 ms, for as long as the server lives, a run in progress included. On a 2-core machine those ~1 100 wake-ups a
second take CPU time from the run's OpenMP kernels and from any other process: a 20-step micro run through the app
took 1.95 s with Gradio's 1 ms poll against 1.80 s at 50 ms (CLI 1.46 s), and in another window 1.80 s at 10 ms
against 1.75 s at 20 ms (CLI 1.40 s) (`bench/RESULTS_APP.md`, 2026-12-07, bbf079c). A job now waits at most `QUEUE_POLL_S`
to start and the progress bar updates every `PROGRESS_POLL_S`; the app streams a row at most every 0.5 s anyway.
"""
from __future__ import annotations

#: seconds between the queue's looks for a job to start (Gradio's own: 0.001)
QUEUE_POLL_S = 0.02
#: seconds between progress messages (Gradio's own: 0.01)
PROGRESS_POLL_S = 0.25


def configure_queue(demo, max_size: int, concurrency_limit: int = 1, queue_poll_s: float = QUEUE_POLL_S,
                    progress_poll_s: float = PROGRESS_POLL_S) -> bool:
    """`demo.queue(...)` with the app's bounds, then the polling intervals above; returns whether they were set
    (False, with the queue left as Gradio made it, when a Gradio release no longer has these attributes)."""
    demo.queue(max_size=max_size, default_concurrency_limit=concurrency_limit)
    queue = getattr(demo, "_queue", None)
    if queue is None or not hasattr(queue, "sleep_when_free") or not hasattr(queue,
                                                                               "progress_update_sleep_when_free"):
        return False
    queue.sleep_when_free = float(queue_poll_s)
    queue.progress_update_sleep_when_free = float(progress_poll_s)
    return True


__all__ = ["PROGRESS_POLL_S", "QUEUE_POLL_S", "configure_queue"]
