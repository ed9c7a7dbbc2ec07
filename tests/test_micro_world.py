"""Micro world: renderer -> detector round trip, captions, held-out split, impact audio."""
import itertools

import numpy as np
import pytest
import torch

from pipelines.micro import world
from pipelines.micro.detector import detect
from pipelines.micro.world import (
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    MOTIONS,
    SHAPES,
    caption,
    impact_audio,
    is_held_out,
    parse_caption,
    render_clip,
    sample_attributes,
    synth_impacts_audio,
)

ALL = list(itertools.product(COLOURS, SHAPES, MOTIONS, BACKGROUNDS))


def test_render_shape_and_range():
    v, meta = render_clip("red", "square", "moving up", "black", seed=0)
    assert v.shape == (8, 3, 32, 32) and v.dtype == torch.float32
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert len(meta["positions"]) == 8
    v16, meta16 = render_clip("red", "square", "moving up", "black", num_frames=16, seed=0)
    assert v16.shape[0] == 16 and detect(v16)["motion"] == "moving up"


def test_render_is_seeded():
    a, _ = render_clip("blue", "circle", "bouncing", "striped", seed=3)
    b, _ = render_clip("blue", "circle", "bouncing", "striped", seed=3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("seed", [0, 1])
def test_detector_round_trip_all_combos(seed):
    rng = np.random.default_rng(seed)
    for colour, shape, motion, background in ALL:
        v, meta = render_clip(colour, shape, motion, background, rng=rng)
        d = detect(v)
        got = (d["colour"], d["shape"], d["motion"], d["background"])
        assert got == (colour, shape, motion, background), (meta["caption"], got, meta["positions"])
        assert d["colour_consistency"] == 1.0
        assert all(c == colour for c in d["colours"])
        if motion == "bouncing":
            assert meta["impact_frames"], meta
            assert d["bounce_frames"] == meta["impact_frames"]
        else:
            assert meta["impact_frames"] == []


def test_detector_accepts_hwc_uint8():
    v, _ = render_clip("cyan", "triangle", "moving right to left", "checkered", seed=5)
    u8 = (v.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    d = detect(u8)
    assert (d["colour"], d["shape"], d["motion"], d["background"]) == ("cyan", "triangle", "moving right to left", "checkered")


def test_detector_colour_consistency_counts_frames():
    v, _ = render_clip("red", "square", "moving left to right", "gray", seed=1)
    v = v.clone()
    obj = (v[2] - v[2, :, :1, :1]).abs().sum(0) > 0  # red pixels of frame 2
    v[2][:, obj] = torch.tensor([0.0, 0.0, 1.0])[:, None]  # paint them blue
    d = detect(v)
    assert d["colour"] == "red" and d["colours"][2] == "blue"
    assert d["colour_consistency"] == pytest.approx(7 / 8)


def test_caption_round_trip():
    for colour, shape, motion, background in ALL:
        text = caption(colour, shape, motion, background)
        assert parse_caption(text) == {"colour": colour, "shape": shape, "motion": motion, "background": background}
    assert parse_caption("  A  RED   Circle moving  LEFT to right on a Grey background ") == {
        "colour": "red", "shape": "circle", "motion": "moving left to right", "background": "gray"}
    assert parse_caption("a purple circle bouncing on a black background") is None
    assert parse_caption("a dog") is None


def test_held_out_split():
    assert 7 <= len(HELD_OUT) <= 11 and len(set(HELD_OUT)) == len(HELD_OUT)
    assert all(is_held_out(*c) for c in HELD_OUT)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3000):
        a = sample_attributes(rng, "train")
        key = (a["colour"], a["shape"], a["motion"])
        assert not is_held_out(*key)
        seen.add(key)
    assert len(seen) == 90 - len(HELD_OUT)
    held = set()
    for _ in range(300):
        a = sample_attributes(rng, "heldout")
        held.add((a["colour"], a["shape"], a["motion"]))
    assert held == set(HELD_OUT)
    # every single attribute value still occurs in training
    for values, idx in ((COLOURS, 0), (SHAPES, 1), (MOTIONS, 2)):
        assert {k[idx] for k in seen} == set(values)
    assert set(world.TRAIN_COMBOS).isdisjoint(HELD_OUT)
    with pytest.raises(ValueError):
        sample_attributes(rng, "nope")


def test_impact_audio_peaks_at_impacts():
    v, meta = render_clip("green", "square", "bouncing", "black", seed=2)
    wav = impact_audio(meta, fps=4, sr=16000)
    assert wav.dtype == np.float32 and len(wav) == 2 * 16000
    win = 1600  # 100 ms energy windows
    energy = np.array([np.sum(wav[i : i + win] ** 2) for i in range(0, len(wav), win)])
    loud = set(np.nonzero(energy > 0.1 * energy.max())[0].tolist())
    expected = {int(round(k / 4 * 16000)) // win for k in meta["impact_frames"]}
    assert expected and expected <= loud
    assert all(any(abs(w - e) <= 1 for e in expected) for w in loud)
    silent = impact_audio(render_clip("green", "square", "moving up", "black", seed=2)[1])
    assert np.abs(silent).max() == 0.0


def test_synth_impacts_audio():
    times = [0.25, 1.0, 2.5]
    wav = synth_impacts_audio(times, duration=3.0, sr=8000)
    assert len(wav) == 24000
    for t in times:
        i = int(t * 8000)
        assert np.abs(wav[i : i + 400]).max() > 0.2
        if i > 800:
            assert np.abs(wav[i - 800 : i - 400]).max() < 1e-3


def test_detector_robust_to_blur_and_noise():
    """Generated videos are blurry and noisy: the detector must still read them."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    wrong = 0
    for colour, shape, motion, background in ALL:
        v, _ = render_clip(colour, shape, motion, background, rng=rng)
        x = ndimage.gaussian_filter(v.numpy(), sigma=(0, 0, 0.6, 0.6))
        x = np.clip(x + rng.normal(0, 0.03, x.shape), 0, 1)
        d = detect(x)
        wrong += (d["colour"], d["shape"], d["motion"], d["background"]) != (colour, shape, motion, background)
    assert wrong <= len(ALL) // 50, wrong


def test_detector_on_empty_video():
    d = detect(torch.zeros(8, 3, 32, 32))
    assert d["colour"] is None and d["motion"] is None and d["colour_consistency"] == 0.0
    assert d["background"] == "black"


@pytest.mark.parametrize("num_frames", [8, 12, 16])
@pytest.mark.parametrize("motion", world.MOTIONS)
def test_enumerate_trajectories_matches_sampler(motion, num_frames):
    """Every path `trajectory` draws is one of the enumerated paths, with the enumerated probabilities."""
    paths, probs = world.enumerate_trajectories(motion, num_frames)
    assert paths.shape[1:] == (num_frames, 2) and abs(probs.sum() - 1) < 1e-9
    index = {tuple(map(tuple, p)): i for i, p in enumerate(paths)}
    assert len(index) == len(paths)  # no path listed twice
    rng = np.random.default_rng(0)
    counts = np.zeros(len(paths))
    n = 4000
    for _ in range(n):
        xs, ys, _ = world.trajectory(motion, num_frames, rng)
        counts[index[tuple(zip(xs, ys))]] += 1  # KeyError if a sampled path is missing
    # frequencies within ~4 standard errors of the enumerated probabilities
    assert np.all(np.abs(counts / n - probs) <= 4 * np.sqrt(probs * (1 - probs) / n) + 1e-3)


def test_render_positions_equals_render_clip():
    frames, meta = world.render_clip("cyan", "triangle", "moving down", "striped", seed=4)
    again = world.render_positions("cyan", "triangle", "striped", meta["positions"])
    assert np.array_equal(frames.numpy(), again)
