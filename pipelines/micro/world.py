"""The micro world: procedurally rendered 8-frame clips of one coloured object, with exact ground truth.

Clips are `(f, 3, 32, 32)` float tensors in [0, 1] at 4 fps. One object (~10 px) of a saturated colour (or
white) moves over a colourless background (black, mid gray, or a checkered/striped pattern of two darker grays).
Object pixels are therefore always separable from background pixels by a simple rule (saturation or
brightness above any background level), which makes the detector in `detector.py` exact on rendered clips and
robust on generated ones.

Two worlds share the objects, motions, renderer and detector (`WORLD1`, `WORLD2`, `get_world`):
- World 1 (the shipped models' data, the default): background ∈ `BACKGROUNDS`, caption
  ``a {colour} {shape} {motion} on a {background} background``, tokenizer vocabulary `VOCABULARY`.
- World 2: backgrounds are *looks* (`looks.py`: flat, two-colour stripes at 0/45/90/135 degrees, checks, in dark and
  muted tints; world 1's four backgrounds are four of them); captions describe the look in words and any attribute
  may be left out (`caption2`, `parse_caption2`, attribute dropout in `WORLD2.sample`); vocabulary `VOCABULARY2`.
"""
from __future__ import annotations

import itertools
import re
from typing import Iterable

import numpy as np
import torch

from .looks import ALL_LOOKS, ANGLE_WORDS, COLOUR_ALIASES, PALETTE, WIDTHS, Look, look_phrase, look_rgb, sample_look

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


def caption_notice(text: str, world=1) -> str | None:
    """None when `text` is a world caption; else a sentence naming what the micro world knows (and unknown words).

    The micro models were trained on world captions only: any other prompt gives a video unrelated to it.
    `world=2`: world 2's notice (`caption_notice2`: prompts may leave any attribute out).
    """
    if world not in (1, "1") and get_world(world).version == 2:
        return caption_notice2(text)
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


def background_rgb(background, size: int = SIZE) -> np.ndarray:
    """(3, size, size) float32 image of a background: a world-1 name (gray levels) or a world-2 `Look`."""
    if isinstance(background, Look):
        return look_rgb(background, size)
    return np.repeat(background_image(background, size)[None], 3, axis=0)


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
    """Frames `(n, 3, size, size)` float32 with the object's top-left at each `(x, y)` of `positions`; `background`
    is a world-1 name or a world-2 `Look`."""
    bg = background_rgb(background, size)
    col = np.asarray(COLOURS[colour], np.float32)
    mask = SHAPE_MASKS[shape]
    frames = np.repeat(bg[None], len(positions), axis=0).copy()
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
    if (colour not in COLOURS or shape not in SHAPES or motion not in MOTIONS
            or not (isinstance(background, Look) or background in BACKGROUNDS)):
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
        "caption": (caption2(colour, shape, motion, background) if isinstance(background, Look)
                    else caption(colour, shape, motion, background)),
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


# ------------------------------------------------------------------------------------------------- world 2
#: The attributes a world-2 caption may name (any may be left out) and the parts of a look phrase.
ATTRIBUTES2 = ("colour", "shape", "motion", "look")
LOOK_PARTS = ("colours", "width", "angle")
#: Training's attribute dropout: each attribute (and each part of a named look) is left out with this probability.
DROPOUT = 0.25
#: A caption that leaves the shape out names the object with this word ("a red object moving up").
OBJECT_WORD = "object"
_SHAPE_NOUNS = (OBJECT_WORD, "thing", "shape")
_WIDTH_WORDS = {"narrow": "narrow", "thin": "narrow", "wide": "wide", "thick": "wide", "broad": "wide"}
_ANGLE_PHRASES = {"horizontal": 0, "vertical": 90, "rising diagonal": 45, "falling diagonal": 135,
                  "diagonal": "diagonal"}  # bare 'diagonal': either diagonal (`looks.look_matches`)
_PATTERN_WORDS = {"stripes": "stripes", "striped": "stripes", "stripe": "stripes", "checks": "checks",
                  "checkered": "checks", "checked": "checks", "checkerboard": "checks", "plaid": None}
_LOOK_COLOURS = {**{c: c for c in PALETTE}, **COLOUR_ALIASES}

VOCABULARY2: list[str] = sorted(
    set(VOCABULARY)
    | {"an", "and", OBJECT_WORD, "plain"}
    | {w for c in PALETTE for w in c.split()}
    | set(WIDTHS)
    | {w for a in ANGLE_WORDS.values() for w in a.split()}
    | {"stripes", "checks"}
)


