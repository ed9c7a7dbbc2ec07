"""The fidelity readers: a rendered clip is a clean video of its caption; a smear, a second object, striped noise,
another colour or a halo of another colour beside the object is caught; the contact sheet shows the videos."""
import numpy as np
from PIL import Image

from pipelines.evaluation.readers import (
    HALO_LEVEL, HALO_MAX_PX, RESIDUAL_MAX, count_objects, fidelity, halo, hue_of, off_colour, residual,
)
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


def _halo(a, frames, colour, strength=0.35):
    """`a` with a faint glow of `colour` (chroma `strength`) on the gray beside the object's right and top edges in
    `frames`, as the micro model's key-frame videos drew orange beside a blue triangle."""
    b = a.copy()
    col = np.asarray(world.COLOURS[colour], np.float32)
    for k in frames:
        obj = (b[k].max(0) - b[k].min(0)) > 0.5
        ys, xs = np.nonzero(obj)
        ring = np.zeros_like(obj)
        ring[ys.min() - 2:ys.min(), xs.min():xs.max() + 1] = True  # two rows above
        ring[ys.min():ys.max() + 1, xs.max() + 1:xs.max() + 3] = True  # two columns right
        ring &= ~obj
        b[k][:, ring] = (1 - strength) * b[k][:, ring] + strength * col[:, None]
    return b


def test_a_halo_of_another_colour_beside_the_object_fails_clean_where_the_residual_lets_it_through():
    frames, _ = world.render_clip("blue", "triangle", "moving left to right", "gray", seed=0)
    a, target = frames.numpy(), dict(colour="blue", shape="triangle", motion="moving left to right")
    clean = fidelity(a, target)
    assert clean["clean"] == 1.0 and clean["halo_px"] == 0.0
    orange = _halo(a, range(2, 6), "red", 0.35)  # an orange-red glow in the middle frames
    f = fidelity(orange, target)
    assert f["residual"] <= RESIDUAL_MAX  # too small for the residual to see
    assert f["one_object"] == 1.0 and f["content"] == 1.0
    assert f["halo_px"] > HALO_MAX_PX and f["clean"] == 0.0 and f["fidelity"] == 0.0
    assert [n > HALO_MAX_PX for n in halo(orange)] == [False, False, True, True, True, True, False, False]
    # the same glow in the object's own colour is a soft edge, not a halo
    assert fidelity(_halo(a, range(2, 6), "blue", 0.35), target)["halo_px"] == 0.0
    # and a glow too faint to see is not one either
    assert fidelity(_halo(a, range(2, 6), "red", 0.5 * HALO_LEVEL), target)["clean"] == 1.0


def test_off_colour_reads_hue_not_channel_shifts_of_the_objects_colour():
    assert hue_of(np.asarray(list(world.COLOURS.values()))[:5].T[:, :, None])[:, 0].round().tolist() == [
        0, 120, 240, 60, 180]  # red, green, blue, yellow, cyan
    px = lambda *rgb: np.asarray(rgb, np.float32)[:, None, None]  # noqa: E731
    assert off_colour(px(0.3, 1.0, 0.0), "green")[0, 0] == 0.0  # a yellowish green object is green
    assert off_colour(px(0.6, 0.4, 0.35), "blue")[0, 0] > HALO_LEVEL  # orange beside blue
    assert off_colour(px(0.25, 0.25, 0.6), "red")[0, 0] > HALO_LEVEL  # a blue fringe beside red
    assert off_colour(px(0.5, 0.5, 0.5), "red")[0, 0] == 0.0  # gray
    assert off_colour(px(0.5, 0.3, 0.3), "white")[0, 0] > 0.0  # any hue beside a white object


def test_rendered_clips_have_no_halo_on_any_background():
    for bg in world.BACKGROUNDS:
        for colour in world.COLOURS:
            a, _ = _clip(colour=colour, shape="triangle", background=bg)
            assert max(halo(a)) == 0, (colour, bg)


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


# ---------------------------------------------------------------- the scorers that moved here read what they read
def _former_max_jump(centroids) -> float:  # pipelines/training/ablation.py's own copy, before it read through here
    pts = [c for c in centroids if c is not None]
    if len(pts) < len(centroids) or len(pts) < 2:
        return float("inf")
    return float(np.linalg.norm(np.diff(np.asarray(pts), axis=0), axis=1).max())


