"""Micro world 2: the look family, its renderer, captions with attribute dropout, the parser and the caption notice;
world 1 kept as four members of the family."""
import itertools

import numpy as np
import pytest

from pipelines.micro import looks, world
from pipelines.micro.detector import SAT, WHITE, object_mask
from pipelines.micro.looks import ALL_LOOKS, PALETTE, WORLD1_LOOKS, Look, look_rgb
from pipelines.micro.world import (ATTRIBUTES2, LOOK_PARTS, WORLD1, WORLD2, caption2, caption_notice,
                                   caption_notice2, get_world, parse_caption2, parse_look_phrase)


def test_family_size_and_members():
    flats = [lk for lk in ALL_LOOKS if lk.pattern == "flat"]
    stripes = [lk for lk in ALL_LOOKS if lk.pattern == "stripes"]
    checks = [lk for lk in ALL_LOOKS if lk.pattern == "checks"]
    assert len(flats) == len(PALETTE)
    assert len(stripes) == len(looks.PAIRS) * 4 * 2 and len(checks) == len(looks.PAIRS) * 2
    assert {lk.angle for lk in stripes} == {0, 45, 90, 135} and {lk.width for lk in checks} == {"narrow", "wide"}
    assert len(set(ALL_LOOKS)) == len(ALL_LOOKS)
    assert set(looks.HELD_OUT_LOOKS) <= set(ALL_LOOKS) and set(looks.HELD_OUT_LOOKS).isdisjoint(looks.TRAIN_LOOKS)
    with pytest.raises(ValueError, match="palette"):
        Look("flat", ("pink",))
    with pytest.raises(ValueError, match="angle"):
        Look("checks", ("black", "gray"), 45, "wide")


def test_world1_backgrounds_are_four_looks_rendered_identically():
    for name, lk in WORLD1_LOOKS.items():
        assert lk in ALL_LOOKS
        assert np.array_equal(look_rgb(lk), np.repeat(world.background_image(name)[None], 3, 0)), name
        v1, _ = world.render_clip("red", "circle", "moving up", name, seed=2)
        v2, m2 = world.render_clip("red", "circle", "moving up", lk, seed=2)
        assert np.array_equal(v1.numpy(), v2.numpy())
        assert parse_caption2(m2["caption"])["look"]["colours"] == lk.colours
    # world 1's caption, vocabulary and parser are unchanged
    assert WORLD1.vocabulary is world.VOCABULARY and "stripes" not in world.VOCABULARY
    assert set(world.VOCABULARY) <= set(WORLD2.vocabulary)


def test_render_every_look_distinct_and_separable():
    """Every look renders; no two looks render the same image; no look pixel is an object pixel, with margin."""
    seen = {}
    for lk in ALL_LOOKS:
        img = look_rgb(lk)
        assert img.shape == (3, 32, 32) and img.dtype == np.float32
        assert img.max() <= looks.BG_MAX < 1.0  # brightest channel below the objects' (1.0) and WHITE
        assert (img.max(0) - img.min(0)).max() <= looks.BG_SAT + 1e-6 < SAT and img.min(0).max() < WHITE
        assert not object_mask(img).any()
        # a two-colour look shows both colours over a fair share of the frame
        if lk.pattern != "flat":
            share = (img == np.asarray(PALETTE[lk.colours[0]], np.float32)[:, None, None]).all(0).mean()
            assert 0.3 <= share <= 0.7, (lk, share)
        key = img.tobytes()
        assert key not in seen, (lk, seen.get(key))
        seen[key] = lk
    for c, v in PALETTE.items():
        assert max(v) <= looks.BG_MAX and max(v) - min(v) <= looks.BG_SAT + 1e-9, c


def test_objects_stay_separable_on_every_look():
    rng = np.random.default_rng(0)
    for i, lk in enumerate(ALL_LOOKS):
        colour = list(world.COLOURS)[i % 6]
        v, meta = world.render_clip(colour, world.SHAPES[i % 3], world.MOTIONS[i % 5], lk, rng=rng)
        x, y = meta["positions"][0]
        truth = np.zeros((32, 32), bool)
        truth[y:y + world.OBJ, x:x + world.OBJ] = world.SHAPE_MASKS[world.SHAPES[i % 3]]
        assert np.array_equal(object_mask(v[0].numpy()), truth), lk


