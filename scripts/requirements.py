"""Generate (or check) `requirements.txt`, what a Hugging Face Space installs, from `pyproject.toml`.

One dependency list: `[project].dependencies` plus the `space` extra (ZeroGPU's `spaces`). The Space installs
requirements.txt before the repository is on its path, so the file lists the packages themselves rather than `.`.

    python scripts/requirements.py          # rewrite requirements.txt
    python scripts/requirements.py --check  # exit 1 (with a diff) if requirements.txt is out of date
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# GENERATED from pyproject.toml by `python scripts/requirements.py` (do not edit by hand; CI checks it).
# Hugging Face Space (sdk: gradio): the Space installs these, then runs app.py.
# torch from PyPI runs on CPU too; on a GPU Space it uses CUDA.
"""


def _load(pyproject: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore
    return tomllib.loads(pyproject.read_text())


def render(pyproject: Path = ROOT / "pyproject.toml") -> str:
    project = _load(pyproject)["project"]
    deps = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("space", []))
    return HEADER + "".join(d.strip() + "\n" for d in deps)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if requirements.txt differs from the generated text")
    a = p.parse_args(argv)
    want, path = render(), ROOT / "requirements.txt"
    have = path.read_text() if path.exists() else ""
    if a.check:
        if have != want:
            sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), want.splitlines(True),
                                                       "requirements.txt", "generated from pyproject.toml"))
            print("requirements.txt is out of date: run `python scripts/requirements.py`", file=sys.stderr)
            return 1
        return 0
    path.write_text(want)
    return 0


if __name__ == "__main__":
    sys.exit(main())