def _videos():
    """Rendered clips, one with the object wiped from a frame, one smeared with noise, one with a second object."""
    rng = np.random.default_rng(0)
    out = []
    for i, (c, s, m) in enumerate(world.HELD_OUT[:4]):
        a, _ = _clip(c, s, m, world.BACKGROUNDS[i % len(world.BACKGROUNDS)], seed=i)
        out.append((a, dict(colour=c, shape=s, motion=m)))
    a, t = _clip(seed=7)
    gone = a.copy()
    gone[3] = gone[3].min(axis=(1, 2), keepdims=True)  # frame 3: only background, no object
    out.append((gone, t))
    out.append((np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1).astype(np.float32), t))
    two = a.copy()
    two[:, 1, 26:30, 2:6] = 1.0
    out.append((two, t))
    return out


def test_the_ablation_reading_is_the_former_ablation_scorer():
    from pipelines.evaluation.readers import (colour_kept, content_kept, count_objects, detect, frame_change,
                                              harivo_reading, max_jump, rendered_max_jump)

    limit = rendered_max_jump(40)
    assert 0 < limit < 32
    for a, p in _videos():
        d = detect(a)
        assert max_jump(d["centroids"]) == _former_max_jump(d["centroids"])
        content = content_kept(d, p, ("colour", "shape"))["content"] == 1.0
        action = content_kept(d, p, ("motion",))["content"] == 1.0
        former = {"content": content, "action": action, "smooth": _former_max_jump(d["centroids"]) <= limit,
                  "non_weird": all(count_objects(f) == 1 for f in a) and colour_kept(d, p["colour"]) == 1.0,
                  "dframe": float(np.abs(np.diff(a, axis=0)).mean()), "all_right": content and action}
        assert harivo_reading(a, p, limit) == former
        assert frame_change(a) == former["dframe"]
    readings = [harivo_reading(a, p, limit) for a, p in _videos()]
    assert all(r["content"] and r["action"] and r["smooth"] and r["non_weird"] for r in readings[:4])
    assert not readings[4]["smooth"]  # an object missing in a frame is not smooth
    assert not readings[6]["non_weird"]  # a second object is weird
    assert max_jump([(0.0, 0.0), None, (1.0, 1.0)]) == float("inf") and max_jump([(0.0, 0.0), (3.0, 4.0)]) == 5.0


def test_sync_iou_is_the_compare_views_and_the_audio_suites_formula():
    from pipelines.evaluation.readers import match_frames, sync_iou

    for impacts, contacts in (([3, 15], [3, 15]), ([3, 15], [4, 15]), ([3, 15], []), ([3], [2, 3, 4]), ([], [])):
        for tol in (0, 1):
            hit = match_frames(impacts, contacts, tol)
            union = len(impacts) + len(contacts) - hit
            assert sync_iou(impacts, contacts, tol) == (hit / union if union else 0.0)
    assert sync_iou([3, 15], [4, 15], 0) == 1 / 3 and sync_iou([3, 15], [4, 15], 1) == 1.0


class _FakePipe:
    """A pipeline stand-in that returns rendered clips of the prompt (the scorers under test read them)."""

    def __call__(self, prompt, num_frames=8, generator=None, **kw):
        import torch

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        vids = []
        for i, text in enumerate(prompts):
            t = world.parse_caption(text)
            v, _ = world.render_clip(t["colour"], t["shape"], t["motion"], t["background"], seed=i)
            vids.append(v)
        return type("Out", (), {"frames": torch.stack(vids)})()


def test_the_personalised_base_and_the_ablation_score_rendered_clips_as_they_did():
    from pipelines.evaluation.micro import prompt_set
    from pipelines.micro.detector import detect
    from pipelines.training import ablation, personalise

    got = personalise.score(_FakePipe(), seeds=1, steps=1)
    rows = []
    for p in personalise.prompts():  # the former scorer: the detector's fields against the prompt's
        v, _ = world.render_clip(p["colour"], p["shape"], p["motion"], p["background"], seed=0)
        d = detect(v)
        rows.append({"striped": d["background"] == "striped", "background_kept": d["background"] == p["background"],
                     "direction": d["motion"] == p["motion"], "colour": d["colour"] == p["colour"],
                     "shape": d["shape"] == p["shape"]})
    assert got == {**{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}, "videos": len(rows)}
    assert got["striped"] == 0.0 and got["background_kept"] == 1.0 and got["direction"] == 1.0

    out = ablation.score_videos(_FakePipe(), seeds=1, mg_scale=0.0, jump_limit=100.0, steps=1)
    assert out["videos"] == len(prompt_set(12)) and out["content"] == 1.0 and out["action"] == 1.0
    assert out["smooth"] == 1.0 and out["non_weird"] == 1.0 and out["held_out"] == 1.0
