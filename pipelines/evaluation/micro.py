"""The micro preset's suites and their exact metrics, read by the micro world's detector (`readers.py`).

Suites (`cases()` says exactly what each contains):
- `t2v-hard`  held-out prompts sampled in 2 DDIM steps, where unguided sampling misses attributes: colour / shape /
              direction.
- `t2v-reward` held-out captions as the reward's prompt and an empty prompt for the video model (it samples
              unconditioned): only guidance can draw colour and shape; colour / shape / direction accuracy.
- `style`     striped and checkered references on prompts asking for a black or gray background: the share of
              videos whose detected background becomes the reference's pattern. World 2 (`cases(..., world=2)`,
              a world-2 preset such as `micro2`): prompts that leave the look open ('a red circle moving up') and
              references of each look family (`STYLE2_FAMILIES`: flat, stripes at each angle, checks, rendered at
              256 px) and photo-like images made in code (a gradient with noise); the target is the reference's
              look (`read_look`) read in the video's background: its pattern, stripe angle and both colours.
- `interpolate` key frames with the object where the prompt's motion does not put it (the default constraint,
              `both`; a spec's `mode=reward|replacement|both` switches): endpoint distance (px), path jerk (second
              differences of the centroid, px), monotone interior, smooth path (`max_step_allowed`); the target
              is the ends at the keys (≤ 3 px) on a smooth path.
- `interpolate-agree` key frames that a straight motion of the world joins, with the prompt naming that motion
              (the app's example is of this kind): the same metrics; the target is the ends at the keys (≤ 2 px)
              on a smooth and monotone path: the object glides from key to key.
- `audio`     two impacts one bounce period apart at each of the 4 phases: IoU of floor contacts with impact frames
              at the exact frame (chance 1/4 for a regular bounce of random phase) and within ±1 frame.
- `mg`        plain prompts for a HARIVO MG α sweep: frame-to-frame change, one object per frame, colour kept.

Each tab's example (`pipelines/studio/examples.py`) is a case of one suite (`EXAMPLE_SUITES`, `example_cases`);
`suite_cases` picks a suite's cases by count or by id (`python -m pipelines evaluate --cases example`).

Every suite's row reads its `target`, the video's `fidelity` (the prompt's content kept, one object per frame, a
re-rendering residual, no halo of another colour) and their `joint`, the summary's primary column.

`prompt_set()` is the unguided micro model's fixed prompt set (seen and held-out combinations), used by
`micro_model.py` (`python -m pipelines.evaluation.micro_model`) and the HARIVO ablation.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from .cases import Case
from .readers import centroids, fidelity, impacts_met, look_kept, match_frames, sync_iou, target_of

SUITES = ("t2v-hard", "t2v-reward", "style", "interpolate", "interpolate-agree", "audio", "mg")
#: The metric each suite is judged by, and whether higher is better (the first column of the summary).
PRIMARY = {suite: ("joint", True) for suite in SUITES}


# ------------------------------------------------------------------------------------------------------ suites
def _pil(frame) -> Any:
    from PIL import Image

    a = np.asarray(frame, np.float32)
    return Image.fromarray((np.clip(a.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8))


def reference_image(pattern: str):
    """A style reference (PIL RGB): the world's background `pattern` (striped, checkered) in gray."""
    from ..micro import world

    img = np.repeat(world.background_image(pattern)[None], 3, 0)
    return _pil(img)


#: t2v-hard: few-step sampling, where the unguided micro model misses attributes. It follows its prompts at any CFG
#: (1.0–7.5 all gave 100 % on the held-out prompts at 20 steps), so CFG cannot leave room; the step count can
#: (bench/EVALUATE.md has the sweep behind this choice).
T2V_HARD_CFG = 7.5
T2V_HARD_STEPS = 2
#: interpolate: key positions (top-left x, y) of the object in the first and last frame: corners and edges that
#: a straight motion of the prompt would not connect.
KEY_POSITIONS = [((2, 2), (20, 20)), ((20, 2), (2, 20)), ((2, 20), (20, 2)), ((11, 2), (11, 20))]
#: interpolate-agree: (first, last) top-left positions 7 frames apart at the world's top speed (3 px per frame),
#: on the edge of the cross-axis range, and the motion that joins them.
AGREE_KEYS = [(((1, 2), (22, 2)), "moving left to right"), (((22, 20), (1, 20)), "moving right to left"),
              (((2, 1), (2, 22)), "moving down"), (((20, 22), (20, 1)), "moving up")]
