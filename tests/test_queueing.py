"""The app's Gradio queue: bounded, one job per slot, and polling for work every 20 ms instead of every 1 ms."""
from __future__ import annotations

import gradio as gr

from pipelines.studio.queueing import PROGRESS_POLL_S, QUEUE_POLL_S, configure_queue


def test_the_queue_is_bounded_and_polls_slowly():
    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(lambda x: x, box, box)
    assert configure_queue(demo, 5) is True
    q = demo._queue
    assert q.max_size == 5 and demo._queue.default_concurrency_limit == 1
    # Gradio's own loops poll every 1 ms / 10 ms: ~1 100 wake-ups a second beside a run on a small CPU
    assert q.sleep_when_free == QUEUE_POLL_S and q.progress_update_sleep_when_free == PROGRESS_POLL_S
    assert 0.005 <= QUEUE_POLL_S <= 0.05 and PROGRESS_POLL_S <= 0.5  # a job still starts within a blink


def test_a_gradio_without_the_attributes_keeps_its_queue():
    class Queue:
        pass

    class Demo:
        def queue(self, **kw):
            self.kw = kw
            self._queue = Queue()

    demo = Demo()
    assert configure_queue(demo, 3) is False
    assert demo.kw == {"max_size": 3, "default_concurrency_limit": 1}
    assert not hasattr(demo._queue, "sleep_when_free")