def caption2(colour: str, shape: str, motion: str, look: Look, named=None, look_parts=None) -> str:
    """A world-2 caption naming the attributes in `named` (default all of `ATTRIBUTES2`) and, of a named look, the
    parts in `look_parts` (default all of `LOOK_PARTS`): 'a red circle moving up on navy and gray wide rising
    diagonal stripes', 'a red object moving up', 'a circle on a black background', 'an object on checks'."""
    named = set(ATTRIBUTES2 if named is None else named)
    parts = set(LOOK_PARTS if look_parts is None else look_parts)
    words = []
    if "colour" in named:
        words.append(colour)
    words.append(shape if "shape" in named else OBJECT_WORD)
    head = "an" if words[0][0] in "aeiou" else "a"
    out = " ".join([head] + words)
    if "motion" in named:
        out += f" {motion}"
    if "look" in named:
        out += f" on {look_phrase(look, parts)}"
    return out


def _normalise(text: str) -> list[str]:
    return " ".join(str(text).strip().lower().replace("-", " ").replace(",", " ").rstrip(".").split()).split()


def _take(words: list[str], i: int, phrases) -> tuple[str | None, int]:
    """The longest phrase of `phrases` (multi-word strings) starting at words[i], and the index after it."""
    for p in sorted(phrases, key=lambda p: -len(p.split())):
        n = len(p.split())
        if words[i:i + n] == p.split():
            return p, i + n
    return None, i


def parse_look_phrase(words: list[str]) -> dict | None:
    """What a look phrase names (`pattern`, `colours` (palette order), `width`, `angle`), or None when the words are
    not a look phrase. 'navy and gray wide rising diagonal stripes', 'a black background', 'stripes', 'a checkered
    background', 'a plain background'."""
    i, out = 0, {}
    if words[i:i + 1] in (["a"], ["an"], ["the"]):
        i += 1
    cols = []
    c, i = _take(words, i, _LOOK_COLOURS)
    if c:
        cols.append(_LOOK_COLOURS[c])
        if words[i:i + 1] == ["and"]:
            c, i = _take(words, i + 1, _LOOK_COLOURS)
            if not c:
                return None
            cols.append(_LOOK_COLOURS[c])
    if len(cols) == 2 and cols[0] == cols[1]:
        return None
    w, i = _take(words, i, _WIDTH_WORDS)
    a, i = _take(words, i, _ANGLE_PHRASES)
    plain = words[i:i + 1] == ["plain"]
    i += plain
    pat_word, i = _take(words, i, [p for p, v in _PATTERN_WORDS.items() if v])
    if pat_word in ("striped", "checkered", "checked"):  # an adjective: '... background' follows
        if words[i:i + 1] != ["background"]:
            return None
        i += 1
    elif pat_word is None:
        if words[i:i + 1] != ["background"]:
            return None
        i += 1
    if i != len(words):
        return None
    pattern = _PATTERN_WORDS[pat_word] if pat_word else ("flat" if plain or len(cols) == 1 else None)
    if plain and (pat_word or len(cols) > 1):
        return None
    if pattern == "flat" and (w or a or len(cols) > 1):
        return None
    if pattern == "checks" and a:
        return None
    if pattern is None and (w or a):  # 'wide background': a width says the look has bands
        return None
    if pattern:
        out["pattern"] = pattern
    if cols:
        order = list(PALETTE)
        out["colours"] = tuple(sorted(cols, key=order.index))
    if w:
        out["width"] = _WIDTH_WORDS[w]
    if a:
        out["angle"] = _ANGLE_PHRASES[a]
        out["pattern"] = "stripes"
    return out


def parse_caption2(text: str) -> dict | None:
    """What a world-2 prompt names: a dict with any of `colour`, `shape`, `motion` and `look` (a dict of the look
    parts named, see `parse_look_phrase`); {} for a prompt that names nothing ('an object'); None for a prompt that
    does not parse. Letter case, commas, a final full stop, 'the' for 'a' and 'over' for 'on' do not matter.
    World-1 captions parse too (their backgrounds as look phrases)."""
    if not isinstance(text, str):
        return None
    words = _normalise(text)
    if not words:
        return None
    i, out = 0, {}
    if words[0] in ("a", "an", "the"):
        i = 1
    c, i = _take(words, i, COLOURS)
    if c:
        out["colour"] = c
    s, i = _take(words, i, (*SHAPES, *_SHAPE_NOUNS))
    if s in SHAPES:
        out["shape"] = s
    if c and not s:  # 'a red moving up': a colour names an object
        return None
    m, i = _take(words, i, MOTIONS)
    if m:
        out["motion"] = m
    if words[i:i + 1] in (["on"], ["over"]):
        look = parse_look_phrase(words[i + 1:])
        if look is None:
            return None
        out["look"] = look
        i = len(words)
    if i != len(words) or (i == 1 and words[0] in ("a", "an", "the")):
        return None
    return out


