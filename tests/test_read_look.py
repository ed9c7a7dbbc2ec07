"""`read_look`: any image (any size, mode, channels; a user's photo too) maps to its nearest look with a confidence
and words; what is not an image gets a clear error naming the style image."""
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.micro import looks
from pipelines.micro.looks import ALL_LOOKS, Look, LookReading, look_rgb, read_look


def _pil(lk, size=32, phase=(0, 0)):
    return Image.fromarray((look_rgb(lk, size, phase).transpose(1, 2, 0) * 255).round().astype(np.uint8))


def test_every_look_image_reads_as_itself():
    for lk in ALL_LOOKS:
        r = read_look(_pil(lk))
        assert isinstance(r, LookReading) and r.look == lk and r.confidence > 0.95, (lk, r)
        assert r.sentence == lk.describe()


def test_scaled_shifted_and_converted_references():
    lk = Look.make("stripes", ("teal", "beige"), 45, "wide")
    assert str(read_look(_pil(lk))).startswith("teal and beige wide rising diagonal stripes (matches closely")
    big = _pil(lk).resize((512, 512), Image.NEAREST)  # the same look at 16x: read at the world's scale
    assert read_look(big).look == lk and read_look(big).size == (512, 512)
    assert read_look(_pil(lk, phase=(7, 0))).look == lk  # any phase
    assert read_look(_pil(lk).convert("RGBA")).look == lk
    assert read_look(_pil(lk).convert("P")).look == lk
    gray = read_look(_pil(lk).convert("L"))  # gray: the nearest gray look of the same geometry
    assert (gray.look.pattern, gray.look.angle, gray.look.width) == ("stripes", 45, "wide")
    assert set(gray.look.colours) <= {"black", "charcoal", "gray", "silver"}
    # a wide non-square photo of vertical bands 64 px wide in a 256 px centre square: wide vertical stripes
    w = np.zeros((256, 400, 3), np.uint8)
    xs = np.arange(400) - 72
    w[:, (xs // 64) % 2 == 1] = (20, 30, 80)
    assert read_look(w).look == Look.make("stripes", ("black", "navy"), 90, "wide")
    # arrays in any layout and range, tensors, a file path
    arr = look_rgb(lk)
    for x in (arr, arr.transpose(1, 2, 0), arr * 2 - 1, torch.from_numpy(arr), arr[None]):
        assert read_look(x).look == lk


def test_any_image_gets_a_reading(tmp_path):
    rng = np.random.default_rng(0)
    photo = np.clip(np.linspace(0, 1, 300)[None, :, None] * [0.9, 0.5, 0.2] + rng.normal(0, 0.1, (200, 300, 3)), 0, 1)
    inputs = [Image.new("RGB", (1, 1), (200, 30, 30)), Image.new("L", (3, 7), 128), Image.new("RGBA", (5, 5)),
              Image.new("I;16", (9, 9), 3000), Image.new("F", (4, 4), 0.5), Image.new("1", (6, 6), 1),
              Image.new("CMYK", (8, 8), (10, 200, 30, 0)), rng.random((240, 320, 3)), photo,
              (photo * 255).astype(np.uint8),
              np.ones((1, 1)), np.zeros((2, 2, 4))]
    path = tmp_path / "ref.png"
    Image.fromarray((photo * 255).astype(np.uint8)).save(path)
    inputs.append(str(path))
    for x in inputs:
        r = read_look(x)
        assert r.look in ALL_LOOKS and 0.0 <= r.confidence <= 1.0 and r.rms >= 0.0
        assert r.sentence and "confidence" in str(r)
    assert read_look(Image.new("RGB", (1, 1), (0, 0, 0))).look == Look("flat", ("black",))
    assert read_look(Image.new("RGB", (1, 1), (200, 30, 30))).confidence < 0.4  # bright red is far from every look
    assert read_look(Image.new("RGB", (640, 480), (25, 30, 82))).look == Look("flat", ("navy",))


@pytest.mark.parametrize("bad, match", [
    (None, "no image given"), (np.zeros((0, 5, 3)), "empty"), (np.full((4, 4, 3), np.nan), "NaN"),
    ("/nonexistent/ref.png", "cannot read"), (object(), "not an image"), (np.zeros(5), "expected an image"),
    (np.zeros((5, 5, 2)), "channels"), ("not an image at all", "cannot read"),
])
def test_unusable_input_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=f"style image: .*{match}"):
        read_look(bad)


def test_not_an_image_file(tmp_path):
    p = tmp_path / "ref.png"
    p.write_text("hello")
    with pytest.raises(ValueError, match="style image: cannot read"):
        read_look(p)


def test_style_reading_compares_reference_and_video():
    from pipelines.micro import world
    from pipelines.micro.detector import style_reading

    lk = Look.make("stripes", ("teal", "beige"), 45, "wide")
    video, _ = world.render_clip("red", "circle", "moving up", lk, seed=0)
    r = style_reading(_pil(lk).resize((300, 300), Image.NEAREST), video)
    assert r["same"] and r["video"] == lk and r["reference"].look == lk
    assert r["sentence"].startswith("your reference reads as teal and beige wide rising diagonal stripes (matches")
    assert r["sentence"].endswith("the video's background reads as teal and beige wide rising diagonal stripes "
                                  "(the same look)")
    other, _ = world.render_clip("red", "circle", "moving up", "gray", seed=0)
    r = style_reading(_pil(lk), other)
    assert not r["same"] and r["sentence"].endswith("the video's background reads as a gray background")
    with pytest.raises(ValueError, match="style image: no image given"):
        style_reading(None, other)
