"""The library's import graph (`bench/import_graph.py`): no import cycle in `pipelines/` and `rewards/`, and the
figures it prints find a cycle and count layers where one is planted."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "bench" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", mod)
    spec.loader.exec_module(mod)
    return mod


#: bench/import_graph.py, loaded as a module (the other import-graph tests read the graph through it)
import_graph = _load()


def test_the_library_imports_no_cycle():
    f = import_graph.figures(ROOT)
    assert f["modules"] > 50 and f["edges"] > 100  # it read the real tree
    assert f["cycles_list"] == [] and f["imports_back_up"] == 0, f["cycles_list"]


def test_the_figures_see_a_planted_cycle_and_count_layers(tmp_path):
    files = {
        "pipelines/__init__.py": "",
        "pipelines/low.py": "X = 1\n",
        "pipelines/mid.py": "from .low import X\n",
        "pipelines/a.py": "from . import mid\n\ndef f():\n    from .b import Y  # a lazy import is still an edge\n",
        "pipelines/b.py": "from .a import f\nY = 2\n",
        "pipelines/sub/__init__.py": "",
        "pipelines/sub/top.py": "from ..a import f\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                "    from pipelines import low\n",
        "rewards/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    f = import_graph.figures(tmp_path)
    assert f["modules"] == 8
    assert f["cycles_list"] == [["pipelines.a", "pipelines.b"]]
    assert f["imports_back_up"] == 2  # a -> b and b -> a: neither points at a lower layer
    # low (1) <- mid (2) <- {a, b} (3) <- sub.top (4); the TYPE_CHECKING import is not an edge
    assert f["layers"] == 4
    assert f["longest_chain"][0] == "pipelines.sub.top" and f["longest_chain"][-1] == "pipelines.low"
