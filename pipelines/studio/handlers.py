"""The tabs' handlers: a `Studio` holds the live preset(s) and the run store, and streams Generate / Compare.

Each handler is a generator of output rows (one per step, then the final row). A run belongs to a token
(`pipelines.studio.runs`): the page's Generate click makes a queued run and passes its token; an API call makes its
own. Cancel names the token, so it stops that run or nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Optional

import gradio as gr

from .. import media
from ..request import RequestError, check_fields, finalize, release_memory, run, summary_text, to_request, validate
from ..request.fields import UPLOADS
from ..sampler import Cancelled
from ..ui import StatusTracker, busy_notice, reward_plot_data, series_name
from .messages import internal_error, log, scrub
from .limits import Deadline, describe_cap
from .runs import Run, RunStore
from .threads import describe_threads

DISPLAY_SIDE = 384  # mp4s of tiny (micro) frames are upscaled nearest-neighbour to at least this
#: x264 preset of the app's mp4s: a 384-px upscale of a micro video took 70 ms with x264's default `medium` against
#: 47 ms with `veryfast`, at the same quality (PSNR 46.3 against 46.8 dB) and size (18 kB) (`bench/RESULTS_APP.md`)
DISPLAY_X264_PRESET = "veryfast"
PREVIEW_TILE = 128  # each frame of the live preview grid, px (micro frames upscaled, 512² frames downscaled)
#: A running job streams a row (preview, plot, status) at most this often, plus its first step and each new phase
#: (then the final row); `GVS_STREAM_EVERY_S` overrides it (0: every step). Each row costs the server (and the client
#: beside it on a small machine) CPU time the run's kernels then lack: a 20-step micro run took 1.41x the CLI's time
#: streaming every 0.25 s, 1.31x every 0.5 s and 1.23x with first and last rows only (`bench/RESULTS_APP.md`).
STREAM_EVERY_S = 0.5
ENDPOINTS = {
    "t2v": "text_to_video",
    "style": "style_transfer",
    "audio": "audio_alignment",
    "interpolate": "frame_interpolation",
}


def widget_fields(kw: dict) -> dict:
    """The page's widget values (method parameters as `<method>__<name>`) as the request's named fields: the
    chosen method's parameters under `params`, the other methods' dropped (with `paper` on, also those the paper sets:
the checkbox's values are the paper's). Named fields pass through unchanged."""
    if not any("__" in k for k in kw):
        return dict(kw)
    method = kw.get("method")
    out = {k: v for k, v in kw.items() if "__" not in k}
    out["params"] = {k.split("__", 1)[1]: v for k, v in kw.items() if k.startswith(f"{method}__") and v is not None}
    if out.get("paper") is True:  # the "paper settings" checkbox: the paper's values replace the page's sliders
        from ..guidance.paper import paper_settings

        out["params"] = {k: v for k, v in out["params"].items() if k not in paper_settings(method)}
    return out


def stream_every() -> float:
    """Seconds between streamed rows: `GVS_STREAM_EVERY_S` or `STREAM_EVERY_S` (a bad value is named and ignored)."""
    raw = os.environ.get("GVS_STREAM_EVERY_S")
    if raw is None or raw == "":
        return STREAM_EVERY_S
    try:
        value = float(raw)
        if value >= 0 and value == value:
            return value
    except ValueError:
        pass
    log(f"GVS_STREAM_EVERY_S={raw!r} is not a number of seconds >= 0; using {STREAM_EVERY_S}")
    return STREAM_EVERY_S


def fail(field: str, message: str):
    """A user error: one line in the server log (no traceback), the message (field named once) in the page / API."""
    message = scrub(message)
    if message.startswith(f"{field}:"):
        message = message[len(field) + 1:].lstrip()
    log(f"refused: {field}: {message}")
    raise gr.Error(f"{field}: {message}", print_exception=False)


class Studio:
    """The live preset (loaded once), the run store and the handlers shared by the four tabs."""

    def __init__(self, preset, pool=None, store: Optional[RunStore] = None, stream_every_s: Optional[float] = None,
                 compute=None, model_dir=None, max_job_s: float = 0.0, max_job_why: str = "", threads=None):
        from ..guidance import METHODS, method_params

        self.preset = preset
        self.pool = pool  # a pipelines.pool.PipelinePool of presets, one per GPU (None: this preset only)
        self.store = store if store is not None else RunStore(_default_root())
        self.methods = list(METHODS)
        self.specs = {m: method_params(m) for m in self.methods}
        self.trackers: dict[str, StatusTracker] = {}  # token -> tracker, in the process that runs it
        #: seconds between streamed rows of a running job (0: every step); see `_stream`
        self.stream_every = stream_every() if stream_every_s is None else float(stream_every_s)
        #: a `pipelines.studio.compute.TorchThread` the app runs every handler's steps on (CPU presets), or None
        self.compute = compute
        #: the folder whose models web clients may name (`app.py --model-dir`); None: the Model fields are off
        self.model_dir = Path(model_dir).resolve() if model_dir else None
        #: the wall-clock cap of one job in seconds (0: none) and where it comes from (`pipelines.studio.limits`)
        self.max_job_s, self.max_job_why = float(max_job_s or 0), max_job_why or "no cap set"
        #: a `pipelines.studio.threads.ThreadPolicy` choosing each run's torch threads, or None (left as they are)
        self.threads = threads
        # one job per slot, whoever starts it (a request, an example cached at start-up or on a click): see `iterate`
        self._slots = threading.BoundedSemaphore(self.slots)

    def iterate(self, rows):
        """A handler's rows, run as one job: it waits for a free slot (Gradio's queue bounds requests, but not the
        examples Gradio caches beside them), and each step runs on the studio's torch thread when it has one."""
        return self._in_a_slot(self.compute.iterate(rows) if self.compute is not None else rows)

    def _in_a_slot(self, rows):
        with self._slots:  # released when the rows end, fail or are closed (a cancel)
            yield from rows

    def _start_job(self, busy: bool = True) -> tuple[Deadline, str]:
        """At a job's start (on the thread that runs it): its deadline, and the line announcing its time cap and
        torch threads (chosen now from the free cores). Examples (`busy=False`) get no line: a cached summary is
        shown to later visitors, whatever the load was then."""
        parts = [describe_cap(self.max_job_s, self.max_job_why)]
        if self.threads is not None:
            parts.append(describe_threads(*self.threads.apply()))
        return Deadline(self.max_job_s), (" · ".join(parts) if busy else "")

    @property
    def slots(self) -> int:
        """Generations at once: one per pooled GPU (one on CPU)."""
        return len(self.pool) if self.pool is not None else 1

    # --- runs and cancel -----------------------------------------------------------------------------------------
    def begin(self) -> tuple[str, str]:
        """The page's Generate / Compare click: a queued run; (its token, the status line to show)."""
        run_ = self.store.new("queued")
        return run_.token, ("queued: waiting for the generation slot (this line updates when it starts); "
                            + describe_cap(self.max_job_s, self.max_job_why))

    def cancel(self, token):
        """Cancel the run of `token` (queued or running); a status line, or `gr.skip()` when there is nothing to
        cancel — a Cancel while idle changes nothing, now or later."""
        msg = self.store.cancel(token)
        return gr.skip() if msg is None else msg

    def failure_text(self, token) -> str:
        """The status line of a run that ended with an error (a refused request, named in the message)."""
        run_ = self.store.get(token)
        err = run_.path("error") if run_ is not None else None
        text = err.read_text().strip() if err is not None and err.exists() else ""
        return f"not run: {scrub(text)}" if text else "not run: see the message above"

    def result_video(self, token) -> Optional[str]:
        """The main video of a finished run (a Compare's guided video)."""
        run_ = self.store.get(token)
        if run_ is None or run_.state != "done" or not run_.path("result.json").exists():
            return None
        return json.loads(run_.path("result.json").read_text()).get("video")

    def _claim(self, token) -> Run:
        """The run a handler executes: the page's queued run of `token`, or a new one (API calls, examples)."""
        run_ = self.store.get(token) if token else None
        if run_ is None or run_.state != "queued":
            run_ = self.store.new("queued")
        return run_

    @contextlib.contextmanager
    def _preset(self):
        """The preset a run uses: a free GPU's from the pool (given back on finish, error or cancel), or the one."""
        if self.pool is None or len(self.pool) <= 1:
            # one slot: Gradio's concurrency limit already runs one generation at a time, and a run cancelled from
            # the API (its generator left suspended until collected) must not keep a pool slot from the next one
            yield self.preset
            return
        with self.pool.get() as (_device, preset):
            yield preset

    def with_model(self, preset, kw: dict):
        """The "Model" accordion: `video_parts` (a trained `final/` folder) and `lora` (`NAME[:scale]`, several
        separated by commas) under the preset's image model (`pipelines.model_options`, cached). Names are taken
        inside `self.model_dir` only (`parse_options(root=...)`); without one the fields are off."""
        vp, lora = (str(kw.get("video_parts") or "")).strip(), (str(kw.get("lora") or "")).strip()
        if not vp and not lora:
            return preset
        if self.model_dir is None:
            fail("video_parts" if vp else "lora", "loading models is off on this server (its operator can start it "
                                                  "with --model-dir DIR to offer the models inside DIR); leave the "
                                                  "field empty")
        from ..model_options import ModelOptionError, parse_options, with_model

        try:
            return with_model(preset, parse_options(vp or None, lora, root=self.model_dir))
        except ModelOptionError as e:
            fail(e.field, e.message)

    # --- request -------------------------------------------------------------------------------------------------
    def prepare(self, task: str, kw: dict, method: Optional[str] = None, preset=None):
        """`kw`: the request's named fields (`pipelines.request.fields`; any left out take the tab's defaults) and
        the task's uploads; `method` replaces the chosen method (and its parameters: that method's defaults)."""
        uploads = {k: kw[k] for k in UPLOADS if kw.get(k) is not None}
        named = {k: v for k, v in kw.items() if k not in UPLOADS}
        if method is not None:
            named.update(method=method, params={})
        preset = preset or self.preset
        try:
            return validate(to_request(task, check_fields(task, named, preset), uploads), preset)
        except RequestError as e:
            fail(e.field, e.message)

    # --- one generation, streamed ----------------------------------------------------------------------------------
    def _stream(self, prepared, run_: Run, tracker: StatusTracker, rows: list, progress, series: dict, preset,
                label: str = "run", deadline: Optional[Deadline] = None, note: str = ""):
        """Iterate one generation: yields (preview, plot data, status) as it goes; returns the finished Generation.

        A row is streamed for the first step, each new phase and otherwise at most every `every` seconds
        (`self.stream_every`): each row costs about 0.1 s in Gradio's queue, which doubled a 1 s micro run when every
        step was streamed. The tracker follows every step; the run's progress text (what a Cancel reports, a
        file) is written with each streamed row. The run stops at a Cancel or past `deadline`, between steps:
        the `Cancelled` raised then carries `.preview`, the last step's preview (saved if it was not streamed)."""
        every = self.stream_every
        stop = run_.stop_requested if deadline is None else (lambda: run_.stop_requested() or deadline.expired())
        gen = run(prepared, preset, should_stop=stop)
        preview, pending, last, phase = None, None, None, None
        for ev in self._keeping_preview(gen, run_, label):
            if ev.final:  # consumed, not broken off: a generator closed early releases memory a second time
                continue
            status = tracker.update(ev)
            if ev.phase == "sample":
                rows.append(None if ev.reward is None else float(ev.reward))
            if ev.preview is not None:
                pending = ev
            now = time.perf_counter()
            # no row for the last step: the final row (video, final frames, summary) follows it within ~0.05 s
            if not (last is None or ev.phase != phase or now - last >= every):
                continue
            last, phase = now, ev.phase
            # what a Cancel from any process reports (a file write, about 1 ms: once a streamed row, not every step)
            run_.set_progress(f"{tracker.phase} step {tracker.done}/{tracker.total}")
            if progress is not None:
                progress(tracker.progress(), desc=f"{tracker.prefix}{tracker.phase}")
            if pending is not None:
                preview = run_.path(f"preview-{label}-{pending.phase}-{pending.index:03d}.png")
                media.preview_grid(pending.preview, PREVIEW_TILE).save(preview, compress_level=1)
                preview, pending = str(preview), None
            # the plot's rows so far (`series`, which holds `rows`): drawn by the browser, under 1 ms here
            yield (preview if preview is not None else gr.skip()), reward_plot_data(series), (
                f"{status}\n{note}" if note else status)
        return gen

    @classmethod
    def _keeping_preview(cls, gen, run_: Run, label: str):
        """`gen`'s events; a stop (`Cancelled`) raised through here carries `.preview`, the last step's preview
        saved as a file (None before any)."""
        last = None
        try:
            for ev in gen:
                if ev.preview is not None and not ev.final:
                    last = ev
                yield ev
        except Cancelled as e:
            e.preview = cls._save_preview(run_, label, last) if last is not None else None
            raise

    @staticmethod
    def _save_preview(run_: Run, label: str, ev) -> str:
        path = run_.path(f"preview-{label}-{ev.phase}-{ev.index:03d}.png")
        media.preview_grid(ev.preview, PREVIEW_TILE).save(path, compress_level=1)
        return str(path)

    def _stopped(self, run_: Run, tracker: StatusTracker, deadline: Optional[Deadline]) -> str:
        """A stopped run's state and status line: past its time cap, or cancelled."""
        if deadline is not None and deadline.expired() and not run_.stop_requested():
            run_.set_state("timed_out")
            where = "optimisation iteration" if tracker.phase == "optimize" else "step"
            msg = (f"{tracker.prefix}stopped: the job reached its time cap of {deadline.seconds:g} s "
                   f"({self.max_job_why}) at {where} {tracker.done}/{tracker.total} after {deadline.elapsed():.1f} s; "
                   "the preview shows the last step reached (no video was written). Fewer steps, frames or "
                   "iterations fit the cap.")
        else:
            run_.set_state("cancelled")
            msg = tracker.cancelled()
        log(msg)
        return msg

    @staticmethod
    def _relay(stream, skips: int):
        """Yield each (preview, plot data, status) of `stream` as an output row with `skips` untouched outputs between
        the plot and the status; return the stream's finished Generation."""
        while True:
            try:
                preview, fig, status = next(stream)
            except StopIteration as stop:
                return stop.value
            yield (preview, fig, *[gr.skip()] * skips, status)

    @staticmethod
    def _write(run_: Run, task: str, gen, tag: str = ""):
        p = gen.prepared
        stem = f"{ENDPOINTS[task]}_{p.request.method}_seed{p.seed}{tag}"
        mp4, js, png = run_.path(f"{stem}.mp4"), run_.path(f"{stem}.json"), run_.path(f"{stem}.png")
        report = finalize(gen, mp4, js, min_side=DISPLAY_SIDE, x264_preset=DISPLAY_X264_PRESET)
        # zlib level 1: the grid is a few flat-coloured tiles (23 ms at the default level 6, 7 ms at 1)
        media.preview_grid(gen.final_event.frames, PREVIEW_TILE).save(png, compress_level=1)
        return report, mp4, js, png

    @staticmethod
    def _result(run_: Run, report_path, video_path, image_path) -> None:
        """What the history shows of a finished run (read by `pipelines.studio.history.remember`)."""
        (run_.path("result.json")).write_text(json.dumps(
            {"report": str(report_path), "video": str(video_path), "image": str(image_path)}))

    def generate(self, task: str, kw: dict, progress=None, token: Optional[str] = None, busy: bool = True):
        """Generate: one guided run, streamed. Rows: (preview, plot, video, report, status)."""
        run_ = self._claim(token)
        with self._lifecycle(run_, 5) as cancelled_row:
            if cancelled_row is not None:
                yield cancelled_row
                return
            with self._preset() as preset:
                yield from self._generate(task, kw, progress, run_, self.with_model(preset, kw), busy)

    def _generate(self, task: str, kw: dict, progress, run_: Run, preset, busy: bool):
        prepared = self.prepare(task, kw, preset=preset)
        deadline, job = self._start_job(busy)
        notes = list(prepared.notices)
        load = busy_notice() if busy else None
        if load:
            notes.append(load)
        for n in notes:
            gr.Warning(scrub(n))
        tracker = self._track(run_, StatusTracker())
        rows: list = []
        series = {series_name(prepared.request.method): rows}  # the plot's line: "guided", or "unguided" for none
        gen = None
        try:
            stream = self._stream(prepared, run_, tracker, rows, progress, series, preset, deadline=deadline, note=job)
            gen = yield from self._relay(stream, 2)
            report, mp4, js, png = self._write(run_, task, gen)
            if load:
                report["notices"] = list(report["notices"]) + [load]
            self._result(run_, js, mp4, png)
            run_.set_state("done")
            yield (str(png), reward_plot_data(series), str(mp4), str(js),
                   summary_text(report) + (f"\n{job}" if job else ""))
        except Cancelled as e:
            msg = self._stopped(run_, tracker, deadline)
            preview = getattr(e, "preview", None)
            yield (preview or gr.skip()), reward_plot_data(series), gr.skip(), gr.skip(), msg
        finally:  # also on an API cancel (GeneratorExit at a yield): drop the run's tensors now
            self.trackers.pop(run_.token, None)
            del gen

    def compare(self, task: str, kw: dict, progress=None, token: Optional[str] = None):
        """The same request unguided (method none) and guided: same seed, η and everything else.
        Rows: (preview, plot, unguided video, guided video, table, report, status)."""
        run_ = self._claim(token)
        with self._lifecycle(run_, 7) as cancelled_row:
            if cancelled_row is not None:
                yield cancelled_row
                return
            with self._preset() as preset:
                yield from self._compare(task, kw, progress, run_, self.with_model(preset, kw))

    def _compare(self, task: str, kw: dict, progress, run_: Run, preset):
        from ..compare import task_metric

        guided = self.prepare(task, kw, preset=preset)
        if guided.request.method == "none":
            fail("method", "choose a guidance method to compare with the unguided run (the method is `none`)")
        base = self.prepare(task, {**kw, "seed": guided.seed}, method="none", preset=preset)
        deadline, job = self._start_job()  # one cap for both runs
        for n in guided.notices:
            gr.Warning(scrub(n))
        series: dict = {"unguided": [], "guided": []}  # the method is named in the table beside the plot
        results = {}
        tracker = None
        try:
            for label, prepared, rows in (("unguided", base, series["unguided"]),
                                          ("guided", guided, series["guided"])):
                tracker = self._track(run_, StatusTracker(prefix=f"{label}: "))
                gen = yield from self._relay(self._stream(prepared, run_, tracker, rows, progress, series, preset, label,
                                                          deadline, job), 4)
                report, mp4, js, png = self._write(run_, task, gen, tag=f"_{label}")
                metric = task_metric(gen.prepared, gen.final_event.frames)
                results[label] = (report, mp4, js, png, metric)
                del gen
            table, data = compare_table(results)
            out = run_.path(f"{ENDPOINTS[task]}_compare_seed{guided.seed}.json")
            out.write_text(json.dumps(data, indent=2) + "\n")
            g = results["guided"]
            self._result(run_, g[2], g[1], g[3])
            run_.set_state("done")
            yield (str(g[3]), reward_plot_data(series), str(results["unguided"][1]), str(g[1]), table, str(out),
                   summary_text(g[0]) + f"\n{job}")
        except Cancelled as e:
            msg = self._stopped(run_, tracker, deadline)
            preview = getattr(e, "preview", None)
            yield (preview or gr.skip()), reward_plot_data(series), gr.skip(), gr.skip(), gr.skip(), gr.skip(), msg
        finally:
            self.trackers.pop(run_.token, None)

    def _track(self, run_: Run, tracker: StatusTracker) -> StatusTracker:
        tracker.key = run_.token
        self.trackers[run_.token] = tracker
        return tracker

    @contextlib.contextmanager
    def _lifecycle(self, run_: Run, width: int):
        """Mark the run running (or yield the row of a run cancelled while queued), and always leave it finished:
        `failed` on a refused request or an error, `cancelled` when the API cancels it at a yield."""
        if run_.stop_requested():
            run_.set_state("cancelled")
            yield (*[gr.skip()] * (width - 1), "cancelled before it started (nothing was written)")
            return
        run_.set_state("running")
        try:
            yield None
        except GeneratorExit:
            run_.set_state("cancelled")
            raise
        except Exception as e:
            run_.set_state("failed")
            # a refused request keeps its field-named message; anything else is logged with its traceback under an
            # id, and the client (the API's error, the page's status line) gets the short message with that id
            err = e if isinstance(e, gr.Error) else internal_error(e, "run")
            try:
                run_.path("error").write_text(scrub(getattr(err, "message", None) or str(err)))
            except OSError:
                pass
            if err is e:
                raise
            raise err from None
        except BaseException:
            run_.set_state("failed")
            raise
        finally:
            if run_.state == "running":  # left without a final state (e.g. closed before its first row)
                run_.set_state("cancelled")
            if self.compute is not None:  # after this step, on the torch thread, while Gradio sends the last row
                self.compute.submit(_release, self.preset)
            else:
                _release(self.preset)


