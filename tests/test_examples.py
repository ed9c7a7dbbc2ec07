"""Each tab's examples hold at seeds nobody chose: every example row is a case of its tab's suite
(`pipelines.evaluation.micro.example_cases`: t2v → mg, style → style, audio → audio, interpolation →
interpolate-agree), generated as the app generates it (the tab's defaults, the row's values, `Studio.prepare` →
`request.run`) with the test preset when it draws the micro world (micro, micro-harivo:
`pipelines.presets.is_micro_world`; micro2's examples and readers are world 2's) at seeds 0-3, whatever seed the row shows, and judged by the suite's joint check
(`pipelines.evaluation.micro.metrics`, read by the world's exact detector): the suite's target met (the prompt's
attributes, the reference's pattern, the impacts on their exact frames, the keys joined by a gliding path) in a clean
video of the prompt (its content, one object in every frame, no artefact, no halo of another colour). At least 3 of
the 4 seeds must pass."""
from __future__ import annotations

import pytest

from pipelines.presets import is_micro_world
from tests.conftest import test_preset_name

pytestmark = pytest.mark.skipif(not is_micro_world(test_preset_name()),
                                reason="the detector reads the micro world only (micro, micro-harivo)")

#: Seeds nobody chose: the first four.
SEEDS = (0, 1, 2, 3)
#: Passing seeds each example needs, of `SEEDS`.
PASS_AT_LEAST = 3

#: Per micro-world preset, the tabs whose example does not hold at 3 of 4 unchosen seeds there, as measured
#: (bench/EVALUATE.md, "The tabs' examples at unchosen seeds"). The test still runs them and asserts the same check;
#: strict, so it fails as soon as the example holds and the mark must go.
SHORT: dict[str, dict[str, str]] = {
    "micro": {
        "audio": "micro: Free2Guide's contacts meet impacts.wav's frames 2 and 6 exactly at none of seeds 0-3 "
                 "(contacts [1, 5], [0, 4], [2, 7], [2, 5]); the audio suite's joint is exact-frame",
        "interpolate": "micro: TITAN glides from key to key at every seed 0-7, but a cyan tail or orange halos "
                       "beside the blue triangle fail the halo check at seeds 0 and 3 (2/4; 4/8 at seeds 0-7)",
    },
    "micro-harivo": {
        "style": "micro-harivo: the background is not read as striped at seeds 0 and 2 (seed 1 passes: 1/3)",
        "audio": "micro-harivo: no seed meets both impacts on their exact frames (seed 0: joint 0, seed 1: 0.5)",
    },
}


@pytest.fixture(scope="module")
def studio(preset, tmp_path_factory):
    from pipelines.studio.handlers import Studio
    from pipelines.studio.runs import RunStore

    return Studio(preset, store=RunStore(tmp_path_factory.mktemp("runs"), keep=2))


def _generate(studio, preset, task, row, names, seed):
    """One example row through the app's path at `seed`: the tab's defaults (the preset's steps, frames, size and
    CFG, the request's η, the method's preset defaults), then the row's values."""
    from pipelines.request import DEFAULT_ETA, run

    kw = dict(steps=preset.default_steps, frames=preset.default_frames, size=preset.default_size,
              cfg=preset.default_cfg, eta=DEFAULT_ETA)
    kw.update(dict(zip(names, row)))
    kw["seed"] = seed
    gen = run(studio.prepare(task, kw), preset)
    for _ in gen:
        pass
    return gen.final_event.frames


def _marks(task):
    reason = SHORT.get(test_preset_name(), {}).get(task)
    if reason is None:
        return []
    return [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)]


@pytest.mark.parametrize("task", [pytest.param(t, marks=_marks(t)) for t in ("t2v", "style", "audio", "interpolate")])
def test_each_example_passes_its_suites_joint_check_at_3_of_4_unchosen_seeds(studio, preset, examples_dir, task):
    from pipelines.evaluation.micro import EXAMPLE_SUITES, example_cases, metrics
    from pipelines.presets import micro_world
    from pipelines.studio.examples import EXAMPLE_UPLOADS, example_names, example_rows

    w = micro_world(preset) or 1  # the world of the preset's weights: its examples and readers
    rows = example_rows(task, world=w)
    assert rows, f"the {task} tab has no example"
    names = example_names(task, EXAMPLE_UPLOADS[task])
    suite = EXAMPLE_SUITES[task]
    for row, case in zip(rows, example_cases(task, preset.default_frames, world=w)):  # ValueError: not a case
        results = {}
        for seed in SEEDS:  # stops as soon as the count is decided either way
            m = metrics(suite, case, _generate(studio, preset, task, row, names, seed), world=w)
            results[seed] = {k: m[k] for k in ("joint", "target", "content", "clean", "residual", "halo_px")} | {
                k: m[k] for k in ("smooth", "ends_max_px", "contacts", "background") if k in m}
            passed = sum(r["joint"] == 1.0 for r in results.values())
            if passed >= PASS_AT_LEAST or len(results) - passed > len(SEEDS) - PASS_AT_LEAST:
                break
        assert passed >= PASS_AT_LEAST, (task, row[0], f"{passed}/{len(results)} seeds pass", results)
