"""The micro world: procedurally rendered 8-frame clips of one coloured object, with exact ground truth.

Clips are `(f, 3, 32, 32)` float tensors in [0, 1] at 4 fps. One object (~10 px) of a saturated colour (or
white) moves over a colourless background (black, mid gray, or a checkered/striped pattern of two darker grays).
Object pixels are therefore always separable from background pixels by a simple rule (saturation or
brightness above any background level), which makes the detector in `detector.py` exact on rendered clips and
robust on generated ones.

Caption: ``a {colour} {shape} {motion} on a {background} background``.
"""
from __future__ import annotations

import itertools
import re
from typing import Iterable

import numpy as np
import torch

FPS = 4
SIZE = 32
NUM_FRAMES = 8
OBJ = 10  # object bounding box size in px
SAMPLE_RATE = 16000

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "white": (1.0, 1.0, 1.0),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("moving left to right", "moving right to left", "moving up", "moving down", "bouncing")
BACKGROUNDS = ("black", "gray", "checkered", "striped")

# Background gray levels: all colourless and well below white (object threshold 0.78) and above black.
GRAY_LEVEL = 0.45
PATTERN_LEVELS = (0.25, 0.6)
PATTERN_CELL = 4  # px

FLOOR_Y = SIZE - OBJ  # top-left y of the object when it touches the floor (bottom row = SIZE-1)
BOUNCE_PERIOD = 4  # frames between impacts

VOCABULARY: list[str] = sorted(
    set(["a", "on", "background"])
    | set(COLOURS)
    | set(SHAPES)
    | set(w for m in MOTIONS for w in m.split())
    | set(BACKGROUNDS)
)

# ~10 % of the 90 (colour, shape, motion) combinations, never rendered for training. Every colour, shape and
# motion stays seen in many other combinations.
HELD_OUT: list[tuple[str, str, str]] = [
    ("red", "triangle", "moving up"),
    ("green", "circle", "bouncing"),
    ("blue", "square", "moving right to left"),
    ("yellow", "triangle", "moving left to right"),
    ("cyan", "square", "moving down"),
    ("white", "circle", "moving left to right"),
    ("red", "circle", "moving down"),
    ("blue", "triangle", "bouncing"),
    ("yellow", "square", "moving up"),
]
_HELD_OUT_SET = set(HELD_OUT)
ALL_COMBOS: list[tuple[str, str, str]] = list(itertools.product(COLOURS, SHAPES, MOTIONS))
TRAIN_COMBOS: list[tuple[str, str, str]] = [c for c in ALL_COMBOS if c not in _HELD_OUT_SET]


def is_held_out(colour: str, shape: str, motion: str) -> bool:
    return (colour, shape, motion) in _HELD_OUT_SET


def caption(colour: str, shape: str, motion: str, background: str) -> str:
    return f"a {colour} {shape} {motion} on a {background} background"


_CAPTION_RE = re.compile(
    r"^an? (?P<colour>{}) (?P<shape>{}) (?P<motion>{}) on an? (?P<background>{}) background\.?$".format(
        "|".join(COLOURS), "|".join(SHAPES), "|".join(MOTIONS), "|".join(BACKGROUNDS) + "|grey"
    )
)


def parse_caption(text: str) -> dict | None:
    """Attributes of a world caption (case and extra spaces ignored; 'grey' accepted), or None."""
    if not isinstance(text, str):
        return None
    norm = " ".join(text.strip().lower().replace("-", " ").split())
    m = _CAPTION_RE.match(norm)
    if m is None:
        return None
    d = m.groupdict()
    if d["background"] == "grey":
        d["background"] = "gray"
    return d


def caption_notice(text: str) -> str | None:
    """None when `text` is a world caption; else a sentence naming what the micro world knows (and unknown words).

    The micro models were trained on world captions only: any other prompt gives a video unrelated to it.
    """
    if parse_caption(text) is not None:
        return None
    known = {w for phrase in (*COLOURS, *SHAPES, *MOTIONS, *BACKGROUNDS) for w in phrase.split()}
    known |= {"a", "an", "on", "background", "grey"}
    words = " ".join(str(text or "").lower().replace("-", " ").replace(".", " ").replace(",", " ").split()).split()
    unknown = [w for w in dict.fromkeys(words) if w not in known]
    return ("the micro models know one kind of prompt, 'a {colour} {shape} {motion} on a {background} background' "
            f"(colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)}; motions: {', '.join(MOTIONS)}; "
            f"backgrounds: {', '.join(BACKGROUNDS)}); this prompt does not parse"
            + (f" (unknown words: {', '.join(unknown[:8])})" if unknown else " (check the word order)")
            + ", so the video will not follow it")


