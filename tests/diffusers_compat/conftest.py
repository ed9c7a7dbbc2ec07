"""Counts, per vendored test, the runs of the subclasses' own loop (`pipelines.sampler.sample`, as
GuidedAnimateDiffPipeline and GuidedWanPipeline call it) and prints them after the run, so that a test that "passes"
without running the subclass is visible (issue 17)."""
import pytest

import pipelines.pipeline as gvs_pipeline
import pipelines.wan as gvs_wan

_RUNS: dict = {}


@pytest.fixture(autouse=True)
def count_subclass_loop(request, monkeypatch):
    original = gvs_pipeline.sample
    calls = [0]

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(gvs_pipeline, "sample", counting)
    monkeypatch.setattr(gvs_wan, "sample", counting)
    yield
    _RUNS[request.node.nodeid] = calls[0]


def pytest_terminal_summary(terminalreporter):
    if not _RUNS:
        return
    ran = sum(1 for n in _RUNS.values() if n)
    terminalreporter.write_line(
        f"diffusers_compat: {ran} of {len(_RUNS)} vendored tests ran the guided pipeline's own sampling loop "
        f"({sum(_RUNS.values())} loops); without a pipeline call (or skipped): "
        + ", ".join(sorted(k.rsplit("::", 1)[-1] for k, n in _RUNS.items() if not n)))


def pytest_configure(config):
    # markers of diffusers' pipeline test mixins (tests/pipelines/testing_utils/memory.py)
    for name in ("memory", "cpu_offload", "group_offload"):
        config.addinivalue_line("markers", f"{name}: diffusers' memory-placement pipeline tests")