def _release(preset) -> None:
    """Drop a finished run's objects. On a GPU: `release_memory` (a full collection, CUDA's cache emptied).
    On a CPU, a full collection too, but cheap: the first one freezes what is alive then (the models, the app:
    about 550 000 objects that cost 0.28 s to scan), so later ones scan only what runs made. A young-generation
    collection alone left objects in reference cycles alive (then each run's matplotlib reward figures): RSS grew
    by ~1 MB per run."""
    import gc

    if getattr(getattr(preset, "device", None), "type", "cpu") == "cuda":
        release_memory()
        return
    gc.collect()
    if not gc.get_freeze_count():
        gc.freeze()


def compare_table(results: dict) -> tuple[str, dict]:
    """The markdown table of a Compare and the data saved beside it."""
    def fmt(x):
        return "n/a" if x is None else f"{x:.3g}"

    rows = ["| | method | reward after | metric | time |", "|---|---|---|---|---|"]
    data = {}
    for label in ("unguided", "guided"):
        report, _, _, _, metric = results[label]
        rows.append(f"| **{label}** | `{report['method']}` | {fmt(report.get('reward_after'))} | "
                    f"{metric.text if metric else 'n/a'} | {report['seconds']:.1f} s |")
        data[label] = {"report": report, "metric": None if metric is None else {
            "name": metric.name, "value": metric.value, "text": metric.text,
            "higher_is_better": metric.higher_is_better}}
    g, u = results["guided"][0], results["unguided"][0]
    head = (f"**Same seed {g['seed']} and η {g['eta']:g}**; reward: {g.get('reward_name') or 'task reward'} "
            "(higher is better).")
    if g.get("reward_after") is not None and u.get("reward_after") is not None:
        head += f" Guidance changed the reward by {g['reward_after'] - u['reward_after']:+.3g}."
    return head + "\n\n" + "\n".join(rows), data


def _default_root() -> Path:
    """Run folders live inside Gradio's cache folder, so Gradio serves them in place (no copy) and its
    `delete_cache` and our pruning see the same files. `GVS_RUNS_DIR` overrides."""
    import os

    from gradio.utils import get_upload_folder

    return Path(os.environ.get("GVS_RUNS_DIR") or Path(get_upload_folder()) / "gvs-runs")