def sample_attributes(rng: np.random.Generator, split: str = "train") -> dict:
    """Random attributes; split 'train' never returns a held-out combo, 'heldout' only those, 'all' any."""
    combos = {"train": TRAIN_COMBOS, "heldout": HELD_OUT, "all": ALL_COMBOS}.get(split)
    if combos is None:
        raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    colour, shape, motion = combos[int(rng.integers(len(combos)))]
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    return {"colour": colour, "shape": shape, "motion": motion, "background": background}


# --------------------------------------------------------------------------------------------- rendering
def _shape_masks() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:OBJ, 0:OBJ].astype(np.float64) + 0.5
    c = OBJ / 2
    circle = (xx - c) ** 2 + (yy - c) ** 2 <= (OBJ / 2) ** 2
    square = np.ones((OBJ, OBJ), dtype=bool)
    # Upward-pointing isosceles triangle: apex at top centre, base = bottom row.
    half_width = yy / OBJ * (OBJ / 2)
    triangle = np.abs(xx - c) <= half_width + 0.25
    return {"circle": circle, "square": square, "triangle": triangle}


SHAPE_MASKS = _shape_masks()


def background_image(background: str, size: int = SIZE) -> np.ndarray:
    """(size, size) gray level image of a background (backgrounds are colourless)."""
    yy, xx = np.mgrid[0:size, 0:size]
    lo, hi = PATTERN_LEVELS
    if background == "black":
        return np.zeros((size, size), np.float32)
    if background == "gray":
        return np.full((size, size), GRAY_LEVEL, np.float32)
    if background == "checkered":
        return np.where(((yy // PATTERN_CELL) + (xx // PATTERN_CELL)) % 2 == 0, lo, hi).astype(np.float32)
    if background == "striped":
        return np.where((yy // PATTERN_CELL) % 2 == 0, lo, hi).astype(np.float32)
    raise ValueError(f"unknown background {background!r}")


def _rng(rng=None, seed=None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None and seed is None:
        seed = int(rng)
    return np.random.default_rng(seed)


_STRAIGHT = ("moving left to right", "moving right to left", "moving up", "moving down")


def _straight_ranges(num_frames: int, size: int):
    """Speeds, the start range for a speed, and the cross-axis range of a straight path (what `trajectory` draws)."""
    span, steps = size - OBJ, max(num_frames - 1, 1)
    vmax = max(1, min(3, span // steps))

    def starts(v: int) -> range:
        r = range(0, span - v * steps + 1)
        if not r:
            raise ValueError(f"{num_frames} frames do not fit a straight path in a {size}px world")
        return r

    return range(max(1, vmax - 1), vmax + 1), starts, range(2, span - 1)


def _straight_path(motion: str, v: int, start: int, other: int, num_frames: int):
    along = [start + v * k for k in range(num_frames)]
    if motion in ("moving right to left", "moving up"):
        along = along[::-1]
    if motion in ("moving left to right", "moving right to left"):
        return along, [other] * num_frames
    return [other] * num_frames, along


def _bounce_ranges(size: int):
    """Heights, phases and x positions of a bouncing path."""
    span = size - OBJ
    return range(12, min(span, 18) + 1), range(BOUNCE_PERIOD), range(2, span - 1)


def _bounce_path(h: int, t0: int, x: int, num_frames: int, size: int):
    floor, half = size - OBJ, BOUNCE_PERIOD / 2
    phases = [(k + t0) % BOUNCE_PERIOD for k in range(num_frames)]
    ys = [int(round(floor - h * (1 - ((ph - half) / half) ** 2))) for ph in phases]
    return [x] * num_frames, ys, [k for k, ph in enumerate(phases) if ph == 0]


def _draw(rng: np.random.Generator, r: range) -> int:
    return int(rng.integers(r.start, r.stop))


def trajectory(motion: str, num_frames: int, rng: np.random.Generator, size: int = SIZE):
    """Top-left (x, y) per frame and bounce impact frame indices."""
    if motion in _STRAIGHT:
        speeds, starts, others = _straight_ranges(num_frames, size)
        v = _draw(rng, speeds)
        start = _draw(rng, starts(v))
        other = _draw(rng, others)
        xs, ys = _straight_path(motion, v, start, other, num_frames)
        return xs, ys, []
    if motion == "bouncing":
        heights, phases, xs = _bounce_ranges(size)
        h, t0, x = _draw(rng, heights), _draw(rng, phases), _draw(rng, xs)
        return _bounce_path(h, t0, x, num_frames, size)
    raise ValueError(f"unknown motion {motion!r}")


def enumerate_trajectories(motion: str, num_frames: int = NUM_FRAMES, size: int = SIZE):
    """Every path `trajectory(motion, num_frames, rng)` can return, with its probability.

    Returns `(positions, probs)`: int array `(n, num_frames, 2)` of top-left `(x, y)` per frame and float array
    `(n,)` summing to 1. It walks the same ranges `trajectory` draws from (a test checks the two agree), which lets
    training compute the exact posterior mean of a clip given a noisy version of it (`pipelines.training.micro_data.WorldLatents`,
    `--x0-target`).
    """
    paths: list[list[tuple[int, int]]] = []
    probs: list[float] = []
    if motion in _STRAIGHT:
        speeds, starts, others = _straight_ranges(num_frames, size)
        for v in speeds:
            for start in starts(v):
                for other in others:
                    paths.append(list(zip(*_straight_path(motion, v, start, other, num_frames))))
                    probs.append(1.0 / (len(speeds) * len(starts(v)) * len(others)))
    elif motion == "bouncing":
        heights, phases, xs = _bounce_ranges(size)
        for h in heights:
            for t0 in phases:
                for x in xs:
                    paths.append(list(zip(*_bounce_path(h, t0, x, num_frames, size)[:2])))
                    probs.append(1.0 / (len(heights) * len(phases) * len(xs)))
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return np.asarray(paths, dtype=np.int64), np.asarray(probs, dtype=np.float64)


def render_positions(colour: str, shape: str, background: str, positions, size: int = SIZE) -> np.ndarray:
    """Frames `(n, 3, size, size)` float32 with the object's top-left at each `(x, y)` of `positions`."""
    bg = background_image(background, size)
    col = np.asarray(COLOURS[colour], np.float32)
    mask = SHAPE_MASKS[shape]
    frames = np.repeat(np.repeat(bg[None, None], 3, axis=1), len(positions), axis=0).copy()
    for k, (x, y) in enumerate(positions):
        region = frames[k, :, y : y + OBJ, x : x + OBJ]
        region[:, mask] = col[:, None]
    return frames


def render_clip(
    colour: str,
    shape: str,
    motion: str,
    background: str,
    num_frames: int = NUM_FRAMES,
    size: int = SIZE,
    rng=None,
    seed: int | None = None,
):
    """Render one clip. Returns (frames (f, 3, size, size) float32 in [0, 1], meta dict)."""
    if colour not in COLOURS or shape not in SHAPES or motion not in MOTIONS or background not in BACKGROUNDS:
        raise ValueError(f"unknown attributes {(colour, shape, motion, background)!r}")
    g = _rng(rng, seed)
    xs, ys, impacts = trajectory(motion, num_frames, g, size)
    frames = render_positions(colour, shape, background, list(zip(xs, ys)), size)  # f,3,H,W
    mask = SHAPE_MASKS[shape]
    meta = {
        "colour": colour,
        "shape": shape,
        "motion": motion,
        "background": background,
        "caption": caption(colour, shape, motion, background),
        "positions": [(int(x), int(y)) for x, y in zip(xs, ys)],  # top-left of the object box
        "centroids": [
            (float(x + np.argwhere(mask)[:, 1].mean() + 0.0), float(y + np.argwhere(mask)[:, 0].mean()))
            for x, y in zip(xs, ys)
        ],
        "impact_frames": impacts,
        "fps": FPS,
        "num_frames": num_frames,
    }
    return torch.from_numpy(frames), meta


def render_batch(attrs: Iterable[dict], num_frames: int = NUM_FRAMES, rng=None, seed: int | None = None):
    """Render several clips -> (frames (b, f, 3, H, W), list of captions, list of metas)."""
    g = _rng(rng, seed)
    vids, caps, metas = [], [], []
    for a in attrs:
        v, m = render_clip(a["colour"], a["shape"], a["motion"], a["background"], num_frames=num_frames, rng=g)
        vids.append(v)
        caps.append(m["caption"])
        metas.append(m)
    return torch.stack(vids), caps, metas


# ------------------------------------------------------------------------------------------------- audio
def _click(sr: int, duration: float = 0.06) -> np.ndarray:
    t = np.arange(int(sr * duration)) / sr
    env = np.exp(-t / 0.012)
    rng = np.random.default_rng(1234)
    return (env * (0.7 * np.sin(2 * np.pi * 180 * t) + 0.3 * rng.standard_normal(t.shape))).astype(np.float32)


def synth_impacts_audio(impact_times: Iterable[float], duration: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 waveform of `duration` seconds with a short thump at each impact time (seconds)."""
    n = int(round(duration * sr))
    out = np.zeros(n, np.float32)
    click = _click(sr)
    for t in impact_times:
        start = int(round(float(t) * sr))
        if start < 0 or start >= n:
            continue
        seg = click[: n - start]
        out[start : start + len(seg)] += seg
    peak = np.abs(out).max()
    if peak > 0.9:
        out *= 0.9 / peak
    return out


def impact_audio(meta: dict, fps: int = FPS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Audio for a rendered clip: a thump at each bounce impact frame (silence for other motions)."""
    duration = meta.get("num_frames", NUM_FRAMES) / fps
    return synth_impacts_audio([k / fps for k in meta.get("impact_frames", [])], duration, sr)
