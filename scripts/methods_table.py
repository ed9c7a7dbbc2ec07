"""Print (or, with --write, refresh in docs/methods.md) the method parameter tables generated from the code.

The tables between `<!-- methods-table:start -->` and `<!-- methods-table:end -->` in docs/methods.md are produced from
`pipelines.guidance.method_params`; tests/test_docs.py fails when they drift from the code.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"


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


def refresh(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{tables()}{END}{tail}"


if __name__ == "__main__":
    doc = ROOT / "docs" / "methods.md"
    if "--write" in sys.argv:
        doc.write_text(refresh(doc.read_text()))
    else:
        print(tables())
