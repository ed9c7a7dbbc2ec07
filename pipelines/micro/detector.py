"""Exact attribute detector for videos of the micro world (rendered or generated).

Object pixels are the saturated (max-min channel > SAT) or bright (min channel > WHITE) ones: no background
of the world has either property. From the largest connected object component of each frame we read the
colour (majority of nearest palette colours), the shape (fill ratio of the bounding box), the centroid track
(motion direction, bounce floor contacts); the background class comes from the remaining pixels.

`detect(frames, world=2)` reads world 2's backgrounds: the look (pattern, angle, width, both colours) nearest in
least squares to the background pixels of every frame (`looks.fit_look`, any phase), returned as `look` (a `Look`)
and `background` (its words); the object's soft coverage for the shape is then its mixing fraction over that look.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .world import (
    BACKGROUNDS,
    COLOURS,
    OBJ,
    PATTERN_CELL,
    SIZE,
)

SAT = 0.35
WHITE = 0.78
_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.asarray([COLOURS[c] for c in _PALETTE_NAMES], np.float32)


def _to_numpy(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    a = np.asarray(frames, np.float32)
    if a.ndim == 5:  # (1, f, 3, H, W) or (1, 3, f, H, W)
        a = a[0]
    if a.ndim != 4:
        raise ValueError(f"expected frames of shape (f, 3, H, W), got {a.shape}")
    if a.shape[1] != 3 and a.shape[-1] == 3:  # (f, H, W, 3)
        a = a.transpose(0, 3, 1, 2)
    if a.shape[1] != 3 and a.shape[0] == 3:  # (3, f, H, W)
        a = a.transpose(1, 0, 2, 3)
    if a.max() > 1.5:  # uint8 range
        a = a / 255.0
    return np.clip(a, 0.0, 1.0)


def object_mask(frame: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that cannot be background (frame (3, H, W) in [0, 1])."""
    mx, mn = frame.max(0), frame.min(0)
    return ((mx - mn) > SAT) | (mn > WHITE)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def nearest_colour(pixels: np.ndarray) -> list[str]:
    """Nearest palette colour names of (N, 3) pixels (brightness-normalised so dim saturated pixels count)."""
    if len(pixels) == 0:
        return []
    p = pixels / np.maximum(pixels.max(1, keepdims=True), 1e-6)
    d = ((p[:, None, :] - _PALETTE[None]) ** 2).sum(-1)
    return [_PALETTE_NAMES[i] for i in d.argmin(1)]


def shape_of(mask: np.ndarray) -> tuple[str | None, float]:
    ys, xs = np.nonzero(mask)
    if len(ys) < 6:
        return None, 0.0
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = len(ys) / float(h * w)
    if fill > 0.9:
        return "square", fill
    if fill > 0.7:
        return "circle", fill
    return "triangle", fill


def background_model(name: str, size: int) -> np.ndarray:
    from .world import background_image

    return background_image(name, size)


