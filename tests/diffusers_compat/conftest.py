"""Counts, per vendored test, the runs of GuidedAnimateDiffPipeline's own loop (`pipelines.sampler.sample`) and
prints them after the run, so that a test that "passes" without running the subclass is visible (issue 17)."""
import pytest

import pipelines.pipeline as gvs_pipeline

_RUNS: dict = {}


@pytest.fixture(autouse=True)
def count_subclass_loop(request, monkeypatch):
    original = gvs_pipeline.sample
    calls = [0]

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(gvs_pipeline, "sample", counting)
    yield
    _RUNS[request.node.nodeid] = calls[0]


def pytest_terminal_summary(terminalreporter):
    if not _RUNS:
        return
    ran = sum(1 for n in _RUNS.values() if n)
    terminalreporter.write_line(
        f"diffusers_compat: {ran} of {len(_RUNS)} vendored tests ran GuidedAnimateDiffPipeline's own sampling loop "
        f"({sum(_RUNS.values())} loops); without a pipeline call (or skipped): "
        + ", ".join(sorted(k.rsplit("::", 1)[-1] for k, n in _RUNS.items() if not n)))