def test_caption_forms_round_trip():
    """Every combination of named attributes and named look parts parses back to exactly what it names, for every
    look pattern and angle."""
    subsets = [s for r in range(len(ATTRIBUTES2) + 1) for s in itertools.combinations(ATTRIBUTES2, r)]
    part_sets = [s for r in range(len(LOOK_PARTS) + 1) for s in itertools.combinations(LOOK_PARTS, r)]
    by = {p: [lk for lk in ALL_LOOKS if lk.pattern == p] for p in looks.PATTERNS}
    probe = by["flat"][:3] + by["stripes"][:8] + by["checks"][:2]
    n = 0
    for (c, s, m), lk in zip(itertools.cycle(world.ALL_COMBOS), probe * 6):
        for named in subsets:
            for parts in part_sets:
                a = {"colour": c, "shape": s, "motion": m, "background": lk, "named": named, "look_parts": parts}
                text = WORLD2.caption_of(a)
                got = parse_caption2(text)
                assert got == world.named_target(a), (text, got)
                for k in ("colour", "shape", "motion"):
                    assert (k in got) == (k in named) and (k not in got or got[k] == a[k]), text
                if "look" in named:
                    assert looks.look_matches(lk, got["look"]), text
                    assert ("colours" in got["look"]) == ("colours" in parts)
                n += 1
    assert n == 6 * len(probe) * len(subsets) * len(part_sets)
    # every full caption of every look names the look exactly
    for lk in ALL_LOOKS:
        got = parse_caption2(caption2("red", "circle", "moving up", lk))["look"]
        assert [x for x in ALL_LOOKS if looks.look_matches(x, got)] == [lk], lk


def test_parser_partial_and_free_forms():
    assert parse_caption2("a red circle moving up") == {"colour": "red", "shape": "circle", "motion": "moving up"}
    assert parse_caption2("Red circle, moving up.") == {"colour": "red", "shape": "circle", "motion": "moving up"}
    assert parse_caption2("the red circle over the black background") == {
        "colour": "red", "shape": "circle", "look": {"pattern": "flat", "colours": ("black",)}}
    assert parse_caption2("on navy and gray diagonal stripes") == {
        "look": {"pattern": "stripes", "colours": ("gray", "navy"), "angle": "diagonal"}}
    assert parse_caption2("a cyan triangle on a Grey background")["look"] == {"pattern": "flat", "colours": ("gray",)}
    assert parse_caption2("a square on dark gray and light grey checks")["look"] == {
        "pattern": "checks", "colours": ("charcoal", "silver")}
    assert parse_caption2("an object") == {}
    # world-1 captions parse in world 2, their backgrounds as looks
    for c, s, m, b in [("red", "circle", "bouncing", "checkered"), ("blue", "square", "moving up", "striped")]:
        got = parse_caption2(world.caption(c, s, m, b))
        assert got["colour"] == c and looks.look_matches(WORLD1_LOOKS[b], got["look"])
    for bad in ("a dog", "a red on stripes", "a red circle on wide", "on navy and navy stripes", "on a wide background",
                "on checks stripes", "on horizontal checks", "", "a", None, 3):
        assert parse_caption2(bad) is None, bad
    # 'diagonal' alone matches either diagonal
    d = parse_look_phrase("diagonal stripes".split())
    assert looks.look_matches(Look.make("stripes", ("black", "beige"), 45, "wide"), d)
    assert looks.look_matches(Look.make("stripes", ("black", "beige"), 135, "wide"), d)
    assert not looks.look_matches(Look.make("stripes", ("black", "beige"), 0, "wide"), d)


def test_dropout_covers_each_attribute_and_look_part():
    rng = np.random.default_rng(0)
    n = 2000
    left_out = {k: 0 for k in ATTRIBUTES2 + LOOK_PARTS}
    empty = 0
    for _ in range(n):
        a = WORLD2.sample(rng, dropout=0.25)
        assert a["background"] in looks.TRAIN_LOOKS and not world.is_held_out(a["colour"], a["shape"], a["motion"])
        for k in ATTRIBUTES2:
            left_out[k] += k not in a["named"]
        for k in LOOK_PARTS:
            left_out[k] += k not in a["look_parts"]
        text = WORLD2.caption_of(a)
        assert parse_caption2(text) == world.named_target(a), text
        empty += not a["named"]
    for k, v in left_out.items():
        assert 0.2 * n <= v <= 0.3 * n, (k, v)
    assert empty > 0
    full = WORLD2.sample(rng)  # no dropout: everything named
    assert full["named"] == ATTRIBUTES2 and full["look_parts"] == LOOK_PARTS
    held = {WORLD2.sample(rng, "heldout")["background"] for _ in range(400)}
    assert held <= set(looks.HELD_OUT_LOOKS) and len(held) > len(looks.HELD_OUT_LOOKS) // 2
    with pytest.raises(ValueError, match="dropout"):
        WORLD2.sample(rng, dropout=1.0)
    with pytest.raises(ValueError, match="world 2"):
        WORLD1.sample(rng, dropout=0.1)


