"""Each tab's example rows (from assets/examples/) and the function that computes an example's outputs."""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from ..presets import task_default_method

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "assets" / "examples"
#: The upload fields each tab's example rows fill, in order (after the prompt).
EXAMPLE_UPLOADS = {"t2v": [], "style": ["style_image"], "audio": ["audio"],
                   "interpolate": ["first_frame", "last_frame"]}
#: The impact times (s) of the audio tab's example clip, `impacts.wav` (`scripts/make_examples.py` writes it).
EXAMPLE_IMPACT_TIMES = (0.5, 1.5)


def example_rows(task: str, examples_dir: Path = EXAMPLES_DIR, world: int = 1) -> list[list[Any]]:
    """Example rows (prompt, upload(s)..., method, mg_scale, seed); rows whose files are missing are left out.
    `tests/test_examples.py` holds each row to its suite's joint check at seeds 0-3, not at the seed it shows.
    `world` 2 (a world-2 preset, `presets.micro_world`): the style tab's example leaves the look open to a reference
    that is a look of world 2 (teal and beige wide rising diagonal stripes, 256 px); the other tabs' rows are world
    captions that world 2 parses too."""
    e = examples_dir
    m = task_default_method(task)[0]
    if task == "style" and int(world) == 2:
        rows = [["a red circle moving up", str(e / "style_look_stripes.png"), m, 0, 0]]
        return [r for r in rows if Path(r[1]).exists()]
    rows = {  # every row is a case of its tab's suite (`pipelines.evaluation.micro.example_cases`); seed 0 for all
        "t2v": [
            ["a red circle moving left to right on a black background", "none", 0, 0],
            ["a yellow square moving up on a gray background", m, 40, 0],
        ],
        "style": [  # the reference is the world's striped background, so the style suite can read the effect
            ["a blue square moving right to left on a gray background", str(e / "style_world_striped.png"), m, 0, 0],
        ],
        "audio": [
            ["a green circle bouncing on a black background", str(e / "impacts.wav"), m, 0, 0],
        ],
        "interpolate": [
            ["a blue triangle moving left to right on a gray background", str(e / "first_frame.png"),
             str(e / "last_frame.png"), m, 0, 0],
        ],
    }[task]
    return [r for r in rows if all(not isinstance(v, str) or not v.startswith(str(e)) or Path(v).exists() for v in r)]


def example_names(task: str, uploads) -> list[str]:
    """The input names an example row fills, in order."""
    return ["prompt"] + [n for n in uploads] + ["method", "mg_scale", "seed"]


#: The status of an example that could not be computed (cached like any output; `drop_failed_cache` looks for it).
EXAMPLE_FAILED = "example failed:"


def example_fn(studio, task: str, defaults: dict, names: list[str]):
    """The function Gradio caches an example with: the tab's defaults, the row's values, the last output row.
    No load notice: a cached summary is shown to every later visitor, whatever the load was at start-up.

    It runs as a job like any request (`studio.iterate`: a slot, the torch thread), so caching at start-up never
    runs beside a request. An example that fails returns a row whose status says why instead of raising: Gradio
    would stop the app's start-up for it (issue #32); the app serves, and that example shows its error."""
    from .handlers import widget_fields

    def fn(*vals):
        kw = dict(defaults)
        kw.update(dict(zip(names, vals)))
        kw = widget_fields(kw)
        last = None
        try:
            for last in studio.iterate(studio.generate(task, kw, None, busy=False)):
                pass
            if last is None or not isinstance(last[2], str):  # stopped before its video (e.g. the time cap)
                status = last[-1] if last is not None and isinstance(last[-1], str) else "no video was made"
                raise RuntimeError(status)
            return last
        except Exception as e:  # noqa: BLE001 - any error: shown in the example, start-up goes on
            message = getattr(e, "message", None) or str(e) or type(e).__name__
            _log(f"{EXAMPLE_FAILED} {task} {dict(zip(names, vals))}: {type(e).__name__}: {message}")
            if type(e).__name__ != "Error":  # not a refused request (gr.Error): the traceback helps
                traceback.print_exc()
            # preview, plot, video, report, status (the tab's outputs)
            return None, None, None, None, f"{EXAMPLE_FAILED} {message}"

    return fn


def drop_failed_cache(examples) -> bool:
    """Delete a `gr.Examples`' cache folder when a cached row is a failed example, so the next start computes it
    again instead of showing the old error for ever. Returns whether it was deleted."""
    import shutil

    cached = Path(getattr(examples, "cached_file", "") or "")
    try:
        failed = cached.is_file() and EXAMPLE_FAILED in cached.read_text(errors="replace")
    except OSError:
        return False
    if failed:
        shutil.rmtree(examples.cached_folder, ignore_errors=True)
        _log(f"dropped the cached examples in {examples.cached_folder}: one had failed; computing them again")
    return failed


def _log(msg: str) -> None:
    print(f"[gvs] {msg}", flush=True)
