"""One dependency list: requirements.txt (what a Space installs) is generated from pyproject.toml."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_requirements_txt_is_generated_from_pyproject():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "requirements.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_requirements_cover_what_the_app_imports_at_build():
    """pandas (build_demo's reward plot data), matplotlib (the evaluation's plots) and every runtime dependency of
    pyproject are in requirements.txt."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import requirements as gen
    finally:
        sys.path.pop(0)
    names = {line.split(">")[0].split("<")[0].split("=")[0].strip().lower()
             for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")}
    assert {"pandas", "matplotlib", "gradio", "torch", "diffusers", "transformers", "spaces"} <= names
    assert gen.render() == (ROOT / "requirements.txt").read_text()


def test_check_fails_on_a_stale_file(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import requirements as gen
    finally:
        sys.path.pop(0)
    py = tmp_path / "pyproject.toml"
    py.write_text('[project]\nname = "x"\ndependencies = ["torch", "matplotlib"]\n'
                  '[project.optional-dependencies]\nspace = ["spaces"]\n')
    assert gen.render(py).splitlines()[-3:] == ["torch", "matplotlib", "spaces"]
