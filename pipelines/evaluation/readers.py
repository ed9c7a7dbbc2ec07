"""Readers of micro-world videos: what a generated video shows, read exactly, and whether it is still a clean video.

Every score of a micro video goes through here (the exact suites, the compare view, the ablation, the personalised
base, the bench):
- `detect` (the micro world's attribute detector) reads colour, shape, motion, background, centroids, contacts;
- `count_objects` is the one definition of "an object" (a connected object-pixel component of ≥ `MIN_OBJECT_PX`);
- `residual` re-renders what the detector read (the background class, at its best pattern phase, plus the read
  object at its read position) and measures each frame's mean absolute difference to it: near 0 for a rendered clip,
  small for a clean generated one, large for a colour smear, striped noise or a dissolved object;
- `halo` counts, per frame, the pixels of another colour than the object's (chroma above `HALO_LEVEL` at a hue
  more than `HALO_HUE_TOL` from the object's): a fringe, tail or glow of another hue beside the object, too small
  to move the residual;
- `fidelity` joins them: the prompt's content kept (colour, shape and, where asked, motion), exactly one object in
  every frame, and no artefacts (every frame's residual ≤ `RESIDUAL_MAX` and at most `HALO_MAX_PX` halo pixels);
- `content_kept` / `colour_kept` / `target_of`: the attributes the detector read against the prompt's;
- `centroids`, `endpoint_mse`: where the object is, and how far the end frames are from key frames;
- `match_frames` / `impacts_met` / `sync_iou`: floor contacts against impact frames (one-to-one, within a
  tolerance);
- `max_jump` / `rendered_max_jump` / `frame_change` / `harivo_reading`: how smoothly the object moves, and the
  columns of HARIVO's ablation table (content, action, smooth, non-weird, Δframe) read from one video.

Every reader takes the micro `world` (1, the default, or 2; `presets.micro_world` gives a preset's): on world 2 the
detector reads the background as a look (`detect(frames, world=2)`), `rerender` draws that look at the read phase,
`residual` fits it per channel at the level the frame has it, and `halo` counts only colour beyond the look's own chroma
(world 2's tints have up to 0.22), so a clean world-2 video reads clean; `target_of` parses world 2's prompts
(any attribute may be left out).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from ..micro import world
from ..micro import world as _world
from ..micro.detector import _to_numpy, detect, object_mask, style_reading

#: Smallest connected object-pixel component counted as an object (px at 32×32): a stray pixel or two of a blurred
#: edge is not a second object.
MIN_OBJECT_PX = 4
#: The largest per-frame residual (mean |frame − re-rendering| over pixels and channels) of a clean video.
#: Calibrated (bench/EVALUATE.md, "Fidelity"): rendered clips read 0 (≤ 1e-7); 34 unguided micro videos (17 prompts
#: × 2 seeds, 20 steps, η = 1) read 0.006–0.035; the style suite's unbounded TITAN/MPGD smears 0.086–0.19, and bounded
#: runs with visible stray blobs 0.053–0.06.
RESIDUAL_MAX = 0.05

_MASK_OFFSET = {s: np.argwhere(m).mean(0) for s, m in world.SHAPE_MASKS.items()}  # (y, x) centroid in the box


def count_objects(frame: np.ndarray, min_px: int = MIN_OBJECT_PX) -> int:
    """Objects in one frame (3, H, W) in [0, 1]: connected components of object pixels of ≥ `min_px` pixels."""
    lab, n = ndimage.label(object_mask(frame))
    if n == 0:
        return 0
    sizes = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    return int((np.asarray(sizes) >= min_px).sum())


def _shifted_backgrounds(name: str, size: int) -> list[np.ndarray]:
    """The background class at every phase of its pattern (one image for plain backgrounds)."""
    bg = world.background_image(name, size)
    if name in ("black", "gray"):
        return [bg]
    period = 2 * world.PATTERN_CELL
    ys = range(period)
    xs = range(period) if name == "checkered" else range(1)
    return [np.roll(bg, (dy, dx), axis=(0, 1)) for dy in ys for dx in xs]


def look_background(d: dict, size: int) -> np.ndarray:
    """World 2: the look a `detect(..., world=2)` result read, drawn at its read phase: (3, size, size)."""
    from ..micro.looks import look_rgb

    return look_rgb(d["look"], size, d.get("look_phase") or (0, 0)).astype(np.float32)


def rerender(d: dict, size: int, background: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """What `d` (a `detect` result) read, drawn by the world's renderer: frames (f, 3, size, size) with its background
    (world 2's look at its read phase when `d` has a `look`) and, in each frame where an object was read, its majority
    colour and shape with its centroid at the read one; and the object masks (f, size, size)."""
    if background is None:
        background = look_background(d, size) if d.get("look") is not None else \
            world.background_image(d["background"], size)
    bg = background
    f = len(d["centroids"])
    bg3 = bg[None] if bg.ndim == 3 else np.repeat(bg[None, None], 3, axis=1)
    out = np.repeat(bg3, f, axis=0).astype(np.float32)
    masks = np.zeros((f, size, size), bool)
    colour, shape = d.get("colour"), d.get("shape")
    if colour is None or shape is None:
        return out, masks
    col = np.asarray(world.COLOURS[colour], np.float32)
    ys, xs = np.nonzero(world.SHAPE_MASKS[shape])
    oy, ox = _MASK_OFFSET[shape]
    for k, c in enumerate(d["centroids"]):
        if c is None:
            continue
        yy, xx = ys + int(round(c[1] - oy)), xs + int(round(c[0] - ox))
        keep = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)  # a box partly outside keeps its inside part
        masks[k, yy[keep], xx[keep]] = True
    for k in range(f):
        out[k][:, masks[k]] = col[:, None]
    return out, masks


#: Pixels within this many px of the re-rendered object's edge are left out of the residual: a generated object's
#: edge is soft and may sit a pixel off or be slightly rounder than the renderer's, which is not an artefact.
EDGE_BAND = 2


def _fit_level(gray: np.ndarray, bg: np.ndarray, where: np.ndarray) -> np.ndarray:
    """`bg` mapped by the least-squares gain and offset that best explain `gray` on the pixels `where`: the world's
    background at the level the model drew it (a darker gray or softer pattern is not an artefact; structure is)."""
    y, x = gray[where], bg[where]
    if y.size == 0:
        return bg
    if np.ptp(x) < 1e-6:  # a plain background: its level
        return np.full_like(bg, float(y.mean()))
    A = np.stack([x, np.ones_like(x)], 1)
    (gain, offset), *_ = np.linalg.lstsq(A, y, rcond=None)
    return gain * bg + offset


def _fit_level_rgb(frame: np.ndarray, bg: np.ndarray, where: np.ndarray) -> np.ndarray:
    """World 2: `_fit_level` per channel, the look (3, H, W) at the level the frame (3, H, W) has it."""
    return np.stack([_fit_level(frame[c], bg[c], where) for c in range(3)]).astype(np.float32)


def _edge_band(masks: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.binary_dilation(m, iterations=EDGE_BAND) & ~ndimage.binary_erosion(m, iterations=1)
                     if m.any() else m for m in masks])


def residual(frames, d: Optional[dict] = None, world: int = 1) -> list[float]:
    """Per-frame mean |frame − re-rendering of what the detector read| over pixels away from the object's edge (see
    `EDGE_BAND`), with the background class at its best pattern phase and at the level the frame has it (gain and
    offset fitted; world 2: the read look at its read phase, fitted per channel). What it catches: colour outside the
    object (smears, patches, a second blob), background structure that no background of the world has (noise,
    stripes across a checker), an object interior of another colour."""
    a = _to_numpy(frames)
    d = detect(a, world=world) if d is None else d
    size = a.shape[-1]
    render, masks = rerender(d, size)
    keep = ~_edge_band(masks)  # (f, H, W)
    if d.get("look") is not None:  # world 2: the read look, at the level each frame has it
        bg = look_background(d, size)
        r = []
        for k in range(a.shape[0]):
            ren = render[k].copy()
            ren[:, ~masks[k]] = _fit_level_rgb(a[k], bg, keep[k] & ~masks[k])[:, ~masks[k]]
            err = np.abs(a[k] - ren).mean(0)
            r.append(float(err[keep[k]].mean()) if keep[k].any() else 0.0)
        return r
    gray = a.mean(1)
    best = None
    for bg in _shifted_backgrounds(d["background"], size):
        r = []
        for k in range(a.shape[0]):
            outside = keep[k] & ~masks[k]
            ren = render[k].copy()
            ren[:, ~masks[k]] = _fit_level(gray[k], bg, outside)[~masks[k]]
            err = np.abs(a[k] - ren).mean(0)
            r.append(float(err[keep[k]].mean()) if keep[k].any() else 0.0)
        r = np.asarray(r)
        if best is None or r.mean() < best.mean():
            best = r
    return [float(v) for v in best]


#: Hue of each palette colour (degrees on the colour wheel; white has none).
_HUES = {"red": 0.0, "yellow": 60.0, "green": 120.0, "cyan": 180.0, "blue": 240.0}
#: A pixel is of another colour than the object when its chroma (max − min channel) exceeds `HALO_LEVEL` and its
#: hue is more than `HALO_HUE_TOL` degrees from the object's (half-way to the next palette hue); for a white
#: object every pixel with that chroma is. The level sits above the faint complementary fringe the micro model
#: draws beside most objects (chroma up to ~0.15–0.2).
HALO_LEVEL = 0.2
HALO_HUE_TOL = 30.0
#: The most such pixels one frame of a clean video may have. Calibrated (bench/EVALUATE.md, "Interpolation, judged on
#: its path"): rendered clips read 0; 30 of the residual's 34 unguided calibration videos read 0–6 px and the other 4
#: 14–25 px (the two prompts whose sheets show a fringe blob of another colour); the interpolation example's
#: cyan tails read 10–35 px.
HALO_MAX_PX = 8


def hue_of(frame: np.ndarray) -> np.ndarray:
    """(H, W) hue in degrees [0, 360) of each pixel of `frame` (3, H, W): red 0, yellow 60, green 120, cyan 180,
    blue 240."""
    r, g, b = frame.astype(np.float64)
    return np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)) % 360.0


def off_colour(frame: np.ndarray, colour: Optional[str]) -> np.ndarray:
    """(H, W): each pixel's chroma (max − min channel) where its hue is not the object's colour's (more than
    `HALO_HUE_TOL` degrees away; any hue for a white object or none read), else 0. Greys (every background of the
    world), the object and its soft edge read 0; a fringe, tail or glow of another hue reads its strength."""
    chroma = (frame.max(0) - frame.min(0)).astype(np.float64)
    if colour not in _HUES:
        return chroma
    gap = np.abs((hue_of(frame) - _HUES[colour] + 180.0) % 360.0 - 180.0)
    return np.where(gap > HALO_HUE_TOL, chroma, 0.0)


def halo(frames, d: Optional[dict] = None, world: int = 1) -> list[int]:
    """Per frame: the pixels of another colour than the object the detector read (`off_colour` > `HALO_LEVEL`).
    World 2 (`d` has a `look`): a pixel's off-hue chroma must exceed the chroma the read look has there (at the
    frame's level) by `HALO_LEVEL`, outside the re-rendered object: the look's own tints have chroma up to 0.22, and
    a dark fringe on a tinted look is no colour."""
    a = _to_numpy(frames)
    d = detect(a, world=world) if d is None else d
    if d.get("look") is None:
        return [int((off_colour(fr, d.get("colour")) > HALO_LEVEL).sum()) for fr in a]
    size = a.shape[-1]
    _, masks = rerender(d, size)
    bg = look_background(d, size)
    objects = np.stack([object_mask(fr) for fr in a])
    out = []
    for k, fr in enumerate(a):
        level = _fit_level_rgb(fr, bg, ~ndimage.binary_dilation(objects[k] | masks[k], iterations=EDGE_BAND))
        extra = off_colour(fr, d.get("colour")) - (level.max(0) - level.min(0))
        extra[masks[k]] = 0.0
        out.append(int((extra > HALO_LEVEL).sum()))
    return out


def content_kept(d: dict, target: dict, keys=("colour", "shape", "motion")) -> dict:
    """Per attribute of `target` named in `keys`: 1.0 when the detector read it, else 0.0; `content` is their AND."""
    out = {f"{k}_ok": float(d.get(k) == target[k]) for k in keys if target.get(k) is not None}
    out["content"] = float(all(v == 1.0 for v in out.values())) if out else 1.0
    return out


def fidelity(frames, target: dict, keys=("colour", "shape", "motion"), d: Optional[dict] = None,
             world: int = 1) -> dict:
    """Is this still a clean video of its prompt? `target`: the prompt's attributes (colour, shape, motion); `keys`:
    those the video must keep (a suite whose keys no motion joins asks for colour and shape only).

    Returns content (+ per attribute), one_object (share of frames with exactly one object), residual (the worst
    frame's), halo_px (the worst frame's pixels of another colour), clean (one object in every frame, every frame's
    residual ≤ RESIDUAL_MAX and halo ≤ HALO_MAX_PX) and fidelity (content and clean). `world`: the micro world of
    the video (a `d` from world 2's detector, with its `look`, is read as world 2's)."""
    a = _to_numpy(frames)
    d = detect(a, world=world) if d is None else d
    out = content_kept(d, target, keys)
    counts = [count_objects(fr) for fr in a]
    res = residual(a, d)
    out["one_object"] = float(np.mean([c == 1 for c in counts]))
    out["residual"] = float(max(res))
    out["halo_px"] = float(max(halo(a, d)))
    out["clean"] = float(out["one_object"] == 1.0 and out["residual"] <= RESIDUAL_MAX
                         and out["halo_px"] <= HALO_MAX_PX)
    out["fidelity"] = float(out["content"] == 1.0 and out["clean"] == 1.0)
    return out


def colour_kept(d: dict, colour: str) -> float:
    """Share of the frames whose object the detector (`d`, a `detect` result) reads in `colour`."""
    cs = list(d.get("colours") or [])
    return sum(c == colour for c in cs) / len(cs) if cs else 0.0


def centroids(frames, world: int = 1) -> list[tuple[float, float]]:
    """Centroids (x, y) in px of the object in each frame, as the detector reads them (None where none is read)."""
    return [None if c is None else tuple(c) for c in detect(frames, world=world)["centroids"]]


def endpoint_mse(frames, keys) -> float:
    """Mean squared error of the first and last frames of `frames` (f, 3, H, W) in [0, 1] against the two key
    frames `keys` (2, 3, H, W) in [0, 1]: how far the video's ends are from the frames it was asked to join."""
    a = _to_numpy(frames).astype(np.float64)
    k = _to_numpy(keys).astype(np.float64)
    return float(((a[[0, -1]] - k) ** 2).mean())


