"""The README and docs/ stay true to the code: generated method tables, every method, tab and command named, every
link followed, no measured figure typed into a help text."""
import ast
import re
from pathlib import Path

from pipelines.guidance import METHODS

ROOT = Path(__file__).resolve().parents[1]


def test_method_tables_in_docs_match_the_code():
    import importlib.util

    spec = importlib.util.spec_from_file_location("methods_table", ROOT / "scripts" / "methods_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = (ROOT / "docs" / "methods.md").read_text()
    assert mod.refresh(doc) == doc, "run: python scripts/methods_table.py --write"


def test_readme_names_every_method_tab_and_command():
    readme = (ROOT / "README.md").read_text()
    for m in METHODS:
        assert f"`{m}`" in readme
    for endpoint in ("/text_to_video", "/style_transfer", "/audio_alignment", "/frame_interpolation"):
        assert endpoint in readme
    for command in ("python app.py", "bash .ci/run", "python -m pytest -q", "python -m pipelines generate",
                    "python -m pipelines bench"):
        assert command in readme


def test_readme_is_short_and_its_links_resolve():
    """The README is a newcomer's page (at most 300 lines); every relative link in it and in docs/ points at a file."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            if not path.exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_no_round_of_work_in_docs_or_paths():
    """Results are named by date and commit, never by a numbered session or round of work."""
    pattern = re.compile(r"\b(session|round)[- ]?\d", re.IGNORECASE)
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.md")]
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in pages for m in pattern.finditer(p.read_text())]
    hits += [str(p.relative_to(ROOT)) for p in (ROOT / "bench").rglob("*") if pattern.search(p.name)]
    assert not hits, hits


#: A measured figure: a signed or decimal number, a count like 3/8, a percentage or "points".
FIGURE = re.compile(r"[+−]\d|\d\.\d|\b\d+/\d+\b|\d ?%|\bpoints\b")


def test_help_texts_that_cite_a_bench_table_quote_no_figure():
    """A help text that points at a bench table leaves the figures to the table, so the two cannot drift apart."""
    from pipelines.presets import TASK_DEFAULT_METHODS

    from pipelines.guidance import method_class

    texts = [reason for _, reason in TASK_DEFAULT_METHODS.values()]
    texts += [spec.help for m in METHODS[1:] for spec in method_class(m).params()]
    sources = [ROOT / "app.py", ROOT / "pipelines" / "cli.py", *sorted((ROOT / "pipelines" / "studio").glob("*.py"))]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.keyword) and node.arg in ("info", "help", "label"):
                texts.append("".join(c.value for c in ast.walk(node.value)
                                     if isinstance(c, ast.Constant) and isinstance(c.value, str)))
    assert sum("bench/" in t for t in texts) >= len(TASK_DEFAULT_METHODS)
    quoted = [t for t in texts if "bench/" in t and FIGURE.search(t)]
    assert not quoted, quoted


def test_ci_fails_when_pytest_collects_no_tests(tmp_path):
    """`.ci/run`'s pytest step, run with a `python` that behaves like pytest: exit 5 (no tests collected) and any
    failure make the script fail; 0 passes."""
    import os
    import subprocess

    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    start = lines.index("set +e")
    end = next(i for i in range(start, len(lines)) if lines[i] == "fi")
    step = "\n".join(["set -euo pipefail", *lines[start:end + 1], 'exit "$rc"'])
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\nexit "$FAKE_PYTEST_RC"\n')
    (fake / "python").chmod(0o755)
    for pytest_rc, want in ((0, 0), (1, 1), (5, 5)):
        env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", FAKE_PYTEST_RC=str(pytest_rc))
        got = subprocess.run(["bash", "-c", step], env=env, capture_output=True, text=True, timeout=30)
        assert got.returncode == want, (pytest_rc, got.stderr)
