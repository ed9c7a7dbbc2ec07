"""A tab's events: its two API endpoints of named fields, the page's buttons, history and examples.

The API: `/<endpoint>` and `/<endpoint>_compare` (`handlers.ENDPOINTS`) take `request`, one object of named fields
(`pipelines.request.fields`: any left out take the tab's defaults; docs/api.md), and the tab's uploads as file
inputs. The page's own events are private: they send the widgets' values, turned into the same named fields.
"""
from __future__ import annotations

import inspect
import random
from types import SimpleNamespace

import gradio as gr

from ..presets import micro_world
from ..request import MAX_SEED, RequestError, check_fields, field_defaults, summary_text
from ..request.fields import TASK_UPLOADS, parse_fields_object
from ..ui import reward_plot_data, series_name
from . import history as hist_mod
from .examples import drop_failed_cache, example_fn, example_names, example_rows
from .gpu import gpu_decorator
from .handlers import ENDPOINTS, Studio, fail, widget_fields
from .widgets import RANGE_PARAMS, UPLOADS, Json, check_upload, range_bounds

API_FIELDS = "request"  # the name of the API's object of named fields


def _signature(fn, params: list[inspect.Parameter], name: str):
    """`fn` with the parameters Gradio lists for the API (its request and progress arguments last)."""
    fn.__signature__ = inspect.Signature(params + [
        inspect.Parameter("http", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request),
        inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress(track_tqdm=False)),
    ])
    fn.__annotations__ = {"http": gr.Request}
    fn.__name__ = name
    return fn


def _split(values: list) -> tuple[list, object]:
    """The handler's values without Gradio's trailing (request, progress); the progress tracker."""
    progress = values.pop() if values and isinstance(values[-1], gr.Progress) else None
    values.pop()  # gr.Request
    return values, progress