def match_frames(a, b, tol: int) -> int:
    """Size of a one-to-one matching of frame lists `a` and `b` within `tol` frames (greedy, sorted)."""
    used, n = set(), 0
    for x in sorted(a):
        for j, y in enumerate(sorted(b)):
            if j not in used and abs(x - y) <= tol:
                used.add(j)
                n += 1
                break
    return n


def impacts_met(impacts, contacts, tol: int = 1) -> float:
    """Share of the impact frames `impacts` matched one-to-one by a floor contact of `contacts` within `tol` frames."""
    return match_frames(impacts, contacts, tol) / float(len(impacts)) if len(impacts) else 0.0


def sync_iou(impacts, contacts, tol: int = 0) -> float:
    """Intersection over union of impact frames and floor contacts, matched one-to-one within `tol` frames (0.0
    when there are neither)."""
    hit = match_frames(impacts, contacts, tol)
    union = len(impacts) + len(contacts) - hit
    return hit / float(union) if union else 0.0


def max_jump(centroids) -> float:
    """The longest step (px) of the object's centroid between consecutive frames; inf when a frame shows no object
    or there are fewer than 2 frames (an object that vanishes does not move smoothly)."""
    pts = [c for c in centroids if c is not None]
    if len(pts) < len(centroids) or len(pts) < 2:
        return float("inf")
    return float(np.linalg.norm(np.diff(np.asarray(pts), axis=0), axis=1).max())


