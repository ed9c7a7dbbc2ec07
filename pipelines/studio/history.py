"""A browser tab's run history: the finished runs it shows (newest first), their captions, and reloading one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .runs import RunStore

HISTORY_SIZE = 8  # runs kept in a browser tab's history gallery
#: Report fields restored into the widgets of the same name when a history entry is clicked.
RESTORED_FIELDS = ("prompt", "negative_prompt", "method", "mg_scale", "cfg_schedule", "eta", "seed", "steps", "cfg",
                   "frames", "size", "interpolation_mode", "t2v_reward")


def settings_from_report(report: dict) -> dict:
    """Widget name -> value from a JSON report (method parameters as `<method>__<name>`)."""
    out = {k: report[k] for k in RESTORED_FIELDS if k in report and report[k] is not None}
    out["paper"] = bool(report.get("paper", False))  # a report from before the switch ran the shipped defaults
    if report.get("task") == "t2v":  # the report names a reward prompt only when one was given
        out["reward_prompt"] = report.get("reward_prompt") or ""
    model = report.get("model") or {}  # the "Model" accordion: empty for the preset's own model
    out["video_parts"] = model.get("video_parts") or ""
    out["lora"] = ", ".join(f"{x['path']}:{x['scale']:g}" for x in model.get("loras") or [])
    for k, v in (report.get("params") or {}).items():
        out[f"{report['method']}__{k}"] = v
    return out


def history_caption(report: dict) -> str:
    r = report.get("reward_after")
    reward = "" if r is None else f" · reward {r:.3g}"
    return f"{report.get('method', '?')} · seed {report.get('seed', '?')} · {report.get('steps', '?')} steps{reward}"


def is_run_report(report) -> bool:
    """A single run's report (a Compare's combined JSON holds two and is not one)."""
    return isinstance(report, dict) and all(k in report for k in ("method", "seed", "steps"))


def raw_path(value) -> Optional[str]:
    """The server path in a component's raw (not preprocessed) value: a path, a FileData dict (file, image) or a
    video's {"video": FileData}. None for anything else, e.g. the bare update dict the page sends for an output a
    run skipped."""
    if isinstance(value, (str, Path)):
        return str(value) or None
    if isinstance(value, dict):
        if isinstance(value.get("video"), dict):
            value = value["video"]
        path = value.get("path")
        return str(path) if isinstance(path, (str, Path)) and str(path) else None
    return None


def _alive(entry: dict) -> bool:
    return bool(entry.get("report")) and Path(entry["report"]).exists()


def add_history(history: list, report_path, video_path, image_path, limit: int = HISTORY_SIZE) -> list:
    """A new list with the run of `report_path` first (no duplicates), at most `limit` entries; entries whose files
    were deleted by the cleanup of old runs are dropped. A path that is not one run's report changes nothing."""
    rest = [h for h in (history or []) if _alive(h)]
    if not report_path or not Path(report_path).exists():
        return rest
    try:
        report = json.loads(Path(report_path).read_text())
    except (OSError, ValueError):
        return rest
    if not is_run_report(report):
        return rest
    entry = {"report": str(report_path), "video": str(video_path) if video_path else None,
             "image": str(image_path) if image_path else None, "caption": history_caption(report)}
    rest = [h for h in rest if h.get("report") != entry["report"]]
    return ([entry] + rest)[:limit]


def gallery_items(history: list) -> list:
    return [(h["image"], h["caption"]) for h in history or [] if h.get("image")]


def remember_run(history: list, token, store: RunStore, limit: int = HISTORY_SIZE):
    """(history, gallery items) with the finished run of `token` added; None when it did not finish (cancelled,
    refused, failed): the history stays as it is."""
    run = store.get(token)
    if run is None or run.state != "done" or not run.path("result.json").exists():
        return None
    res = json.loads(run.path("result.json").read_text())
    hist = add_history(history, res["report"], res.get("video"), res.get("image"), limit)
    return hist, gallery_items(hist)


def remember_shown(history: list, report_value, video_value, shown_value, limit: int = HISTORY_SIZE):
    """The same for a cached example, from the components' raw values (its files live in Gradio's example cache);
    None when what is on screen is not one finished run."""
    report_path = raw_path(report_value)
    shown = raw_path(shown_value)
    if not report_path or not Path(report_path).exists() or not shown or not Path(shown).is_file():
        return None
    hist = add_history(history, report_path, raw_path(video_value), shown, limit)
    if hist and hist[0]["report"] == str(report_path):
        return hist, gallery_items(hist)
    return None


def reload(history: list, index: Optional[int]):
    """(settings, entry, report) of the history entry at `index`, or None."""
    if not history or index is None or index >= len(history) or not _alive(history[index]):
        return None
    h = history[index]
    rep = json.loads(Path(h["report"]).read_text())
    return settings_from_report(rep), h, rep
