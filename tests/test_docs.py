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
