"""World 2's detector: the look (pattern, angle, width, both colours) read back exactly, with the object, on rendered
clips of every look; robust on blurred and noisy ones. World 1's reading is unchanged (tests/test_micro_world.py)."""
import numpy as np
import torch
from scipy import ndimage

from pipelines.micro import looks, world
from pipelines.micro.detector import detect


def _clips(seed):
    rng = np.random.default_rng(seed)
    for i, lk in enumerate(looks.ALL_LOOKS):
        c, s, m = list(world.COLOURS)[i % 6], world.SHAPES[(i // 6) % 3], world.MOTIONS[(i + seed) % 5]
        v, meta = world.render_clip(c, s, m, lk, rng=rng)
        yield (c, s, m, lk), v, meta, rng


def test_reads_every_look_and_object_exactly():
    n = 0
    for (c, s, m, lk), v, meta, _ in _clips(0):
        d = detect(v, world=2)
        assert (d["colour"], d["shape"], d["motion"], d["look"]) == (c, s, m, lk), (meta["caption"], d["look"])
        assert d["background"] == lk.describe() and d["look_rms"] < 1e-6
        assert d["colour_consistency"] == 1.0
        if m == "bouncing":
            assert d["bounce_frames"] == meta["impact_frames"]
        n += 1
    assert n == len(looks.ALL_LOOKS)


def test_reads_looks_on_blurred_noisy_clips():
    """Generated videos are blurry and noisy: at most 1 % of the looks' clips may be misread in any attribute."""
    wrong = []
    for (c, s, m, lk), v, _, rng in _clips(1):
        x = ndimage.gaussian_filter(v.numpy(), sigma=(0, 0, 0.6, 0.6))
        x = np.clip(x + rng.normal(0, 0.03, x.shape), 0, 1)
        d = detect(x, world=2)
        if (d["colour"], d["shape"], d["motion"], d["look"]) != (c, s, m, lk):
            wrong.append((lk, d["look"]))
    assert len(wrong) <= len(looks.ALL_LOOKS) // 100, wrong


def test_phase_shifted_and_uint8_looks():
    """A look at another phase (a generated video need not start its bands at the corner) reads as the same look."""
    lk = looks.Look.make("stripes", ("teal", "beige"), 45, "wide")
    frames, _ = world.render_clip("red", "circle", "moving up", lk, seed=0)
    shifted = frames.numpy().copy()
    bg = looks.look_rgb(lk, phase=(5, 0))
    obj = frames.numpy() != looks.look_rgb(lk)[None]
    shifted = np.where(obj, frames.numpy(), bg[None])
    d = detect(shifted, world=2)
    assert d["look"] == lk and d["colour"] == "red" and d["look_rms"] < 1e-6
    assert np.array_equal(looks.look_rgb(d["look"], 32, d["look_phase"]), bg)  # redrawn at the read phase
    u8 = (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    assert detect(u8, world=2)["look"] == lk


def test_world1_backgrounds_read_as_their_looks_and_empty_video():
    for name, lk in looks.WORLD1_LOOKS.items():
        v, _ = world.render_clip("yellow", "square", "moving down", name, seed=3)
        assert detect(v)["background"] == name  # world 1's reading, unchanged
        assert detect(v, world=2)["look"] == lk
    d = detect(torch.zeros(8, 3, 32, 32), world=2)
    assert d["colour"] is None and d["look"] == looks.Look("flat", ("black",))