#: audio: the frame of the first impact (the second one follows a bounce period later).
AUDIO_PHASES = (0, 1, 2, 3)


def _key_case(cid: str, colour: str, shape: str, motion: str, p0, p1) -> Case:
    """An interpolation case: key frames with the object's top-left at p0 and p1 on gray, in the default
    interpolation mode (a `mode=` in the method spec overrides it)."""
    from ..micro import world
    from ..task_options import DEFAULT_INTERPOLATION_MODE

    frames = world.render_positions(colour, shape, "gray", [p0, p1])
    keys = centroids(frames)
    return Case(cid, "interpolate", world.caption(colour, shape, motion, "gray"),
                inputs=dict(first_frame=_pil(frames[0]), last_frame=_pil(frames[1]),
                            interpolation_mode=DEFAULT_INTERPOLATION_MODE),
                target=dict(first=keys[0], last=keys[1]))


#: World 2's style suite: per reference family, (prompt attributes, reference) of its cases. Prompts name colour,
#: shape and motion and leave the look open; references are looks of the family (any of `looks.TRAIN_LOOKS`) or,
#: for `photo`, a seed of `photo_reference` (a smooth colour gradient with noise, no look of the world).
STYLE2_FAMILIES = {
    "flat": [("red", "circle", "moving up", ("flat", ("teal",), None, None)),
             ("yellow", "square", "moving left to right", ("flat", ("maroon",), None, None)),
             ("cyan", "triangle", "moving down", ("flat", ("olive",), None, None)),
             ("white", "circle", "moving right to left", ("flat", ("navy",), None, None))],
    "stripes": [("red", "circle", "moving up", ("stripes", ("teal", "beige"), 45, "wide")),
                ("yellow", "square", "moving left to right", ("stripes", ("navy", "silver"), 90, "wide")),
                ("cyan", "triangle", "moving down", ("stripes", ("black", "beige"), 135, "wide")),
                ("white", "circle", "moving right to left", ("stripes", ("maroon", "gray"), 0, "narrow"))],
    "checks": [("red", "circle", "moving up", ("checks", ("navy", "beige"), None, "wide")),
               ("yellow", "square", "moving left to right", ("checks", ("black", "silver"), None, "narrow")),
               ("cyan", "triangle", "moving down", ("checks", ("teal", "brown"), None, "narrow")),
               ("white", "circle", "moving right to left", ("checks", ("charcoal", "beige"), None, "wide"))],
    "photo": [("red", "circle", "moving up", 0), ("yellow", "square", "moving left to right", 1),
              ("cyan", "triangle", "moving down", 2), ("white", "circle", "moving right to left", 3)],
}
#: The side (px) world 2's look references are rendered at (a user's upload is larger than the video).
STYLE2_REFERENCE_PX = 256


def look_reference(look, size: int = STYLE2_REFERENCE_PX):
    """A style reference (PIL RGB, `size` px): world 2's `look` drawn by `looks.look_rgb` at that size."""
    from ..micro.looks import look_rgb

    return _pil(look_rgb(look, size))


def photo_reference(seed: int, size: int = STYLE2_REFERENCE_PX):
    """A photo-like style reference (PIL RGB, `size` px), made in code: a smooth two-colour gradient in a random
    direction between random muted colours, with blotchy low-frequency texture and pixel noise. No look of the world
    draws it; its target is the look `read_look` maps it to."""
    rng = np.random.default_rng(1000 + int(seed))
    y, x = np.mgrid[0:size, 0:size] / (size - 1.0)
    theta = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (np.cos(theta) * (x - 0.5) + np.sin(theta) * (y - 0.5)), 0, 1)
    c0, c1 = rng.uniform(0.05, 0.7, 3), rng.uniform(0.05, 0.7, 3)
    img = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
    blot = rng.normal(size=(3, 8, 8))
    from scipy import ndimage

    blot = ndimage.zoom(blot, (1, size / 8.0, size / 8.0), order=3)[:, :size, :size]
    img = img + 0.06 * blot + rng.normal(0, 0.03, img.shape)
    return _pil(np.clip(img, 0, 1).astype(np.float32))


