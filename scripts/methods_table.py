"""Print (or, with --write, refresh in docs/methods.md) the method parameter tables generated from the code.

The tables between `<!-- methods-table:start -->` and `<!-- methods-table:end -->` in docs/methods.md are produced from
`pipelines.guidance.method_params`, and those between `<!-- paper-table:start -->` and `<!-- paper-table:end -->` (the
paper settings against the shipped defaults) from `pipelines.guidance.paper` and `pipelines.presets.PRESET_DEFAULTS`;
tests/test_docs.py fails when they drift from the code.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"
PAPER_START, PAPER_END = "<!-- paper-table:start -->", "<!-- paper-table:end -->"
TASKS = ("t2v", "style", "audio", "interpolate")


def tables() -> str:
    from pipelines.guidance import METHODS, method_class

    out = []
    for m in METHODS[1:]:
        cls = method_class(m)
        out.append(f"**`{m}`**: {cls.summary}\n")
        out.append("| parameter | default | range | meaning |\n|---|---|---|---|")
        for p in cls.params():
            if p.choices:
                rng = " / ".join(map(str, p.choices))
            elif p.kind == "bool":
                rng = "true / false"
            else:
                rng = f"{p.min:g} – {p.max:g}"
            default = str(p.default).lower() if p.kind == "bool" else p.default
            out.append(f"| `{p.name}` | `{default}` | {rng} | {p.help} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _shown(value) -> str:
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _preset_values(method: str, name: str, default) -> list[str]:
    """Where a preset (or one of its tasks) ships another value than the spec default: "`v`: presets (tasks)"."""
    from pipelines.presets import PRESET_DEFAULTS

    groups: dict = {}  # presets sharing the same tables, in PRESET_DEFAULTS order
    for preset, tables_ in PRESET_DEFAULTS.items():
        groups.setdefault(id(tables_[0]), (tables_, []))[1].append(preset)
    by_value: dict = {}
    for (method_defaults, task_defaults), presets in groups.values():
        base = method_defaults.get(method, {}).get(name, default)
        where = []
        if base != default:
            by_value.setdefault(_shown(base), []).append(", ".join(presets))
        for task in TASKS:
            value = task_defaults.get(task, {}).get(method, {}).get(name, base)
            if value != base:
                where.append((task, value))
        for task, value in where:
            by_value.setdefault(_shown(value), []).append(f"{', '.join(presets)} ({task})")
    return [f"{v}: {'; '.join(w)}" for v, w in by_value.items()]


def paper_tables() -> str:
    """Per method: parameter, paper value, shipped default (and the presets' own), why the defaults depart."""
    from pipelines.guidance import method_params
    from pipelines.guidance.paper import DEVIATION_REASONS, PAPER_SOURCES

    out = []
    for m, sources in PAPER_SOURCES.items():
        specs = {p.name: p for p in method_params(m)}
        out.append(f"**`{m}`**\n")
        out.append("| parameter | paper | shipped default | presets' own | why the defaults depart |\n|---|---|---|---|---|")
        for name, (value, source) in sources.items():
            default = specs[name].default
            presets = _preset_values(m, name, default)
            deviates = default != value or any(not p.startswith(_shown(value) + ":") for p in presets)
            why = DEVIATION_REASONS.get(m, {}).get(name)
            if deviates and not why:
                raise SystemExit(f"pipelines/guidance/paper.py: no DEVIATION_REASONS entry for {m}.{name}")
            out.append(f"| `{name}` | {_shown(value)} ({source}) | {_shown(default)} | {'<br>'.join(presets) or '–'} | "
                       f"{why if deviates else 'the same as the paper'} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _between(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def refresh(text: str) -> str:
    text = _between(text, START, END, tables())
    return _between(text, PAPER_START, PAPER_END, paper_tables())


if __name__ == "__main__":
    doc = ROOT / "docs" / "methods.md"
    if "--write" in sys.argv:
        doc.write_text(refresh(doc.read_text()))
    else:
        print(tables())
        print(paper_tables())
