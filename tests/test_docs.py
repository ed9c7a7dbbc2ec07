"""The README stays true to the code: generated method tables, every method and contract named."""
from pathlib import Path

from pipelines.guidance import METHODS

ROOT = Path(__file__).resolve().parents[1]


def test_readme_method_tables_match_the_code():
    import importlib.util

    spec = importlib.util.spec_from_file_location("methods_table", ROOT / "scripts" / "methods_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = (ROOT / "README.md").read_text()
    assert mod.refresh(readme) == readme, "run: python scripts/methods_table.py --write"


def test_readme_names_every_method_tab_and_command():
    readme = (ROOT / "README.md").read_text()
    for m in METHODS:
        assert f"`{m}`" in readme
    for endpoint in ("/text_to_video", "/style_transfer", "/audio_alignment", "/frame_interpolation"):
        assert endpoint in readme
    for command in ("python app.py", "bash .ci/run", "python -m pipelines generate", "python -m pipelines bench"):
        assert command in readme


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
