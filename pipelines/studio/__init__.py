"""The studio behind `app.py`: the page, its API, the runs and their cancel flags, the handlers, history, examples.

- `layout`: `build_demo` and each tab's widgets, opened on the one table of defaults (`pipelines.request.fields`).
- `events`: each tab's API endpoints (one `request` object of named fields plus the uploads; docs/api.md) and the
  page's own private events.
- `handlers`: the `Studio` (the live preset, the run store, Generate / Compare streamed); `runs`, `history`,
  `examples`, `messages` (what a client is told), `widgets`, `gpu`, `limits`, `threads`, `compute`, `queueing`.

`app.py` only reads the command line, loads the preset and serves `layout.build_demo`; everything here but the
server can be tested without one.
"""