def _style2_cases() -> list[Case]:
    from ..micro.looks import TRAIN_LOOKS, Look, read_look

    out = []
    for family, rows in STYLE2_FAMILIES.items():
        for i, (c, s, m, ref) in enumerate(rows):
            if family == "photo":
                image = photo_reference(ref)
                look = read_look(image).look
            else:
                look = Look.make(*ref)
                if look not in TRAIN_LOOKS:
                    raise AssertionError(f"style reference {look} is not a training look")
                image = look_reference(look)
            out.append(Case(f"{family}-{i}", "style", f"a {c} {s} {m}", inputs=dict(style_image=image),
                            target=dict(look=look, family=family)))
    return out


def cases(suite: str, num_frames: int = 8, world: int = 1) -> list[Case]:
    """A suite's cases; `world` 2 gives world 2's style suite (the other suites' prompts are world captions that
    world 2 parses too: their backgrounds are flat or gray looks)."""
    if suite == "style" and int(world) == 2:
        return _style2_cases()
    from ..micro import world

    held = list(world.HELD_OUT)
    if suite == "t2v-hard":
        out = []
        for i, (c, s, m) in enumerate(held):
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append(Case(f"h{i}", "t2v", world.caption(c, s, m, bg), target=dict(colour=c, shape=s, motion=m),
                            cfg=T2V_HARD_CFG, steps=T2V_HARD_STEPS))
        return out
    if suite == "t2v-reward":
        out = []
        for i, (c, s, m) in enumerate(held):
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append(Case(f"r{i}", "t2v", "", inputs=dict(reward_prompt=world.caption(c, s, m, bg)),
                            target=dict(colour=c, shape=s, motion=m)))
        return out
    if suite == "style":
        out = []
        for i, (c, s, m) in enumerate(held[:4]):
            pattern = ("striped", "checkered")[i % 2]
            bg = ("black", "gray")[(i // 2) % 2]
            out.append(Case(f"{pattern}-{i}", "style", world.caption(c, s, m, bg),
                            inputs=dict(style_image=reference_image(pattern)), target=dict(background=pattern)))
        return out
    if suite == "interpolate":  # a motion that does not join the keys
        return [_key_case(f"k{i}", c, s, "moving left to right" if i != 0 else "moving up", p0, p1)
                for i, ((p0, p1), (c, s, _m)) in enumerate(zip(KEY_POSITIONS, held))]
    if suite == "interpolate-agree":  # the motion that joins the keys
        return [_key_case(f"a{i}", c, s, motion, p0, p1)
                for i, (((p0, p1), motion), (c, s, _m)) in enumerate(zip(AGREE_KEYS, held))]
    if suite == "audio":
        out = []
        fps = world.FPS
        for k, (c, s, _m) in zip(AUDIO_PHASES, held):
            impacts = [f for f in (k, k + world.BOUNCE_PERIOD) if f < num_frames]
            wave = world.synth_impacts_audio([f / fps for f in impacts], num_frames / fps)
            bg = world.BACKGROUNDS[k % len(world.BACKGROUNDS)]
            out.append(Case(f"phase{k}", "audio", world.caption(c, s, "bouncing", bg),
                            inputs=dict(audio=(wave, world.SAMPLE_RATE)), target=dict(impacts=impacts)))
        return out
    if suite == "mg":
        out = []
        for i, (c, s, m) in enumerate(held[:4]):
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append(Case(f"m{i}", "t2v", world.caption(c, s, m, bg), target=dict(colour=c, shape=s, motion=m)))
        return out
    raise ValueError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")



# ------------------------------------------------------------------------------------------ the tabs' examples
#: The suite each tab's example (`pipelines/studio/examples.py`) is a case of, and is judged by.
EXAMPLE_SUITES = {"t2v": "mg", "style": "style", "audio": "audio", "interpolate": "interpolate-agree"}


def _image_array(value) -> np.ndarray:
    """(3, H, W) in [0, 1] of an image given as a path or a PIL image."""
    from PIL import Image

    img = value if isinstance(value, Image.Image) else Image.open(value)
    return np.asarray(img.convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0


def reference_pattern(image) -> Optional[str]:
    """The world's background pattern (striped, checkered) a style reference shows, read by the detector at the
    world's size; None for a reference that is not one of the world's patterns (colours, other motifs)."""
    from PIL import Image

    from ..micro import world
    from ..micro.detector import classify_background, object_mask

    img = image if isinstance(image, Image.Image) else Image.open(image)
    a = _image_array(img.convert("RGB").resize((world.SIZE, world.SIZE), Image.NEAREST))
    mask = object_mask(a)
    if mask.any():  # coloured or white pixels: no background of the world has them
        return None
    name = classify_background(a[None], mask[None])
    return name if name in ("striped", "checkered") else None


def example_cases(task: str, num_frames: int = 8, rows=None, world: int = 1) -> list[Case]:
    """The tab's example rows (`pipelines.studio.examples.example_rows`, or `rows`) as cases of its suite
    (`EXAMPLE_SUITES`), ids `example`, `example-1`, ...: the row's prompt, uploads and MG α; its method and seed are
    the grid's (method spec, seed). ValueError names a row that is not a case of its suite (a style reference that
    is not one of the world's patterns; key frames without one object each)."""
    w = int(world)
    from ..micro import world
    from ..task_options import DEFAULT_INTERPOLATION_MODE
    from ..studio.examples import EXAMPLE_IMPACT_TIMES, EXAMPLE_UPLOADS, example_names, example_rows

    rows = example_rows(task, world=w) if rows is None else rows
    names = example_names(task, EXAMPLE_UPLOADS[task])
    out = []
    for i, row in enumerate(rows):
        v = dict(zip(names, row))
        cid = "example" if i == 0 else f"example-{i}"
        prompt = v["prompt"]
        attrs = target_of(prompt, world=w)
        if not attrs:
            raise ValueError(f"example {cid} of the {task} tab: the micro world cannot read the prompt {prompt!r}")
        inputs = {"mg_scale": v["mg_scale"]}
        if task == "t2v":
            target = {k: attrs[k] for k in ("colour", "shape", "motion")}
        elif task == "style" and w == 2:  # the reference's nearest look is the target
            from ..micro.looks import read_look

            inputs["style_image"] = v["style_image"]
            target = {"look": read_look(v["style_image"]).look, "family": "example"}
        elif task == "style":
            pattern = reference_pattern(v["style_image"])
            if pattern is None:
                raise ValueError(f"example {cid} of the style tab: its reference {v['style_image']} is not one of "
                                 "the world's patterns (striped, checkered), so the style suite cannot judge it")
            inputs["style_image"] = v["style_image"]
            target = {"background": pattern}
        elif task == "audio":
            inputs["audio"] = v["audio"]
            impacts = sorted({round(t * world.FPS) for t in EXAMPLE_IMPACT_TIMES})
            target = {"impacts": [f for f in impacts if f < num_frames]}
        elif task == "interpolate":
            keys = centroids(np.stack([_image_array(v["first_frame"]), _image_array(v["last_frame"])]))
            if any(k is None for k in keys):
                raise ValueError(f"example {cid} of the interpolate tab: a key frame shows no object")
            inputs.update(first_frame=v["first_frame"], last_frame=v["last_frame"],
                          interpolation_mode=DEFAULT_INTERPOLATION_MODE)
            target = {"first": keys[0], "last": keys[1]}
        else:
            raise ValueError(f"task must be one of {', '.join(EXAMPLE_SUITES)}, got {task!r}")
        out.append(Case(cid, task, prompt, inputs=inputs, target=target))
    return out


def suite_cases(suite: str, num_frames: int = 8, select=None, world: int = 1) -> list[Case]:
    """A suite's cases as the grid runs them: `select` None (the suite's own cases), an int N (its first N), or
    case ids (a list or a comma string) among its own and its tab's examples (`example`, `example-1`, ...: see
    `example_cases`; only the suite a tab's example belongs to has them)."""
    own = cases(suite, num_frames, world=world)
    if select is None:
        return own
    if isinstance(select, int) or (isinstance(select, str) and select.strip().isdigit()):
        return own[: int(select)]
    ids = [s.strip() for s in (select.split(",") if isinstance(select, str) else select) if s.strip()]
    task = next((t for t, s in EXAMPLE_SUITES.items() if s == suite), None)
    pool = own + (example_cases(task, num_frames, world=world) if task and any(i.startswith("example") for i in ids) else [])
    by_id = {c.id: c for c in pool}
    bad = [i for i in ids if i not in by_id]
    if bad:
        raise ValueError(f"--cases: {bad[0]!r} is not a case of the {suite} suite (its cases: "
                         f"{', '.join(by_id) or 'none'})")
    return [by_id[i] for i in ids]


#: Interpolation targets: the ends within this many px of the keys (keys a motion of the world joins / conflicting keys).
ENDS_PX = {"interpolate-agree": 2.0, "interpolate": 3.0}


def max_step_allowed(first, last, num_frames: int) -> float:
    """The longest frame-to-frame step (px) of a smooth path from key `first` to key `last` (centroids) over
    `num_frames` frames: twice the even step between the keys, plus 1 px."""
    even = float(np.linalg.norm(np.subtract(last, first))) / max(1, num_frames - 1)
    return 2 * even + 1.0


def _content_keys(suite: str) -> tuple[str, ...]:
    """The prompt's attributes a suite's video must keep: conflicting interpolation keys cannot follow the prompt's
    motion (no motion of the world joins them), so there only colour and shape."""
    return ("colour", "shape") if suite == "interpolate" else ("colour", "shape", "motion")


def metrics(suite: str, case: Case, frames, world: int = 1) -> dict:
    """The suite's exact metrics of one generated video `frames` (f, 3, H, W) in [0, 1].

    Every suite reads three things (`pipelines.evaluation.readers`): `target` (the suite's effect: the pattern, the
    key positions, the contacts, the prompt's attributes), `fidelity` (the prompt's content kept, one object in every
    frame, no artefacts) and `joint` (both: the figure methods and defaults are chosen on). `world` 2 reads the
    video as world 2's (its background is a look; the style target is the reference's look)."""
    from ..micro.detector import _to_numpy, detect

    world = int(world)
    d = detect(frames, world=world)
    a = _to_numpy(frames)
    out: dict[str, Any] = {}
    prompt_target = case.target if suite in ("t2v-hard", "t2v-reward", "mg") else target_of(case.prompt, world=world)
    fid = fidelity(a, prompt_target, _content_keys(suite), d=d)
    if suite in ("t2v-hard", "t2v-reward", "mg"):
        t = case.target
        for k in ("colour", "shape", "motion"):
            out[k] = float(d[k] == t[k])
        out["accuracy"] = (out["colour"] + out["shape"] + out["motion"]) / 3
        out["target"] = out["accuracy"]
    if suite == "mg":
        out["change"] = float(np.abs(np.diff(a, axis=0)).mean())
        out["colour_kept"] = float(d["colour_consistency"] if d["colour"] == case.target["colour"] else 0.0)
    if suite == "style" and "look" in case.target:  # world 2: the reference's look in the background
        look = case.target["look"]
        out["background"] = d["background"]
        out["reference_look"] = look.describe()
        out["family"] = case.target.get("family")
        out["look_pattern"] = float(d.get("look") is not None and d["look"].pattern == look.pattern)
        out["look_colours"] = look_kept(d, look, ("colours",))
        out["target"] = look_kept(d, look)  # pattern, stripe angle and both colours
    elif suite == "style":
        out["background"] = d["background"]
        out["style_changed"] = float(d["background"] == case.target["background"])
        out["target"] = out["style_changed"]
    if suite in ("interpolate", "interpolate-agree"):
        cents = d["centroids"]
        size = a.shape[-1]
        dist = []
        for k, key in ((0, case.target["first"]), (-1, case.target["last"])):
            c = cents[k]
            dist.append(float(size) if c is None else math.hypot(c[0] - key[0], c[1] - key[1]))
        out["endpoint_px"] = float(np.mean(dist))
        out["ends_max_px"] = float(max(dist))
        pts = np.asarray([c for c in cents if c is not None], np.float64)
        out["jerk_px"] = float(np.linalg.norm(np.diff(pts, 2, axis=0), axis=1).mean()) if len(pts) >= 3 else None
        out["object_frames"] = int(d["object_frames"])
        # monotone: every centroid's projection on the first→last key axis moves forward (1 px slack)
        k0, k1 = np.asarray(case.target["first"]), np.asarray(case.target["last"])
        axis = (k1 - k0) / (np.linalg.norm(k1 - k0) + 1e-9)
        if len(pts) == len(cents):
            proj = (pts - k0) @ axis
            out["monotone"] = float(bool(np.all(np.diff(proj) >= -1.0)))
        else:
            out["monotone"] = 0.0
        # smooth: no frame-to-frame step longer than twice the even step between the keys, +1 px (a path that
        # stays at the first key and jumps to the last is monotone, not smooth)
        steps = np.linalg.norm(np.diff(pts, axis=0), axis=1) if len(pts) >= 2 else np.zeros(0)
        out["max_step_px"] = float(steps.max()) if len(steps) else None
        out["smooth"] = float(len(pts) == len(cents) and len(steps) > 0
                              and float(steps.max()) <= max_step_allowed(k0, k1, len(cents)))
        ends_ok = out["ends_max_px"] <= ENDS_PX[suite]
        # the target is the key frames joined by a gliding path: ends at the keys, a smooth path and, where a motion
        # of the world joins the keys, a monotone one
        out["target"] = float(ends_ok and out["smooth"] == 1.0 and (out["monotone"] == 1.0 or suite == "interpolate"))
    if suite == "audio":
        impacts = case.target["impacts"]
        contacts = list(d.get("bounce_frames") or [])
        out["sync_iou"], out["sync_iou_1"] = sync_iou(impacts, contacts, 0), sync_iou(impacts, contacts, 1)
        out["impacts_met"] = impacts_met(impacts, contacts, 1)
        out["contacts"] = contacts
        out["target"] = out["sync_iou"]
    out.update({k: fid[k] for k in ("content", "one_object", "residual", "halo_px", "clean", "fidelity")})
    if suite in ("t2v-hard", "t2v-reward", "mg"):  # the prompt is the target: its accuracy counts in clean videos
        out["joint"] = out["target"] * out["clean"]
    else:
        out["joint"] = out["target"] * out["fidelity"]
    return out


# --------------------------------------------------------------------------------------- the micro model's prompts
def prompt_set(n_seen: int = 12) -> list[dict]:
    """The unguided micro model's fixed prompt set: `n_seen` seen (training) combinations and every held-out one,
    each with a background from a fixed cycle (split, colour, shape, motion, background, prompt)."""
    from ..micro import world

    rng = np.random.default_rng(123)
    seen_idx = rng.choice(len(world.TRAIN_COMBOS), size=n_seen, replace=False)
    seen = [world.TRAIN_COMBOS[i] for i in sorted(seen_idx)]
    out = []
    for split, combos in (("seen", seen), ("held-out", world.HELD_OUT)):
        for i, (c, s, m) in enumerate(combos):
            bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
            out.append({"split": split, "colour": c, "shape": s, "motion": m, "background": bg,
                        "prompt": world.caption(c, s, m, bg)})
    return out


__all__ = ["SUITES", "PRIMARY", "cases", "metrics", "prompt_set", "reference_image", "T2V_HARD_CFG",
           "T2V_HARD_STEPS", "KEY_POSITIONS", "AGREE_KEYS", "AUDIO_PHASES", "ENDS_PX", "max_step_allowed",
           "EXAMPLE_SUITES", "example_cases", "suite_cases", "reference_pattern", "STYLE2_FAMILIES",
           "look_reference", "photo_reference"]