def api_handler(studio: Studio, task: str, fn, name: str, compare: bool = False):
    """An API endpoint: (request: named fields, *uploads) -> the rows of `fn` (`studio.generate` / `compare`)."""
    uploads = list(TASK_UPLOADS[task])

    @gpu_decorator([API_FIELDS] + uploads, compare)
    def handler(*values):
        values, progress = _split(list(values))
        try:  # checked before the run: a bad field is named at once, no run is made
            data = parse_fields_object(values[0], API_FIELDS)
            check_fields(task, data, studio.preset, API_FIELDS)
        except RequestError as e:
            fail(e.field, e.message)
        kw = {**data, **{k: v for k, v in zip(uploads, values[1:])}}
        yield from studio.iterate(fn(task, kw, progress))

    params = [inspect.Parameter(API_FIELDS, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
    params += [inspect.Parameter(u, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for u in uploads]
    return _signature(handler, params, name)


def page_handler(studio: Studio, task: str, fn, name: str, names: list[str], compare: bool = False,
                 with_token: bool = True):
    """A page event: the widgets' values (`names`, then the run's token) -> the rows of `fn`."""
    @gpu_decorator(names, compare)
    def handler(*values):
        values, progress = _split(list(values))
        tok = values.pop() if with_token else None
        yield from studio.iterate(fn(task, widget_fields(dict(zip(names, values))), progress, token=tok))

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names]
    if with_token:
        params.append(inspect.Parameter("token", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None))
    return _signature(handler, params, name)


def wire(studio: Studio, t: SimpleNamespace, cache_examples: str) -> None:
    """Connect one tab's widgets (`layout.build_tab`) to the studio."""
    task, named = t.task, t.named
    names = list(named)
    inputs = [named[n] for n in names]
    outputs = [t.preview, t.plot, t.video, t.report, t.status]
    cmp_outputs = [t.preview, t.plot, t.base_video, t.guided_video, t.cmp_table, t.report, t.status]
    gpu = dict(concurrency_id="gpu", concurrency_limit=studio.slots, show_progress="minimal")
    private = dict(queue=False, api_visibility="private")
    endpoint = ENDPOINTS[task]

    # ---- the API: named fields (one object, shown with the tab's defaults in /gradio_api/info) and the uploads
    fields = Json(value=field_defaults(task, studio.preset), visible=False, field=API_FIELDS,
                  label="request: named fields (docs/api.md); any left out take these defaults")
    api_inputs = [fields] + [named[u] for u in TASK_UPLOADS[task]]
    t.api_go.click(api_handler(studio, task, studio.generate, endpoint), inputs=api_inputs, outputs=outputs,
                   api_name=endpoint, **gpu)
    t.api_cmp.click(api_handler(studio, task, studio.compare, f"{endpoint}_compare", compare=True),
                    inputs=api_inputs, outputs=cmp_outputs, api_name=f"{endpoint}_compare", **gpu)

    # ---- the page: a click makes a queued run (its token; the status says queued), then runs it
    def remember(hist, tok):
        got = hist_mod.remember_run(hist, tok, studio.store)
        return got if got is not None else (gr.skip(), gr.skip())

    def remember_shown(hist, report_value, video_value, shown_value):
        """A cached example: the components' raw values (`preprocess=False`), no run token."""
        got = hist_mod.remember_shown(hist, report_value, video_value, shown_value)
        return got if got is not None else (gr.skip(), gr.skip())

    def result_video(tok):
        v = studio.result_video(tok)
        return v if v else gr.skip()

    ui_go = t.go.click(studio.begin, None, [t.token, t.status], **private).then(
        page_handler(studio, task, studio.generate, f"{endpoint}_page", names), inputs=inputs + [t.token],
        outputs=outputs, api_visibility="private", show_progress_on=[t.video], **gpu)
    ui_go.success(remember, [t.history, t.token], [t.history, t.gallery], **private)
    ui_go.failure(studio.failure_text, t.token, t.status, **private)
    t.go.click(lambda: gr.update(visible=False), None, t.cmp_group, **private)
    ui_cmp = t.cmp_btn.click(studio.begin, None, [t.token, t.status], **private).then(
        page_handler(studio, task, studio.compare, f"{endpoint}_compare_page", names, compare=True),
        inputs=inputs + [t.token], outputs=cmp_outputs, api_visibility="private",
        show_progress_on=[t.guided_video], **gpu)
    ui_cmp.success(result_video, t.token, t.video, **private).then(remember, [t.history, t.token],
                                                                    [t.history, t.gallery], **private)
    ui_cmp.failure(studio.failure_text, t.token, t.status, **private)
    t.cmp_btn.click(lambda: gr.update(visible=True), None, t.cmp_group, **private)
    t.stop.click(studio.cancel, t.token, t.status, **private)
    t.dice.click(lambda: random.randint(0, MAX_SEED), None, named["seed"], **private)

    def show_method(m):
        return ([gr.update(visible=(k == m and bool(studio.specs[k]))) for k in t.main_groups]
                + [gr.update(visible=(k == m and any(s.name in RANGE_PARAMS for s in studio.specs[k])))
                   for k in t.range_groups])

    named["method"].change(show_method, named["method"], list(t.main_groups.values()) + list(t.range_groups.values()),
                           **private)

    def bound_ranges(steps):
        try:
            steps = int(steps)
        except (TypeError, ValueError):
            return [gr.skip() for _ in t.range_sliders]
        return [gr.update(minimum=range_bounds(n, steps)[0], maximum=range_bounds(n, steps)[1])
                for n, _ in t.range_sliders]

    if t.range_sliders:
        named["steps"].change(bound_ranges, named["steps"], [w for _, w in t.range_sliders], **private)

    if t.micro:
        from ..micro.world import caption_notice

        world = micro_world(studio.preset)  # the prompt help of the world the weights were trained on

        def prompt_hint(text):
            note = caption_notice(text, world=world) if text and text.strip() else None
            return f"⚠️ {note}." if note else ""

        named["prompt"].change(prompt_hint, named["prompt"], t.hint, show_progress="hidden", **private)

    for field in UPLOADS:
        if field in named:
            listeners = [named[field].upload] + ([named[field].stop_recording] if field == "audio" else [])
            for listen in listeners:
                listen(lambda p, f=field: check_upload(p, f), named[field], [named[field], t.status],
                       preprocess=False, show_progress="hidden", **private)

    # ---- history: every finished run of this browser tab, newest first; a click reloads its settings
    settable = [n for n in names if n not in UPLOADS]

    def reload(hist, evt: gr.SelectData):
        got = hist_mod.reload(hist, evt.index)
        if got is None:
            return [gr.skip()] * (len(settable) + 5)
        settings, h, rep = got
        fig = reward_plot_data({series_name(rep.get("method", "none")): rep.get("reward_per_step") or []})
        return ([settings[n] if n in settings else gr.skip() for n in settable]
                + [h["video"], h["report"], summary_text(rep), fig, h["image"]])

    t.gallery.select(reload, [t.history], [named[n] for n in settable] + [t.video, t.report, t.status, t.plot,
                                                                          t.preview], **private)

    # ---- examples: cached (eager / lazy) show their outputs at once; not cached, a click fills and generates
    rows = example_rows(task, world=micro_world(studio.preset) or 1)  # a world-2 style example leaves the look open
    if rows:
        ex_names = example_names(task, [n for n in UPLOADS if n in named])
        defaults = {n: getattr(c, "value", None) for n, c in named.items()}
        cached = cache_examples in ("eager", "lazy")
        examples = gr.Examples(rows, inputs=[named[n] for n in ex_names], outputs=outputs,
                               fn=example_fn(studio, task, defaults, ex_names),
                               cache_examples=cached, cache_mode=cache_examples if cached else None,
                               label="Examples (click one: its video appears)", api_name=False,
                               examples_per_page=10, elem_id=f"{task}-examples")
        if cached:
            drop_failed_cache(examples)  # a failed example of an earlier start is computed again
        shown = [t.history, t.report, t.video, t.preview]
        if cached:
            examples.load_input_event.then(remember_shown, shown, [t.history, t.gallery], preprocess=False, **private)
        else:
            ex_ev = examples.load_input_event.then(
                page_handler(studio, task, studio.generate, f"{endpoint}_example", names, with_token=False),
                inputs=inputs, outputs=outputs, api_visibility="private", show_progress_on=[t.video], **gpu)
            ex_ev.success(remember_shown, shown, [t.history, t.gallery], preprocess=False, **private)