def test_caption_notice_world2():
    assert caption_notice2("a red circle moving up on teal and beige wide vertical stripes") is None
    left = caption_notice2("a red circle moving up")  # a valid prompt: the notice says what the sampler chooses
    assert "look" in left and "left to the sampler" in left and "colour" not in left, left
    left = caption_notice2("on teal and beige wide vertical stripes")
    assert "colour, its shape and its motion are left to the sampler" in left and "look" not in left, left
    note = caption_notice2("a pink dog dancing")
    assert "unknown words: pink, dog, dancing" in note and "leaves everything to the sampler" in note
    assert "names nothing" in caption_notice2("an object")
    assert "check the word order" in caption_notice2("circle red")
    # the world selector: world 1's notice stays the default
    assert caption_notice("a red circle moving up") is not None
    assert "left to the sampler" in caption_notice("a red circle moving up", world=2)
    assert get_world(2) is WORLD2 and get_world("1") is WORLD1 and get_world(WORLD2) is WORLD2
    with pytest.raises(ValueError, match="world must be 1 or 2"):
        get_world(3)


def test_world_objects_agree_with_module_functions():
    rng = np.random.default_rng(1)
    a = WORLD1.sample(rng)
    assert WORLD1.caption_of(a) == world.caption(a["colour"], a["shape"], a["motion"], a["background"])
    assert WORLD1.parse(WORLD1.caption_of(a)) == WORLD1.target(a)
    b = WORLD2.sample(rng, dropout=0.5)
    assert WORLD2.target(b) == world.named_target(b)
    longest = max((caption2(c, s, m, lk) for c, s, m in world.ALL_COMBOS[:20] for lk in ALL_LOOKS), key=len)
    from pipelines.training.micro_models import MAX_TOKENS

    assert len(longest.split()) + 2 <= MAX_TOKENS  # every caption fits the text encoder as whole-word tokens
    assert set(" ".join(caption2(c, s, m, lk) for c, s, m in world.ALL_COMBOS[:5] for lk in ALL_LOOKS).split()) \
        <= set(WORLD2.vocabulary)


class _RenderingPipe:
    """A stand-in text-to-video pipeline that renders exactly what a world-2 prompt names (the rest fixed)."""

    def set_progress_bar_config(self, **kw):
        pass

    def __call__(self, prompts, num_frames=8, generator=None, output_type="pt", **kw):
        import torch

        vids = []
        for i, p in enumerate(prompts):
            t = parse_caption2(p)
            look = next(lk for lk in ALL_LOOKS if "look" not in t or looks.look_matches(lk, t["look"]))
            v, _ = world.render_clip(t.get("colour", "white"), t.get("shape", "square"), t.get("motion", "bouncing"),
                                     look, num_frames=num_frames, seed=i)
            vids.append(v)
        return type("Out", (), {"frames": torch.stack(vids)})()


def test_prompt_set2_and_its_scoring():
    from pipelines.evaluation.micro_model import evaluate_world2, table_world2

    ps = world.prompt_set2(4)
    splits = {p["split"] for p in ps}
    assert splits == {"seen", "held-out", "partial"}
    assert all(parse_caption2(p["prompt"]) == p["target"] for p in ps)
    held = [p for p in ps if p["split"] == "held-out"]
    assert len(held) == len(world.HELD_OUT)
    partial = [p["target"] for p in ps if p["split"] == "partial"]
    for k in ("colour", "shape", "motion", "look"):  # every attribute is left out by some partial prompt
        assert any(k not in t for t in partial) and any(k in t for t in partial)
    assert world.prompt_set2(4) == ps  # fixed
    res = evaluate_world2(_RenderingPipe(), steps=1, seeds=1, n_seen=4, verbose=False)
    assert all(r["honoured"] for r in res["rows"]), [r for r in res["rows"] if not r["honoured"]][:2]
    assert res["summary"]["partial"]["look"] == 1.0 and res["summary"]["seen"]["motion"] == 1.0
    assert "| partial |" in table_world2(res)
    # a video showing something else fails exactly the attributes the prompt names
    v, _ = world.render_clip("blue", "circle", "moving up", looks.Look("flat", ("navy",)), seed=0)
    from pipelines.micro.detector import detect

    d = detect(v, world=2)
    assert world.honoured(d, {"colour": "red", "motion": "moving up"}) == {"colour": False, "motion": True}
    assert world.honoured(d, {"look": {"pattern": "flat"}}) == {"look": True}
    assert world.honoured(d, {"look": {"pattern": "stripes", "colours": ("navy",)}}) == {"look": False}
