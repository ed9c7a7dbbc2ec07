"""Looks: the micro world's backgrounds as a parametric family a style image can be matched to.

A look is a pattern (flat, two-colour stripes at 0/45/90/135 degrees, two-colour checks), a band width (narrow or
wide) and one or two colours from `PALETTE`, a set of dark and muted tints. Every palette colour keeps its brightest
channel at or below `BG_MAX` and its saturation (max - min channel) at or below `BG_SAT`, so the detector's
separability rule holds on every look: object pixels (saturated above `detector.SAT`, or white above
`detector.WHITE` in every channel) never occur in a background.

Geometry at 32x32 (other sizes scale): horizontal/vertical stripes and checks change colour every `cell` px (narrow 4,
wide 8; period 2 x cell); diagonal stripes change every `1.5 x cell` px along an axis (so their bands are about `cell`
px wide across). 45 degrees ("rising", `/`) bands are constant along x + y, 135 degrees ("falling", `\\`) along x - y.
Rendered looks start with their first colour (palette order) at the top-left; a reader allows any phase.

World 1's four backgrounds are four members: black and gray flat, charcoal/silver narrow checks and narrow horizontal
stripes (`WORLD1_LOOKS`), rendered bit-identically to world 1's `background_image`.

`fit_look` finds the look nearest (least squares) to background pixels; `read_look` maps any image to its nearest look
with a confidence and a sentence.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import numpy as np

SIZE = 32
#: The dark and muted tints of the looks (RGB in [0, 1]), in their canonical order.
PALETTE: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "charcoal": (0.25, 0.25, 0.25),
    "gray": (0.45, 0.45, 0.45),
    "silver": (0.6, 0.6, 0.6),
    "navy": (0.10, 0.12, 0.32),
    "teal": (0.08, 0.30, 0.28),
    "forest": (0.12, 0.32, 0.14),
    "olive": (0.40, 0.40, 0.18),
    "maroon": (0.36, 0.14, 0.15),
    "plum": (0.34, 0.16, 0.36),
    "brown": (0.44, 0.30, 0.22),
    "beige": (0.68, 0.62, 0.48),
}
#: Other words for palette colours a prompt may use.
COLOUR_ALIASES = {"grey": "gray", "dark gray": "charcoal", "dark grey": "charcoal", "light gray": "silver",
                  "light grey": "silver", "green": "forest", "khaki": "olive", "purple": "plum", "tan": "beige"}
BG_MAX = 0.7  # brightest channel of any look colour (objects: 1.0)
BG_SAT = 0.22  # largest saturation of a look colour (the detector's object threshold is 0.35)
#: Two colours share a look only when they are at least this far apart (RGB distance), so every two-colour look is
#: visibly two-coloured at 32x32.
MIN_CONTRAST = 0.15

PATTERNS = ("flat", "stripes", "checks")
ANGLES = (0, 45, 90, 135)
ANGLE_WORDS = {0: "horizontal", 45: "rising diagonal", 90: "vertical", 135: "falling diagonal"}
WIDTHS = {"narrow": 4, "wide": 8}  # band width (px at 32x32) of stripes and checks


@dataclass(frozen=True)
class Look:
    """One background look. `colours` are in palette order (one for flat, two otherwise); `angle` only for stripes,
    `width` for stripes and checks."""

    pattern: str
    colours: tuple
    angle: Optional[int] = None
    width: Optional[str] = None

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"look pattern must be one of {PATTERNS}, got {self.pattern!r}")
        bad = [c for c in self.colours if c not in PALETTE]
        if bad:
            raise ValueError(f"unknown look colour(s) {bad}; palette: {', '.join(PALETTE)}")
        n = 1 if self.pattern == "flat" else 2
        if len(self.colours) != n:
            raise ValueError(f"a {self.pattern} look has {n} colour(s), got {self.colours!r}")
        if n == 2 and list(PALETTE).index(self.colours[0]) >= list(PALETTE).index(self.colours[1]):
            raise ValueError(f"look colours must be two different colours in palette order, got {self.colours!r}")
        if (self.pattern == "stripes") != (self.angle is not None) or (
                self.angle is not None and self.angle not in ANGLES):
            raise ValueError(f"stripes (only) take an angle from {ANGLES}, got {self.pattern} at {self.angle!r}")
        if (self.pattern == "flat") != (self.width is None) or (self.width is not None and self.width not in WIDTHS):
            raise ValueError(f"stripes and checks (only) take a width from {tuple(WIDTHS)}, got {self.width!r}")

    @staticmethod
    def make(pattern: str, colours, angle: Optional[int] = None, width: Optional[str] = None) -> "Look":
        """A look with its colours put in palette order."""
        order = list(PALETTE)
        cols = tuple(sorted(dict.fromkeys(colours), key=order.index))
        return Look(pattern, cols, angle, width)

    def describe(self) -> str:
        """Words for the look: 'a navy background', 'teal and beige wide rising diagonal stripes',
        'charcoal and silver narrow checks'."""
        if self.pattern == "flat":
            return f"a {self.colours[0]} background"
        words = [f"{self.colours[0]} and {self.colours[1]}", self.width]
        if self.pattern == "stripes":
            words += [ANGLE_WORDS[self.angle], "stripes"]
        else:
            words.append("checks")
        return " ".join(words)

    __str__ = describe


def _pairs() -> list[tuple[str, str]]:
    names = list(PALETTE)
    out = []
    for a, b in itertools.combinations(names, 2):
        if np.linalg.norm(np.subtract(PALETTE[a], PALETTE[b])) >= MIN_CONTRAST:
            out.append((a, b))
    return out


PAIRS: list[tuple[str, str]] = _pairs()
ALL_LOOKS: list[Look] = (
    [Look("flat", (c,)) for c in PALETTE]
    + [Look("stripes", p, a, w) for p in PAIRS for a in ANGLES for w in WIDTHS]
    + [Look("checks", p, None, w) for p in PAIRS for w in WIDTHS]
)
#: World 1's backgrounds as looks (`world.BACKGROUNDS` order).
WORLD1_LOOKS: dict[str, Look] = {
    "black": Look("flat", ("black",)),
    "gray": Look("flat", ("gray",)),
    "checkered": Look("checks", ("charcoal", "silver"), None, "narrow"),
    "striped": Look("stripes", ("charcoal", "silver"), 0, "narrow"),
}


def _held_out_looks() -> list[Look]:
    """About 5 % of the two-colour looks, never rendered for training (fixed draw): each is a colour pair seen in
    other patterns and a pattern seen with other pairs, so look generalisation can be measured."""
    rng = np.random.default_rng(31)
    two = [lk for lk in ALL_LOOKS if lk.pattern != "flat" and lk not in WORLD1_LOOKS.values()]
    idx = rng.choice(len(two), size=len(two) // 20, replace=False)
    return [two[i] for i in sorted(idx)]


HELD_OUT_LOOKS: list[Look] = _held_out_looks()
_HELD_OUT_LOOKS = set(HELD_OUT_LOOKS)
TRAIN_LOOKS: list[Look] = [lk for lk in ALL_LOOKS if lk not in _HELD_OUT_LOOKS]
#: How often each pattern is drawn for training (flat looks are few, so they are not drawn per look).
PATTERN_WEIGHTS = {"flat": 0.2, "stripes": 0.55, "checks": 0.25}


def sample_look(rng: np.random.Generator, split: str = "train") -> Look:
    """A random look: a pattern by `PATTERN_WEIGHTS`, then a look of it uniformly ('train' never returns a held-out
    look, 'heldout' only those, 'all' any)."""
    pool = {"train": TRAIN_LOOKS, "heldout": HELD_OUT_LOOKS, "all": ALL_LOOKS}.get(split)
    if pool is None:
        raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    pats = [p for p in PATTERNS if any(lk.pattern == p for lk in pool)]
    w = np.asarray([PATTERN_WEIGHTS[p] for p in pats])
    pat = pats[int(rng.choice(len(pats), p=w / w.sum()))]
    of = [lk for lk in pool if lk.pattern == pat]
    return of[int(rng.integers(len(of)))]


# ------------------------------------------------------------------------------------------------ rendering
def _cell(width: str, size: int) -> int:
    return max(1, int(round(WIDTHS[width] * size / SIZE)))


def band_map(pattern: str, angle: Optional[int], width: Optional[str], size: int = SIZE, phase=(0, 0)) -> np.ndarray:
    """(size, size) int map of which colour (0 or 1) each pixel of a pattern takes, shifted by `phase` (px)."""
    yy, xx = np.mgrid[0:size, 0:size]
    if pattern == "flat":
        return np.zeros((size, size), np.int64)
    c = _cell(width, size)
    sx, sy = phase
    if pattern == "checks":
        return (((xx + sx) // c) + ((yy + sy) // c)) % 2
    d = max(1, int(round(1.5 * c)))
    if angle == 0:
        return ((yy + sy) // c) % 2
    if angle == 90:
        return ((xx + sx) // c) % 2
    if angle == 45:
        return ((xx + yy + sx) // d) % 2
    if angle == 135:
        return ((xx - yy + sx + 4 * size * d) // d) % 2
    raise ValueError(f"unknown stripe angle {angle!r}")


def look_rgb(look: Look, size: int = SIZE, phase=(0, 0)) -> np.ndarray:
    """(3, size, size) float32 image of a look."""
    cols = np.asarray([PALETTE[c] for c in look.colours], np.float32)  # (k, 3)
    m = band_map(look.pattern, look.angle, look.width, size, phase)
    return cols[m].transpose(2, 0, 1).copy()


# ---------------------------------------------------------------------------------------------- reading looks
def _phases(pattern: str, angle, width, size: int) -> list[tuple[int, int]]:
    if pattern == "flat":
        return [(0, 0)]
    c = _cell(width, size)
    if pattern == "checks":
        return [(sx, sy) for sx in range(2 * c) for sy in range(c)]  # (sx, sy + c) swaps the colours only
    if angle == 0:
        return [(0, sy) for sy in range(2 * c)]
    d = max(1, int(round(1.5 * c))) if angle in (45, 135) else c
    return [(sx, 0) for sx in range(2 * d)]


_CANDIDATES: dict = {}


def _candidates(size: int):
    """Every (pattern, angle, width, phase) band map at `size`: (list of keys, (K, size*size) float maps)."""
    if size not in _CANDIDATES:
        keys, maps = [], []
        geoms = [("flat", None, None)] + [("stripes", a, w) for a in ANGLES for w in WIDTHS] + \
                [("checks", None, w) for w in WIDTHS]
        for pat, ang, wid in geoms:
            for ph in _phases(pat, ang, wid, size):
                keys.append((pat, ang, wid, ph))
                maps.append(band_map(pat, ang, wid, size, ph).ravel())
        _CANDIDATES[size] = (keys, np.asarray(maps, np.float64))
    return _CANDIDATES[size]


_PAL_NAMES = list(PALETTE)
_PAL = np.asarray([PALETTE[c] for c in _PAL_NAMES], np.float64)
_PAIR_IDX = np.asarray([(_PAL_NAMES.index(a), _PAL_NAMES.index(b)) for a, b in PAIRS])


def fit_look(pixels_sum: np.ndarray, counts: np.ndarray, sq_sum: float) -> dict:
    """The look (any phase) nearest in least squares to background observations.

    `pixels_sum` (3, H, W): per-pixel sum of the observed RGB values (e.g. over the frames where that pixel is
    background); `counts` (H, W): how many observations; `sq_sum`: the sum of all observations' squared values.
    Returns {"look", "phase", "sse", "n"} (`sse` of the observations against the rendered look at its phase).
    """
    size = counts.shape[-1]
    keys, maps = _candidates(size)
    s = pixels_sum.reshape(3, -1).astype(np.float64)  # (3, P)
    n = counts.ravel().astype(np.float64)  # (P,)
    ntot = n.sum()
    if ntot <= 0:
        raise ValueError("no background pixels to read a look from")
    n1 = maps @ n  # (K,)
    n0 = ntot - n1
    s1 = maps @ s.T  # (K, 3)
    s0 = s.sum(1)[None] - s1
    # SSE against colours p0 (band 0), p1 (band 1): sq_sum - 2 s0.p0 + n0 |p0|^2 - 2 s1.p1 + n1 |p1|^2
    pal2 = (_PAL ** 2).sum(1)
    c0 = -2 * s0 @ _PAL.T + n0[:, None] * pal2[None]  # (K, C): cost of colour c on band 0
    c1 = -2 * s1 @ _PAL.T + n1[:, None] * pal2[None]
    a, b = _PAIR_IDX[:, 0], _PAIR_IDX[:, 1]
    two = np.minimum(c0[:, a] + c1[:, b], c0[:, b] + c1[:, a])  # (K, pairs), either colour on band 0
    flat = (c0 + c1).min(1)  # one colour everywhere
    is_flat = np.asarray([k[0] == "flat" for k in keys])
    cost = np.where(is_flat, flat, np.inf)
    best_pair = two.argmin(1)
    cost = np.where(is_flat, cost, two[np.arange(len(keys)), best_pair])
    k = int(np.argmin(cost))
    pat, ang, wid, ph = keys[k]
    if pat == "flat":
        ci = int((c0[k] + c1[k]).argmin())
        return {"look": Look("flat", (_PAL_NAMES[ci],)), "phase": ph, "sse": float(max(sq_sum + cost[k], 0.0)),
                "n": float(ntot)}
    # The colours again from the bands' inner pixels only (all four neighbours in the same band): a blurred image
    # mixes the colours across band edges, which pulls the band means together.
    band = maps[k].reshape(size, size)
    pad = np.pad(band, 1, mode="edge")
    core = ((pad[:-2, 1:-1] == band) & (pad[2:, 1:-1] == band) & (pad[1:-1, :-2] == band)
            & (pad[1:-1, 2:] == band)).ravel()
    nc, sc = n * core, s * core[None]
    m1 = maps[k] @ nc
    m0 = nc.sum() - m1
    k0, k1 = c0[k], c1[k]  # every pixel (for the SSE)
    if min(m0, m1) >= 8:
        s1c = sc @ maps[k]
        s0c = sc.sum(1) - s1c
        k0 = -2 * s0c @ _PAL.T + m0 * pal2
        k1 = -2 * s1c @ _PAL.T + m1 * pal2
    both = np.stack([k0[a] + k1[b], k0[b] + k1[a]])  # (order, pairs)
    order, j = np.unravel_index(int(both.argmin()), both.shape)
    pa, pb = PAIRS[int(j)]
    ia, ib = _PAL_NAMES.index(pa), _PAL_NAMES.index(pb)
    if order == 1:  # the second colour is on band 0: shift the phase
        ph = _swap_phase(pat, ang, wid, ph, size)
        sse = sq_sum + c0[k, ib] + c1[k, ia]
    else:
        sse = sq_sum + c0[k, ia] + c1[k, ib]
    return {"look": Look(pat, (pa, pb), ang, wid), "phase": ph, "sse": float(max(sse, 0.0)), "n": float(ntot)}


def _swap_phase(pat, ang, wid, ph, size):
    """A phase at which the same bands take the other colour."""
    c = _cell(wid, size)
    sx, sy = ph
    if pat == "checks":
        return (sx + c, sy)
    if ang == 0:
        return (sx, sy + c)
    d = max(1, int(round(1.5 * c))) if ang in (45, 135) else c
    return (sx + d, sy)


#: `read_look`'s confidence is 1 - rms / `CONFIDENCE_RMS` (clipped): an image that is exactly a look reads 1, one whose
#: pixels are on average this far (RMS per channel) from the nearest look reads 0.
CONFIDENCE_RMS = 0.25


@dataclass
class LookReading:
    look: Look
    confidence: float  # 1 - rms / CONFIDENCE_RMS, clipped to [0, 1]
    rms: float  # RMS distance (per channel, [0, 1] scale) of the image at 32x32 from the look
    phase: tuple
    size: tuple  # the input image's (height, width)

    @property
    def sentence(self) -> str:
        return self.look.describe()

    def __str__(self) -> str:
        how = "closely" if self.confidence >= 0.75 else "roughly" if self.confidence >= 0.4 else "loosely"
        return f"{self.look.describe()} (matches {how}: confidence {self.confidence:.2f})"


def _as_rgb_array(image) -> np.ndarray:
    """Any image -> (H, W, 3) float64 in [0, 1]; ValueError naming the problem otherwise."""
    from pathlib import Path

    what = "style image"
    if image is None:
        raise ValueError(f"{what}: no image given")
    if isinstance(image, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(image) as im:
                im.load()
                image = im.copy()
        except (OSError, UnidentifiedImageError) as e:
            raise ValueError(f"{what}: cannot read {image}: {e}") from e
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            if image.width < 1 or image.height < 1:
                raise ValueError(f"{what}: the image is empty ({image.width}x{image.height})")
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # transparent parts read as black
                image = Image.alpha_composite(base, rgba).convert("RGB")
            elif image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                a = np.asarray(image, np.float64)
                hi = a.max() if np.isfinite(a).all() and a.max() > 0 else 1.0
                image = np.repeat((a / (hi if hi > 1.0 else 1.0))[..., None], 3, -1)
            else:
                image = image.convert("RGB")
    except ImportError:  # pragma: no cover - PIL ships with the project
        pass
    try:
        import torch

        if isinstance(image, torch.Tensor):
            image = image.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        a = np.asarray(image, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: not an image ({type(image).__name__})") from e
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{what}: expected an image (H, W[, C]) or (C, H, W), got shape {a.shape}")
    if a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{what}: expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what}: the image is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: has NaN or infinite values")
    if a.max() > 1.0 + 1e-6:  # 0..255
        a = a / 255.0
    if a.min() < -1e-6:  # [-1, 1]
        a = (a + 1.0) / 2.0
    a = np.clip(a, 0.0, 1.0)
    if a.shape[-1] == 4:
        a = a[..., :3] * a[..., 3:]  # over black, as for PIL images
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    return a


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (3, size, size): area average down (box filter), nearest up; a non-square image is centre-cropped
    to a square first."""
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    a = a[top:top + s, left:left + s]
    if s == size:
        return a.transpose(2, 0, 1)
    if s < size:
        idx = (np.arange(size) * s) // size
        return a[idx][:, idx].transpose(2, 0, 1)
    edges = np.linspace(0, s, size + 1)
    lo = np.floor(edges[:-1]).astype(int)
    hi = np.maximum(np.ceil(edges[1:]).astype(int), lo + 1)
    rows = np.stack([a[lo[i]:hi[i]].mean(0) for i in range(size)])  # (size, s, 3)
    cols = np.stack([rows[:, lo[j]:hi[j]].mean(1) for j in range(size)], 1)  # (size, size, 3)
    return cols.transpose(2, 0, 1)


