"""The request package (`pipelines.request`): one job per module, said in its first line, and no import circle."""
import ast
import json
import os
import subprocess
import sys

from tests.test_evaluation_package import PKG, ROOT, _cycles, _import_graph

MODULES = ("pipelines.request", "pipelines.request.validation", "pipelines.request.running",
           "pipelines.request.reports")


def test_each_module_says_in_one_line_what_it_is_for():
    for m in MODULES:
        path = ROOT / (m.replace(".", "/") + ("/__init__.py" if m == "pipelines.request" else ".py"))
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.splitlines()[0].strip().endswith("."), m
    assert not (PKG / "request.py").exists()  # one definition: the package, not a module beside it


def test_the_request_modules_import_no_circle():
    graph = _import_graph()
    ours = set(MODULES)
    assert ours <= set(graph)
    # the layers: running and reports read validation's types; the submodules never go back to the package's __init__
    assert "pipelines.request.validation" in graph["pipelines.request.running"]
    assert "pipelines.request.validation" in graph["pipelines.request.reports"]
    for m in MODULES[1:]:
        assert "pipelines.request" not in graph[m], m
    inside = {m: graph[m] & ours for m in ours}
    assert not _cycles(inside), _cycles(inside)
    # no circle out of the package: `validate` builds the task (pipelines.tasks, imported inside the function so
    # that torch loads with a run), and both read the tasks' names and modes from pipelines.task_options
    assert "pipelines.tasks" in graph["pipelines.request.validation"]
    assert "pipelines.request.validation" not in graph["pipelines.tasks"]
    circles = [c for c in _cycles(graph) if ours & set(c)]
    assert circles == [], circles


def test_every_request_module_imports_first_in_a_fresh_interpreter_without_torch():
    code = (
        "import importlib, sys, json\n"
        "for m in json.loads(sys.argv[1]):\n"
        "    for k in [k for k in sys.modules if k == 'pipelines' or k.startswith('pipelines.')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
        "print('ok', 'torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, json.dumps(MODULES)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "ok False"  # torch loads when a run starts, not when the CLI or the app imports


def test_the_package_reexports_the_old_module_names():
    import pipelines.request as request
    from pipelines.request import reports, running, validation

    for mod in (validation, running, reports):
        public = {n for n, v in vars(mod).items() if not n.startswith("_") and getattr(v, "__module__", None) ==
                  mod.__name__}
        assert public <= set(request.__all__), (mod.__name__, public - set(request.__all__))
    assert request.run is running.run and request.validate is validation.validate
    assert request.finalize is reports.finalize and request.RequestError is validation.RequestError
