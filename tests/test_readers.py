"""The fidelity readers: a rendered clip is a clean video of its caption; a smear, a second object, striped noise or
another colour is caught; the contact sheet shows the videos."""
import numpy as np
from PIL import Image

from pipelines.evaluation.readers import RESIDUAL_MAX, count_objects, fidelity, residual
from pipelines.evaluation.sheets import contact_sheet
from pipelines.micro import world


def _clip(colour="red", shape="square", motion="moving left to right", background="checkered", seed=0):
    frames, _ = world.render_clip(colour, shape, motion, background, seed=seed)
    return frames.numpy(), dict(colour=colour, shape=shape, motion=motion)


def test_rendered_clips_are_clean_videos_of_their_caption():
    for bg in world.BACKGROUNDS:
        a, target = _clip(background=bg)
        f = fidelity(a, target)
        assert f["fidelity"] == 1.0 and f["clean"] == 1.0 and f["content"] == 1.0
        assert max(residual(a)) < 1e-4


def test_a_darker_background_level_is_not_an_artefact():
    a, target = _clip(background="gray")
    obj = a.max(1, keepdims=True) - a.min(1, keepdims=True) > 0.3
    a = np.where(obj, a, a * 0.6)  # the model drew the gray darker
    assert fidelity(a, target)["clean"] == 1.0


def test_a_colour_smear_fails_clean():
    a, target = _clip(background="striped")
    a = a.copy()
    a[:, 1:, 16:32, :] += 0.3  # a faint cyan wash over the lower half (too faint to read as an object)
    f = fidelity(a, target)
    assert f["residual"] > RESIDUAL_MAX and f["clean"] == 0.0 and f["fidelity"] == 0.0


def test_striped_noise_fails_clean():
    a, target = _clip(background="gray")
    rng = np.random.default_rng(0)
    a = np.clip(a + rng.normal(0, 0.25, a.shape).astype(np.float32) * (np.arange(32)[:, None] % 2), 0, 1)
    assert fidelity(a, target)["clean"] == 0.0


def test_a_second_object_and_a_wrong_colour_are_read():
    a, target = _clip(background="black")
    b = a.copy()
    b[:, 2, 0:4, 28:32] = 1.0  # a blue blob in a corner
    assert count_objects(b[0]) == 2
    f = fidelity(b, target)
    assert f["one_object"] < 1.0 and f["clean"] == 0.0
    assert fidelity(a, dict(target, colour="green"))["content"] == 0.0


def test_contact_sheet_has_a_row_per_video(tmp_path):
    a, _ = _clip()
    path = contact_sheet([a, a], ["one", "two"], tmp_path / "s.png", scale=2)
    w, h = Image.open(path).size
    assert h >= 2 * 64 and w >= 8 * 64


def test_the_small_readers_every_scorer_shares():
    from pipelines.evaluation.readers import (MIN_OBJECT_PX, centroids, colour_kept, detect, endpoint_mse,
                                              impacts_met, match_frames)

    a, target = _clip(background="black")
    d = detect(a)
    assert colour_kept(d, "red") == 1.0 and colour_kept(d, "blue") == 0.0
    cs = centroids(a)
    assert len(cs) == len(a) and all(c is not None for c in cs) and cs[-1][0] > cs[0][0]  # left to right
    assert endpoint_mse(a, a[[0, -1]]) == 0.0 and endpoint_mse(a, a[[-1, 0]]) > 0.0
    # contacts against impacts: one-to-one within the tolerance
    assert match_frames([2, 6], [2, 3], 1) == 1 and match_frames([2, 6], [3, 5], 1) == 2
    assert impacts_met([2, 6], [2, 3], 1) == 0.5 and impacts_met([2, 6], [2, 3], 0) == 0.5
    # one object definition: a blob of MIN_OBJECT_PX - 1 pixels is not an object, one of MIN_OBJECT_PX is
    frame = np.zeros((3, 32, 32), np.float32)
    frame[0, 2, 2:2 + MIN_OBJECT_PX - 1] = 1.0
    assert count_objects(frame) == 0
    frame[0, 20, 20:20 + MIN_OBJECT_PX] = 1.0
    assert count_objects(frame) == 1