def read_look(image, size: int = SIZE) -> LookReading:
    """The look nearest to any image (PIL image of any mode, path, array (H, W[, C]) or (C, H, W) in [0, 1] or
    0..255, torch tensor), read at the world's scale: the image's centred square is averaged down (or repeated up)
    to `size` x `size`, as a 32x32 video frame sees it. Returns a `LookReading` (look, confidence, rms, phase,
    sentence); ValueError with a message naming the style image for what is not an image."""
    rgb = _as_rgb_array(image)
    a = _resize(rgb, size)
    counts = np.ones((size, size))
    res = fit_look(a, counts, float((a ** 2).sum()))
    rms = float(np.sqrt(res["sse"] / (3 * size * size)))
    conf = float(np.clip(1.0 - rms / CONFIDENCE_RMS, 0.0, 1.0))
    h, w = rgb.shape[:2]
    return LookReading(res["look"], conf, rms, tuple(res["phase"]), (h, w))


# -------------------------------------------------------------------------------------------- look phrases
def look_phrase(look: Look, named=("colours", "width", "angle")) -> str:
    """Caption words for a look ('navy and gray wide rising diagonal stripes', 'a black background'), leaving out
    the parts not in `named` ('stripes', 'wide stripes', 'a plain background')."""
    if look.pattern == "flat":
        return f"a {look.colours[0]} background" if "colours" in named else "a plain background"
    words = []
    if "colours" in named:
        words.append(f"{look.colours[0]} and {look.colours[1]}")
    if "width" in named:
        words.append(look.width)
    if look.pattern == "stripes":
        if "angle" in named:
            words.append(ANGLE_WORDS[look.angle])
        words.append("stripes")
    else:
        words.append("checks")
    return " ".join(words)


def look_matches(look: Look, named: dict) -> bool:
    """Whether `look` has every part a parsed look phrase (`parse_look_phrase`) names."""
    if "pattern" in named and look.pattern != named["pattern"]:
        return False
    if "colours" in named and set(named["colours"]) - set(look.colours):
        return False
    if "angle" in named and not (look.angle == named["angle"]
                                 or (named["angle"] == "diagonal" and look.angle in (45, 135))):
        return False
    if "width" in named and look.width != named["width"]:
        return False
    return True


__all__ = ["PALETTE", "COLOUR_ALIASES", "BG_MAX", "BG_SAT", "MIN_CONTRAST", "PATTERNS", "ANGLES", "ANGLE_WORDS",
           "WIDTHS", "Look", "PAIRS", "ALL_LOOKS", "WORLD1_LOOKS", "HELD_OUT_LOOKS", "TRAIN_LOOKS", "sample_look",
           "band_map", "look_rgb", "fit_look", "read_look", "LookReading", "look_phrase", "look_matches",
           "CONFIDENCE_RMS"]