#: How `caption_notice2` names an attribute a prompt leaves out.
_LEFT_WORDS = {"colour": "the object's colour", "shape": "its shape", "motion": "its motion",
               "look": "the background look"}


def caption_notice2(text: str) -> str | None:
    """None when a world-2 prompt names every attribute; for one that leaves some out (a valid prompt), a sentence
    saying which the sampler chooses ('a red circle moving up': the background look; on the Style tab the reference
    guides it); for one that names nothing or does not parse, a sentence on what the world knows."""
    parsed = parse_caption2(text)
    if parsed:
        left = [k for k in ATTRIBUTES2 if k not in parsed]
        if not left:
            return None
        words = [_LEFT_WORDS[k] for k in left]
        what = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        return (f"this prompt names no {' or '.join(left)}, so {what} "
                f"{'is' if len(left) == 1 else 'are'} left to the sampler"
                + (" (on the Style tab, to the style reference)" if "look" in left else ""))
    known = {w for phrase in (*COLOURS, *SHAPES, *MOTIONS, *_SHAPE_NOUNS, *_LOOK_COLOURS, *_WIDTH_WORDS,
                              *_ANGLE_PHRASES, *_PATTERN_WORDS) for w in phrase.split()}
    known |= {"a", "an", "the", "on", "over", "and", "background", "plain"}
    words = [w for w in _normalise(text or "")]
    unknown = [w for w in dict.fromkeys(words) if w not in known]
    why = ("names nothing the world knows" if parsed == {} else "does not parse"
           + (f" (unknown words: {', '.join(unknown[:8])})" if unknown else " (check the word order)"))
    return ("the micro models know prompts like 'a {colour} {shape} {motion} on {look}', where any part may be left "
            f"out (colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)}; motions: {', '.join(MOTIONS)}; "
            "looks: 'a {tint} background', '{tint} and {tint} [narrow|wide] "
            "[horizontal|vertical|rising diagonal|falling diagonal] stripes', '{tint} and {tint} [narrow|wide] checks'"
            f", tints: {', '.join(PALETTE)}); this prompt {why}, so the video leaves everything to the sampler")


def sample_attributes2(rng: np.random.Generator, split: str = "train", dropout: float = 0.0) -> dict:
    """Random world-2 attributes: colour, shape, motion (split as `sample_attributes`), `background` (a `Look`, split
    the same way over `looks.HELD_OUT_LOOKS`), and what the caption names: `named` (each attribute left out with
    probability `dropout`) and `look_parts` (each part of a named look left out with that probability)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    a = sample_attributes(rng, split)
    a["background"] = sample_look(rng, split)
    keep = rng.random(len(ATTRIBUTES2) + len(LOOK_PARTS)) >= dropout
    a["named"] = tuple(k for k, on in zip(ATTRIBUTES2, keep) if on)
    a["look_parts"] = tuple(k for k, on in zip(LOOK_PARTS, keep[len(ATTRIBUTES2):]) if on)
    return a


def named_target(attrs: dict) -> dict:
    """What the caption of world-2 `attrs` names, in `parse_caption2`'s form (what a video of it must show)."""
    out = {k: attrs[k] for k in ("colour", "shape", "motion") if k in attrs.get("named", ATTRIBUTES2)}
    if "look" in attrs.get("named", ATTRIBUTES2):
        out["look"] = parse_look_phrase(look_phrase(attrs["background"], attrs.get("look_parts", LOOK_PARTS)).split())
    return out


