"""Each tab's examples are what the tables promise: every example row is generated as the app generates it (the tab's
defaults, the row's values, `Studio.prepare` → `request.run`) with the test preset when it draws the micro world
(micro, micro-harivo: `pipelines.presets.is_micro_world`), and read by the world's exact detector
(`pipelines.evaluation.readers`): one clean object of the prompt's colour, shape and motion in every frame, plus the
tab's own effect."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.presets import is_micro_world
from tests.conftest import test_preset_name

pytestmark = pytest.mark.skipif(not is_micro_world(test_preset_name()),
                                reason="the detector reads the micro world only (micro, micro-harivo)")


@pytest.fixture(scope="module")
def studio(preset, tmp_path_factory):
    from pipelines.studio.handlers import Studio
    from pipelines.studio.runs import RunStore

    return Studio(preset, store=RunStore(tmp_path_factory.mktemp("runs"), keep=2))


def _generate(studio, preset, task, row, names, method=None):
    """One example row through the app's path: the tab's defaults (the preset's steps, frames, size and CFG, the
    request's η, the method's preset defaults), then the row's values."""
    from pipelines.request import DEFAULT_ETA, run

    kw = dict(steps=preset.default_steps, frames=preset.default_frames, size=preset.default_size,
              cfg=preset.default_cfg, eta=DEFAULT_ETA)
    kw.update(dict(zip(names, row)))
    if method is not None:
        kw["method"] = method
    prepared = studio.prepare(task, kw)
    gen = run(prepared, preset)
    for _ in gen:
        pass
    return prepared, gen


def _rows(task):
    from pipelines.studio.examples import example_names, example_rows

    uploads = {"t2v": [], "style": ["style_image"], "audio": ["audio"],
               "interpolate": ["first_frame", "last_frame"]}[task]
    return [(row, example_names(task, uploads)) for row in example_rows(task)]


def _fidelity(frames, prompt, keys=("colour", "shape", "motion")):
    from pipelines.evaluation.readers import fidelity, target_of

    a = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
    return fidelity(a, target_of(prompt), keys)


@pytest.mark.parametrize("task", ["t2v", "style", "audio", "interpolate"])
def test_each_example_is_a_clean_video_of_its_prompt_with_the_tabs_effect(studio, preset, examples_dir, task):
    from pipelines.evaluation.readers import centroids, detect, match_frames

    rows = _rows(task)
    assert rows, f"the {task} tab has no example"
    for row, names in rows:
        prepared, gen = _generate(studio, preset, task, row, names)
        frames = gen.final_event.frames
        fid = _fidelity(frames, row[0])
        assert fid["content"] == 1.0, (task, row[0], fid)
        assert fid["one_object"] == 1.0 and fid["clean"] == 1.0, (task, row[0], fid)
        d = detect(frames)
        if task == "style":  # closer to the reference than the unguided twin (same seed and η), and still clean
            _, twin = _generate(studio, preset, task, row, names, method="none")
            assert prepared.request.method != "none" and gen.final_reward() > twin.final_reward() + 1.0
        if task == "audio":  # a floor contact at every impact (±1 frame, one to one), and no contact without one
            impacts = sorted({round(t * preset.fps) for t in (0.5, 1.5)})  # scripts/make_examples.py's thumps
            contacts = list(d["bounce_frames"])
            assert match_frames(impacts, contacts, 1) == len(impacts) == len(contacts), (impacts, contacts)
        if task == "interpolate":  # ends at the key frames, and a path from one to the other
            from PIL import Image

            keys = centroids(np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32).transpose(2, 0, 1) / 255
                                       for p in (row[1], row[2])]))
            cents = d["centroids"]
            assert all(c is not None for c in cents)
            for got, key in ((cents[0], keys[0]), (cents[-1], keys[1])):
                assert np.hypot(got[0] - key[0], got[1] - key[1]) <= 2.0, (got, key)
            axis = np.subtract(keys[1], keys[0]) / np.linalg.norm(np.subtract(keys[1], keys[0]))
            proj = [float(np.dot(np.subtract(c, keys[0]), axis)) for c in cents]
            assert all(b - a >= -1.0 for a, b in zip(proj, proj[1:])), proj
