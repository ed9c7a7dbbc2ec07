"""Waiting on a condition (never a fixed sleep): poll until it holds or the timeout, sized for a loaded 2-core
machine, runs out."""
from __future__ import annotations

import time


def wait_until(condition, timeout: float = 120.0, every: float = 0.1, what: str = "the condition"):
    """Return `condition()`'s first truthy value; fail after `timeout` seconds with what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)  # a poll interval, not a wait for the state: the loop re-checks the condition


def call_result(url: str, event_id: str, timeout: float = 300):
    """The final event of a Gradio `/call/<api>/<event_id>` stream: ("complete" | "error", data), or None when the
    stream ends without one."""
    import json

    import httpx

    with httpx.stream("GET", f"{url}/{event_id}", timeout=timeout) as s:
        event = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("complete", "error"):
                return event, json.loads(line[6:])
    return None