def rendered_max_jump(n: int = 200, seed: int = 5) -> float:
    """The largest centroid step between consecutive frames over `n` rendered 8-frame training clips: how far a
    clip of the world moves its object in one frame at most (the ablation's smoothness limit)."""
    rng = np.random.default_rng(seed)
    jumps = []
    for _ in range(n):
        a = world.sample_attributes(rng, "train")
        v, _ = world.render_clip(a["colour"], a["shape"], a["motion"], a["background"], rng=rng)
        jumps.append(max_jump(detect(v)["centroids"]))
    return float(max(j for j in jumps if np.isfinite(j)))


def frame_change(frames) -> float:
    """Δframe: the mean absolute change between consecutive frames (lower is smoother)."""
    return float(np.abs(np.diff(_to_numpy(frames), axis=0)).mean())


def harivo_reading(frames, target: dict, jump_limit: float) -> dict:
    """HARIVO's ablation columns for one video of the prompt `target` (colour, shape, motion): content = colour and
    shape read right; action = the motion read right; smooth = the object seen in every frame and its centroid never
    stepping further than `jump_limit` px; non_weird = one object (`count_objects`) in every frame and the prompt's
    colour in every frame; dframe = `frame_change`; all_right = content and action."""
    a = _to_numpy(frames)
    d = detect(a)
    content = content_kept(d, target, ("colour", "shape"))["content"] == 1.0
    action = content_kept(d, target, ("motion",))["content"] == 1.0
    return {"content": content, "action": action, "smooth": max_jump(d["centroids"]) <= jump_limit,
            "non_weird": all(count_objects(f) == 1 for f in a) and colour_kept(d, target["colour"]) == 1.0,
            "dframe": frame_change(a), "all_right": content and action}