def objectness(frame: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Soft (H, W) object coverage in [0, 1]: saturation (= mixing fraction of a saturated colour over any
    colourless background) or, for white, the brightness above the expected background level."""
    mx, mn = frame.max(0), frame.min(0)
    white = np.clip((mn - bg) / np.maximum(1.0 - bg, 0.2), 0.0, 1.0)
    o = np.maximum(np.clip(mx - mn, 0.0, 1.0), white)
    return np.where(o < 0.2, 0.0, o)


_TEMPLATES = None


def _templates():
    global _TEMPLATES
    if _TEMPLATES is None:
        from .world import SHAPE_MASKS

        _TEMPLATES = {k: v.astype(np.float32) for k, v in SHAPE_MASKS.items()}
    return _TEMPLATES


def shape_features(o: np.ndarray, region: np.ndarray, search: int = 3) -> dict | None:
    """Place the object's 10x10 box where the soft coverage `o` is heaviest, then measure the mean coverage of
    the square's corners outside the circle (`corners`) and of the upper part outside the triangle (`upper`)."""
    ys, xs = np.nonzero(region)
    if len(ys) < 6:
        return None
    t = _templates()
    sq, ci, tr = t["square"], t["circle"], t["triangle"]
    H, W = o.shape
    oo = np.where(ndimage.binary_dilation(region, iterations=2), o, 0.0)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    by, bx = int(round(cy - OBJ / 2 + 0.5)), int(round(cx - OBJ / 2 + 0.5))
    pad = np.pad(oo, OBJ)
    best, box = -1.0, None
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            ty, tx = by + dy + OBJ, bx + dx + OBJ
            if ty < 0 or tx < 0 or ty + OBJ > pad.shape[0] or tx + OBJ > pad.shape[1]:
                continue
            win = pad[ty : ty + OBJ, tx : tx + OBJ]
            # heaviest window; ties -> the one whose border carries the least coverage outside it
            m = float(win.sum()) - 1e-3 * abs(dy) - 1e-3 * abs(dx)
            if m > best:
                best, box = m, win
    corners = (sq > 0) & (ci == 0)
    upper = (sq > 0) & (tr == 0)
    upper[OBJ // 2 :] = False
    return {"corners": float(box[corners].mean()), "upper": float(box[upper].mean())}


def match_shape(o: np.ndarray, region: np.ndarray, upper_t: float | None = None,
                corner_t: float | None = None) -> tuple[str | None, dict]:
    f = shape_features(o, region)
    if f is None:
        return None, {}
    if f["upper"] < (UPPER_T if upper_t is None else upper_t):
        return "triangle", f
    return ("square" if f["corners"] > (CORNER_T if corner_t is None else corner_t) else "circle"), f


UPPER_T = 0.55
CORNER_T = 0.72
#: World 2's thresholds on its coverage (the mixing fraction over the look, unbiased by noise where world 1's
#: saturation is biased up). Measured over every third look at blur sigma 0 / 0.6 / 0.8 px with noise std 0 / 0.03 /
#: 0.06: `corners` circle <= 0.29, square >= 0.65; `upper` triangle <= 0.24, circle >= 0.57 (midpoints taken).
UPPER_T2 = 0.4
CORNER_T2 = 0.47


def _majority(items):
    items = [i for i in items if i is not None]
    if not items:
        return None
    vals, counts = np.unique(np.asarray(items, dtype=object).astype(str), return_counts=True)
    best = counts.max()
    # Tie-break by first occurrence for determinism.
    for i in items:
        if counts[list(vals).index(i)] == best:
            return i
    return None


def classify_background(a: np.ndarray, masks: np.ndarray) -> str:
    f, _, H, W = a.shape
    gray = a.mean(1)  # f, H, W
    valid = ~masks
    # Dilate object masks a bit so blurry object edges do not pollute the background estimate.
    valid = ~np.stack([ndimage.binary_dilation(m, iterations=1) for m in masks]) if masks.any() else valid
    if valid.sum() < 16:
        valid = np.ones_like(valid)
    vals = gray[valid]
    m = float(vals.mean())
    yy, xx = np.mgrid[0:H, 0:W]
    cell = max(1, round(PATTERN_CELL * H / SIZE))
    checker = np.where(((yy // cell) + (xx // cell)) % 2 == 0, -1.0, 1.0)
    stripes = np.where((yy // cell) % 2 == 0, -1.0, 1.0)
    cen = gray - m
    cc = float(np.abs((cen * checker[None])[valid].mean()))
    cs = float(np.abs((cen * stripes[None])[valid].mean()))
    if max(cc, cs) > 0.06:
        return "checkered" if cc >= cs else "striped"
    return "black" if m < 0.22 else "gray"


def motion_of(cx: list[float], cy: list[float]) -> str | None:
    pts = [(x, y) for x, y in zip(cx, cy) if x is not None]
    if len(pts) < 2:
        return None
    x = np.asarray([p[0] for p in pts])
    y = np.asarray([p[1] for p in pts])
    dx = x[-1] - x[0]
    dy = np.diff(y)
    down = float(np.clip(dy, 0, None).sum())
    up = float(np.clip(-dy, 0, None).sum())
    horiz = abs(float(dx))
    if horiz > max(up, down, 1.0) and horiz >= abs(y[-1] - y[0]):
        return "moving left to right" if dx > 0 else "moving right to left"
    if min(up, down) > 3.0 and min(up, down) > 0.35 * max(up, down):
        return "bouncing"
    if max(up, down) < 1.0:
        return None
    return "moving down" if down > up else "moving up"


def bounce_frames(cy: list[float | None]) -> list[int]:
    """Frame indices where the object is at its lowest point (floor contact) of a bounce."""
    idx = [k for k, y in enumerate(cy) if y is not None]
    if len(idx) < 3:
        return []
    ys = np.asarray([cy[k] for k in idx], np.float64)
    ymax = ys.max()
    out = []
    for j, k in enumerate(idx):
        prev_ok = j == 0 or ys[j] >= ys[j - 1]
        next_ok = j == len(idx) - 1 or ys[j] > ys[j + 1]
        if prev_ok and next_ok and ys[j] >= ymax - 1.5:
            out.append(k)
    return out


def read_background(a: np.ndarray, masks: np.ndarray, dilate: int = 2) -> dict:
    """World 2: the look of a video's background (`looks.fit_look` over every frame's pixels away from object
    pixels `masks` (f, H, W)): {"look", "phase", "sse", "n", "rms"}."""
    from .looks import fit_look

    valid = ~np.stack([ndimage.binary_dilation(m, iterations=dilate) for m in masks]) if masks.any() else ~masks
    if valid.sum() < 16:
        valid = np.ones_like(valid)
    w = valid[:, None].astype(np.float64)
    res = fit_look((a * w).sum(0), valid.sum(0), float((a.astype(np.float64) ** 2 * w).sum()))
    res["rms"] = float(np.sqrt(res["sse"] / max(3 * res["n"], 1.0)))
    return res


def objectness_over(frame: np.ndarray, bg: np.ndarray, colour: str | None) -> np.ndarray:
    """World 2: soft (H, W) object coverage in [0, 1], the mixing fraction of the object's palette colour over the
    background image `bg` (3, H, W) at each pixel (projection of frame - bg on colour - bg)."""
    if colour is None:
        return np.zeros(frame.shape[1:], np.float32)
    c = np.asarray(COLOURS[colour], np.float32)[:, None, None]
    d = c - bg
    o = np.clip(((frame - bg) * d).sum(0) / np.maximum((d * d).sum(0), 1e-3), 0.0, 1.0)
    return np.where(o < 0.2, 0.0, o)


def detect(frames, world=1) -> dict:
    """Attributes of a micro-world video: frames (f, 3, H, W) (also (f, H, W, 3), uint8 ok) in [0, 1]. `world=2`
    reads the background as a look (`look`, `background` = its words, `look_phase`: the (x, y) shift at which
    `looks.look_rgb(look, size, phase)` redraws it, `look_rms`: RMS distance of the background pixels from that)."""
    from .world import get_world

    version = get_world(world).version
    a = _to_numpy(frames)
    f = a.shape[0]
    raw_masks = np.stack([object_mask(a[k]) for k in range(f)])
    masks = np.stack([_largest_component(m) if m.any() else m for m in raw_masks])
    extra = {}
    if version == 2:
        from .looks import look_rgb

        fit = read_background(a, raw_masks)
        background = fit["look"].describe()
        bg3 = look_rgb(fit["look"], a.shape[-1], fit["phase"])
        extra = {"look": fit["look"], "look_phase": tuple(fit["phase"]), "look_rms": fit["rms"]}
    else:
        background = classify_background(a, raw_masks)
        bg = background_model(background, a.shape[-1])
    colours, shapes, fills, cx, cy = [], [], [], [], []
    for k in range(f):
        m = masks[k]
        if m.sum() < 3:
            colours.append(None)
            shapes.append(None)
            fills.append(None)
            cx.append(None)
            cy.append(None)
            continue
        pix = a[k][:, m].T
        colours.append(_majority(nearest_colour(pix)))
        _, fill = shape_of(m)
        o = objectness_over(a[k], bg3, colours[-1]) if version == 2 else objectness(a[k], bg)
        s, _ = match_shape(o, m, *((UPPER_T2, CORNER_T2) if version == 2 else (None, None)))
        shapes.append(s)
        fills.append(fill)
        ys, xs = np.nonzero(m)
        cx.append(float(xs.mean()))
        cy.append(float(ys.mean()))
    majority = _majority(colours)
    n_obj = sum(c is not None for c in colours)
    consistency = (sum(c == majority for c in colours) / f) if majority is not None else 0.0
    shape = _majority(shapes)
    motion = motion_of(cx, cy)
    return {
        "colours": colours,
        "colour": majority,
        "colour_consistency": float(consistency),
        "shape": shape,
        "shapes": shapes,
        "fill_ratios": fills,
        "motion": motion,
        "centroids": [(x, y) if x is not None else None for x, y in zip(cx, cy)],
        "background": background,
        "bounce_frames": bounce_frames(cy) if motion == "bouncing" else [],
        "object_frames": n_obj,
        **extra,
    }


def shape_of_fill(fill: float) -> str:
    if fill > 0.9:
        return "square"
    if fill > 0.7:
        return "circle"
    return "triangle"


def score(frames, target: dict) -> dict:
    """Per-attribute correctness (bools) of a video against target attributes (colour, shape, motion, background)."""
    d = detect(frames)
    out = {k: d.get(k) == target[k] for k in ("colour", "shape", "motion", "background") if k in target}
    out["colour_consistency"] = d["colour_consistency"]
    return out


__all__ = ["detect", "score", "object_mask", "nearest_colour", "style_reading", "BACKGROUNDS", "OBJ"]


def style_reading(reference, frames) -> dict:
    """What a style reference and a world-2 video's background read as, side by side: {"reference": LookReading,
    "video": Look, "same": bool, "sentence": "your reference reads as …; the video's background reads as …"}.
    ValueError (naming the style image) for a reference that is not an image."""
    from .looks import read_look

    ref = read_look(reference)
    d = detect(frames, world=2)
    same = d["look"] == ref.look
    sentence = (f"your reference reads as {ref}; the video's background reads as {d['background']}"
                + (" (the same look)" if same else ""))
    return {"reference": ref, "video": d["look"], "same": same, "sentence": sentence}