class World:
    """One version of the micro world, as the rest of the code passes it around: its backgrounds, vocabulary,
    caption / parse / notice functions and attribute sampler. `WORLD1` (the default, what the shipped models were
    trained on) and `WORLD2`; `get_world(1 | 2 | World)`."""

    def __init__(self, version: int):
        self.version = version
        self.vocabulary = VOCABULARY if version == 1 else VOCABULARY2
        self.backgrounds = list(BACKGROUNDS) if version == 1 else list(ALL_LOOKS)

    def __repr__(self):
        return f"World({self.version})"

    def caption_of(self, attrs: dict) -> str:
        if self.version == 1:
            return caption(attrs["colour"], attrs["shape"], attrs["motion"], attrs["background"])
        return caption2(attrs["colour"], attrs["shape"], attrs["motion"], attrs["background"], attrs.get("named"),
                        attrs.get("look_parts"))

    def parse(self, text: str) -> dict | None:
        return parse_caption(text) if self.version == 1 else parse_caption2(text)

    def notice(self, text: str) -> str | None:
        return caption_notice(text) if self.version == 1 else caption_notice2(text)

    def sample(self, rng: np.random.Generator, split: str = "train", dropout: float = 0.0) -> dict:
        if self.version == 1:
            if dropout:
                raise ValueError("world 1 captions name every attribute: attribute dropout needs world 2")
            return sample_attributes(rng, split)
        return sample_attributes2(rng, split, dropout)

    def target(self, attrs: dict) -> dict:
        """What a video of `attrs` must show, as the parser gives it for its caption."""
        return self.parse(self.caption_of(attrs))


WORLD1 = World(1)
WORLD2 = World(2)


def get_world(world=1) -> World:
    """`WORLD1` or `WORLD2` from 1, 2, '1', '2' or a `World`; ValueError otherwise."""
    if isinstance(world, World):
        return world
    try:
        v = int(world)
    except (TypeError, ValueError):
        v = None
    if v not in (1, 2):
        raise ValueError(f"world must be 1 or 2, got {world!r}")
    return WORLD1 if v == 1 else WORLD2


# ------------------------------------------------------------------------------------- world 2's prompt set
#: The forms of `prompt_set2`'s partial prompts: which attributes and look parts each names.
PARTIAL_FORMS = [
    (("colour", "shape", "motion"), LOOK_PARTS),  # the look left to the sampler (or a style reference)
    (("look",), LOOK_PARTS),  # only the look
    (("colour", "look"), LOOK_PARTS),
    (("shape", "motion"), ()),
    (("colour", "motion", "look"), ("colours",)),  # 'a red object moving up on navy and gray stripes'
    (("colour", "shape", "look"), ("width", "angle")),  # 'a red circle on wide vertical stripes'
]


def prompt_set2(n_seen: int = 12) -> list[dict]:
    """World 2's fixed evaluation prompts (split, prompt, target = what it names in `parse_caption2`'s form):
    `seen` (`n_seen` training combinations on training looks, everything named), `held-out` (every held-out
    combination, on a held-out look), `partial` (each of `PARTIAL_FORMS` on `n_seen // 2` training draws)."""
    rng = np.random.default_rng(123)
    from .looks import HELD_OUT_LOOKS, TRAIN_LOOKS

    out = []

    def add(split, c, s, m, look, named=ATTRIBUTES2, parts=LOOK_PARTS):
        a = {"colour": c, "shape": s, "motion": m, "background": look, "named": tuple(named),
             "look_parts": tuple(parts)}
        out.append({"split": split, "prompt": WORLD2.caption_of(a), "target": named_target(a)})

    seen = [TRAIN_COMBOS[i] for i in sorted(rng.choice(len(TRAIN_COMBOS), size=n_seen, replace=False))]
    for c, s, m in seen:
        add("seen", c, s, m, sample_look(rng, "train"))
    for i, (c, s, m) in enumerate(HELD_OUT):
        add("held-out", c, s, m, HELD_OUT_LOOKS[(7 * i) % len(HELD_OUT_LOOKS)])
    for named, parts in PARTIAL_FORMS:
        for _ in range(max(1, n_seen // 2)):
            c, s, m = TRAIN_COMBOS[int(rng.integers(len(TRAIN_COMBOS)))]
            look = sample_look(rng, "train")
            while "look" in named and look.pattern == "flat" and "colours" not in parts:  # 'a plain background'
                look = sample_look(rng, "train")
            add("partial", c, s, m, look, named, parts)
    return out


def honoured(detection: dict, target: dict) -> dict:
    """Per attribute a prompt names (`target`, `parse_caption2`'s form), whether a world-2 detection (`detect(...,
    world=2)`) shows it: {"colour": bool, ..., "look": bool} for the named ones only."""
    from .looks import look_matches

    out = {k: detection.get(k) == target[k] for k in ("colour", "shape", "motion") if k in target}
    if "look" in target:
        look = detection.get("look")
        out["look"] = look is not None and look_matches(look, target["look"])
    return out