def target_of(prompt: str, world: int = 1) -> dict:
    """The prompt's attributes (world 1: colour, shape, motion, background; world 2: those it names of colour, shape,
    motion and look, `parse_caption2`'s form), or {} for a prompt the world cannot parse."""
    parsed = _world.get_world(world).parse(prompt or "")
    return dict(parsed) if parsed else {}


def look_kept(d: dict, look, keys=("pattern", "angle", "colours")) -> float:
    """World 2: 1.0 when the look a detection read (`d["look"]`) has the `keys` of `look` (a `Look`): its pattern,
    stripe angle and both colours by default (the width is left out: a style reference's period is not a look's
    part a user asks for), else 0.0."""
    got = d.get("look")
    if got is None or look is None:
        return 0.0
    ok = True
    if "pattern" in keys:
        ok &= got.pattern == look.pattern
    if "angle" in keys:
        ok &= got.angle == look.angle
    if "colours" in keys:
        ok &= set(got.colours) == set(look.colours)
    if "width" in keys:
        ok &= got.width == look.width
    return float(ok)


__all__ = ["MIN_OBJECT_PX", "RESIDUAL_MAX", "HALO_LEVEL", "HALO_MAX_PX", "count_objects", "rerender", "residual",
           "hue_of", "off_colour", "halo", "HALO_HUE_TOL", "content_kept", "fidelity",
           "target_of", "look_kept", "look_background", "detect", "colour_kept", "centroids", "endpoint_mse",
           "match_frames", "impacts_met", "sync_iou", "max_jump", "rendered_max_jump", "frame_change",
           "harivo_reading", "style_reading"]
