"""World 2's readers and style suite: rendered world-2 clips read clean on every kind of look (the readers take the
world), the style suite's cases leave the look open to references of each look family and photo-like images, its
target is the reference's look (pattern, angle, both colours) in the background, and the style result says what
the reference and the video read as."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipelines.evaluation import micro as em
from pipelines.evaluation.readers import fidelity, halo, look_kept, residual, target_of
from pipelines.micro import world
from pipelines.micro.detector import detect
from pipelines.micro.looks import ALL_LOOKS, Look, read_look

TARGET = {"colour": "red", "shape": "circle", "motion": "moving up"}


def _clip(look, colour="red", shape="circle", motion="moving up", seed=0):
    frames, _ = world.render_clip(colour, shape, motion, look, seed=seed)
    return frames.numpy()


def test_rendered_world2_clips_read_clean_on_every_kind_of_look():
    rng = np.random.default_rng(5)
    picks = [ALL_LOOKS[i] for i in rng.choice(len(ALL_LOOKS), 36, replace=False)]
    picks += [Look.make("flat", ("teal",)), Look.make("stripes", ("olive", "plum"), 45, "wide")]  # chroma 0.22
    for i, look in enumerate(picks):
        c, s, m = world.COLOURS and list(world.COLOURS)[i % 6], world.SHAPES[i % 3], world.MOTIONS[i % 5]
        a = _clip(look, c, s, m, seed=i)
        f = fidelity(a, {"colour": c, "shape": s, "motion": m}, world=2)
        assert f["fidelity"] == 1.0 and f["residual"] < 1e-4 and f["halo_px"] == 0, (look, c, s, m, f)


def test_world2_readers_catch_blobs_and_smears():
    look = Look.make("stripes", ("teal", "beige"), 45, "wide")
    a = _clip(look)
    blob = a.copy()
    blob[3, :, 2:6, 2:6] = np.array([0.0, 1.0, 0.0])[:, None, None]  # a green blob beside the red circle
    f = fidelity(blob, TARGET, world=2)
    assert f["clean"] == 0.0 and f["one_object"] < 1.0 and max(halo(blob, world=2)) >= 16, f
    smear = a.copy()
    smear[:, :, :, :12] = np.clip(smear[:, :, :, :12] * 0.4 + 0.35, 0, 1)  # a washed-out band across the look
    assert max(residual(smear, world=2)) > max(residual(a, world=2)) + 0.05
    # world 1's readers are unchanged: the same clip read as world 1 has no world-1 background
    assert "look" not in detect(a)


def test_target_of_takes_the_world():
    assert target_of("a red circle moving up", world=2) == TARGET
    assert target_of("a red circle moving up") == {}  # not a world-1 caption
    assert target_of("a red circle moving up on a black background")["background"] == "black"


def test_look_kept_judges_pattern_angle_and_both_colours():
    look = Look.make("stripes", ("teal", "beige"), 45, "wide")
    d = {"look": Look.make("stripes", ("teal", "beige"), 45, "narrow")}
    assert look_kept(d, look) == 1.0  # the width is not judged
    assert look_kept({"look": Look.make("stripes", ("teal", "beige"), 135, "wide")}, look) == 0.0
    assert look_kept({"look": Look.make("stripes", ("navy", "beige"), 45, "wide")}, look) == 0.0
    assert look_kept({"look": Look.make("checks", ("teal", "beige"), None, "wide")}, look) == 0.0
    assert look_kept({}, look) == 0.0


def test_style_suite_of_world2_leaves_the_look_open_to_each_family():
    cs = em.cases("style", world=2)
    fams = {}
    for c in cs:
        fams.setdefault(c.target["family"], []).append(c)
        parsed = world.parse_caption2(c.prompt)
        assert parsed and "look" not in parsed and {"colour", "shape", "motion"} <= set(parsed), c.prompt
        ref = read_look(c.inputs["style_image"])
        assert c.inputs["style_image"].size == (em.STYLE2_REFERENCE_PX,) * 2
        assert ref.look == c.target["look"], (c.id, ref, c.target["look"])
        if c.target["family"] == "photo":  # no look of the world: it reads only roughly
            assert ref.confidence < 0.9, (c.id, ref)
    assert set(fams) == {"flat", "stripes", "checks", "photo"} and all(len(v) == 4 for v in fams.values())
    assert {c.target["look"].angle for c in fams["stripes"]} == {0, 45, 90, 135}
    assert [c.id for c in em.cases("style")][:1] == ["striped-0"]  # world 1's suite is unchanged


def test_style_metrics_of_world2_read_the_reference_look_in_the_background():
    case = next(c for c in em.cases("style", world=2) if c.id == "stripes-0")
    look = case.target["look"]
    good = em.metrics("style", case, _clip(look), world=2)
    assert good["target"] == 1.0 and good["fidelity"] == 1.0 and good["joint"] == 1.0, good
    assert good["reference_look"] == look.describe() and good["family"] == "stripes"
    other = em.metrics("style", case, _clip(Look.make("flat", ("navy",))), world=2)
    assert other["target"] == 0.0 and other["fidelity"] == 1.0 and other["joint"] == 0.0, other
    wrong_motion = em.metrics("style", case, _clip(look, motion="moving down"), world=2)
    assert wrong_motion["target"] == 1.0 and wrong_motion["joint"] == 0.0  # the prompt's content must be kept


def test_style_example_of_world2_is_a_case_of_the_suite():
    from pipelines.studio.examples import example_rows

    (row,) = example_rows("style", world=2)
    parsed = world.parse_caption2(row[0])
    assert parsed and "look" not in parsed  # the prompt leaves the look open
    ref = read_look(row[1])
    assert ref.look.pattern == "stripes" and ref.confidence > 0.5
    (case,) = em.example_cases("style", world=2)
    assert case.target["look"] == ref.look
    assert example_rows("style")[0][0].endswith("on a gray background")  # world 1's example is unchanged


def test_style_result_says_what_reference_and_video_read_as():
    from pipelines.compare import task_metric
    from pipelines.request.reports import summary_text

    look = Look.make("checks", ("navy", "beige"), None, "wide")
    ref = em.look_reference(look)
    frames = torch.from_numpy(_clip(look))
    req = SimpleNamespace(task="style", style_image=ref, prompt="a red circle moving up", reward_prompt=None)
    prepared = SimpleNamespace(request=req, preset_name="micro2", world=2, audio=None)
    m = task_metric(prepared, frames)
    assert "your reference reads as navy and beige wide checks" in m.text, m.text
    assert "the video's background reads as navy and beige wide checks" in m.text and m.value == 1.0
    assert "a clean video of the prompt" in m.text
    report = {"task": "style", "method": "titan", "preset": "micro2", "device": "cpu", "seconds": 1.0,
              "peak_memory_bytes": 0, "frames": 8, "fps": 4, "width": 32, "height": 32, "steps": 20, "seed": 0,
              "style_reading": "your reference reads as X; the video's background reads as Y"}
    assert "style: your reference reads as X; the video's background reads as Y" in summary_text(report)


@pytest.mark.parametrize("bad", [None, "not an image"])
def test_style_reading_of_bad_reference_is_skipped_not_raised(bad):
    from pipelines.compare import task_metric

    req = SimpleNamespace(task="style", style_image=bad, prompt="a red circle moving up", reward_prompt=None)
    prepared = SimpleNamespace(request=req, preset_name="micro2", world=2, audio=None)
    m = task_metric(prepared, torch.from_numpy(_clip(Look.make("flat", ("teal",)))))
    assert m.text.startswith("detected background: a teal background")


def test_patch_style_reward_prefers_the_reference_look_among_rendered_looks():
    """The patch-statistics reward, with a reference of each look family, ranks the reference's own look (with an
    object on it, at the clip's phase) among its top 3 of a sample that holds its near neighbours (same colours at
    other angles/widths/patterns, same pattern in other colours), and above every look of another pattern or
    angle in both other colours."""
    from pipelines.tasks import image_tensor
    from rewards.style import PatchStyleReward

    rng = np.random.default_rng(3)
    sample = [ALL_LOOKS[i] for i in rng.choice(len(ALL_LOOKS), 40, replace=False)]
    for case in [c for c in em.cases("style", world=2) if c.target["family"] != "photo"]:
        look = case.target["look"]
        near = [lk for lk in ALL_LOOKS if lk != look and (set(lk.colours) == set(look.colours)
                                                         or (lk.pattern, lk.angle) == (look.pattern, look.angle))]
        reward = PatchStyleReward(image_tensor(case.inputs["style_image"], (32, 32), "style_image"))
        own = float(reward(torch.from_numpy(_clip(look, seed=1)[:2])).mean())
        others = {lk: float(reward(torch.from_numpy(_clip(lk, seed=1)[:2])).mean())
                  for lk in dict.fromkeys(near[:12] + sample) if lk != look}
        better = [lk for lk, v in others.items() if v >= own]
        assert len(better) <= 2, (case.id, look, better)
        far = [lk for lk in better if (lk.pattern, lk.angle) != (look.pattern, look.angle)
               and not set(lk.colours) & set(look.colours)]
        assert not far, (case.id, look, far)


def test_patch_style_reward_is_differentiable_and_leaves_the_object_out():
    from rewards.style import PatchStyleReward, background_weight

    look = Look.make("stripes", ("navy", "silver"), 90, "wide")
    reward = PatchStyleReward(em.look_reference(look))
    frames = torch.from_numpy(_clip(Look.make("flat", ("gray",)))[:2]).requires_grad_(True)
    value = reward(frames)
    assert value.shape == (2,) and torch.isfinite(value).all()
    value.sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    w = background_weight(frames.detach())
    obj = torch.from_numpy(np.stack([detect(frames.detach().numpy()[k:k + 1])["object_frames"] > 0
                                     for k in range(2)]))
    assert obj.all() and float(w.min()) < 0.05 and float(w.max()) > 0.95  # the object's pixels weigh ≈ 0


def test_style_task_builds_the_presets_style_reward():
    from pipelines.tasks import TaskInputs, build_task
    from rewards.style import PatchStyleReward

    preset = SimpleNamespace(style_reward="patch", device=torch.device("cpu"), clip=None)
    setup = build_task(preset, "style", TaskInputs(prompt="a red circle moving up",
                                                   style_image=em.look_reference(Look.make("flat", ("teal",)))),
                       num_frames=8, height=32, width=32)
    assert isinstance(setup.reward, PatchStyleReward)


def test_world2_halo_ignores_a_dark_fringe_on_a_tinted_look():
    from scipy import ndimage

    for tint in ("navy", "teal", "olive"):
        a = _clip(Look.make("flat", (tint,)))
        for k in range(len(a)):
            obj = a[k].max(0) - a[k].min(0) > 0.5
            ring = ndimage.binary_dilation(obj, iterations=2) & ~obj
            a[k][:, ring] *= 0.2  # a dark fringe, as the micro models draw beside objects
        assert max(halo(a, world=2)) == 0, tint
