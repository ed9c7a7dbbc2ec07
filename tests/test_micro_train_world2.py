"""Micro-model training on world 2 (`--world 2`): every stage runs a handful of steps at tiny sizes on rendered
world-2 clips with attribute-dropout captions, the tokenizer is world 2's, export records the world; the exact
posterior table stays world 1's with a clear error; HARIVO's micro data renders world 2 too."""
import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.micro import looks, world  # noqa: E402
from pipelines.training import micro_data  # noqa: E402
from pipelines.training.micro_stages import Trainer, main  # noqa: E402

STEPS = {"clip": 4, "vae": 3, "unet": 3, "motion": 2, "joint": 2}


def test_world2_batches_have_dropout_captions_and_looks():
    rng = np.random.default_rng(0)
    x, caps, attrs = micro_data.render_frames(rng, 64, world_version=2, dropout=0.25, with_attrs=True)
    assert x.shape == (64, 3, 32, 32)
    assert all(isinstance(a["background"], looks.Look) for a in attrs)
    assert all(world.parse_caption2(c) == world.named_target(a) for c, a in zip(caps, attrs))
    assert any(len(a["named"]) < 4 for a in attrs) and any(len(a["named"]) == 4 for a in attrs)
    same = micro_data.same_content(attrs, 2)
    assert torch.all(same.diagonal() == 1)  # a frame fits its own caption
    # a caption that names nothing but the colour fits every frame of that colour
    j = next((j for j, a in enumerate(attrs) if a["named"] == ("colour",)), None)
    if j is not None:
        assert torch.equal(same[:, j].bool(), torch.tensor([a["colour"] == attrs[j]["colour"] for a in attrs]))
    vids, caps = micro_data.render_clips(rng, 3, num_frames=12, world_version=2, dropout=0.25)
    assert vids.shape == (3, 12, 3, 32, 32) and len(caps) == 3
    # world 1's batches are unchanged by the world-2 path (same seeds, same draws)
    a1, c1 = micro_data.render_frames(np.random.default_rng(5), 4)
    a2, c2 = micro_data.render_frames(np.random.default_rng(5), 4, world_version=1)
    assert torch.equal(a1, a2) and c1 == c2 and all(world.parse_caption(c) for c in c1)
    s1 = micro_data.same_content([world.sample_attributes(np.random.default_rng(k)) for k in range(6)], 1)
    assert torch.equal(s1, s1.t())


def test_posterior_table_scaling_and_clean_fallback(tmp_path):
    keys1, b1 = micro_data.table_bytes(1)
    keys2, b2 = micro_data.table_bytes(2)
    assert keys1 == 72 and b1 < 50e6 and keys2 == 18 * len(looks.ALL_LOOKS) and b2 > 5e9
    with pytest.raises(ValueError, match="--x0-target posterior needs world 1"):
        Trainer(tmp_path / "o", tmp_path / "w", size="tiny", world_version=2, x0_target="posterior")
    with pytest.raises(ValueError, match="--dropout needs --world 2"):
        Trainer(tmp_path / "o", tmp_path / "w", size="tiny", dropout=0.3)
    assert main(["--world", "2", "--x0-target", "posterior", "--stages", "joint", "--out", str(tmp_path / "o"),
                 "--work", str(tmp_path / "w"), "--size", "tiny"]) == 2


def test_world2_stages_train_and_export(tmp_path):
    torch.set_num_threads(1)
    out, work = tmp_path / "out", tmp_path / "work"
    rc = main(["--world", "2", "--size", "tiny", "--quiet", "--threads", "1", "--out", str(out), "--work", str(work),
               "--stages", "clip,vae,unet,motion,joint,export", "--ckpt-every", "1000",
               *[f"--{s}-steps={n}" for s, n in STEPS.items()]])
    assert rc == 0
    for s, n in STEPS.items():
        rows = [json.loads(r) for r in (work / s / "log.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] == n and all(np.isfinite(r["loss"]) for r in rows)
    meta = json.loads((out / "training.json").read_text())
    assert meta["world"] == 2 and meta["caption_dropout"] == world.DROPOUT
    from pipelines.micro.loading import world_of

    assert world_of(out) == 2 and world_of(tmp_path) == 1
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))
    assert all(len(tok.tokenize(w)) == 1 for w in world.VOCABULARY2)  # every world-2 word is one token
    from diffusers import AnimateDiffPipeline

    pipe = AnimateDiffPipeline.from_pretrained(str(out))
    video = pipe("a red circle moving up", num_frames=8, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert tuple(video.shape) == (1, 8, 3, 32, 32)
    from pipelines.micro.detector import detect

    assert detect(video[0], world=2)["look"] in looks.ALL_LOOKS  # the reader reads any video
    # the unguided evaluation takes the world from training.json and scores world 2's prompt set
    from pipelines.evaluation.micro_model import main as evaluate_main

    threads = torch.get_num_threads()
    try:
        assert evaluate_main(["--model", str(out), "--steps", "1", "--seeds", "1", "--seen", "2", "--threads", "1",
                              "--json", str(tmp_path / "eval.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["world"] == 2 and set(res["summary"]) == {"seen", "held-out", "partial"}
    assert res["summary"]["held-out"]["videos"] == len(world.HELD_OUT)
    # the text tower with the auxiliary heads (world 2's background head: the look's geometry)
    tr = Trainer(out, work, size="tiny", quiet=True, world_version=2, train_text=True, text_aux_weight=1.0,
                 text_aux_pretrain=2, init_unet=work / "unet_joint")
    losses = tr.run("joint", 2)
    assert len(losses) == 2 and np.isfinite(losses).all()
    rows = [json.loads(r) for r in (work / "text_aux_pretrain" / "log.jsonl").read_text().splitlines()]
    assert "acc_background" in rows[-1]
    # a world-1 tokenizer folder cannot be reused for world 2
    w1 = Trainer(tmp_path / "w1", tmp_path / "w1work", size="tiny", quiet=True)
    w1.tokenizer()
    with pytest.raises(ValueError, match="built for another vocabulary"):
        Trainer(tmp_path / "w1", tmp_path / "w1work", size="tiny", quiet=True, world_version=2).tokenizer()


def test_world2_aux_heads_and_harivo_micro_data(tmp_path):
    from pipelines.training.data import MicroClips, open_dataset
    from pipelines.training.micro_stages import AUX_GEOMETRIES, aux_label

    lk = looks.Look.make("stripes", ("navy", "beige"), 135, "wide")
    assert AUX_GEOMETRIES[aux_label({"background": lk}, "background", 2)] == "stripes-135-wide"
    ds = open_dataset("micro", None, 8, 32, micro_world=2)
    x, cap = ds[3]
    assert x.shape == (8, 3, 32, 32) and float(x.min()) >= -1 and world.parse_caption2(cap) is not None
    assert ds[3][1] == cap and torch.equal(ds[3][0], x)  # item i is always the same clip
    assert isinstance(MicroClips()[0][1], str) and world.parse_caption(MicroClips()[0][1])
    with pytest.raises(ValueError, match="world 2 draws its looks"):
        MicroClips(backgrounds=["gray"], world_version=2)
    with pytest.raises(ValueError, match="needs world 2"):
        MicroClips(dropout=0.2)


def test_caption_cache_keeps_a_batch_whole_when_it_starts_again():
    """Past its limit the cache starts again; the batch that overflowed it still gets every caption's states (a
    cached caption of that batch once went with the rest: KeyError in world 2's image-UNet stage)."""
    import torch

    from pipelines.training.micro_stages import CaptionCache

    calls = []

    def encode(caps):
        calls.append(list(caps))
        return torch.stack([torch.full((2,), float(len(c))) for c in caps])

    cache = CaptionCache(encode, limit=3)
    assert cache(["ab", "abc"]).shape == (2, 2)
    out = cache(["ab", "abcd", "abcde"])  # 2 cached + 2 new > 3: starts again, "ab" encoded anew
    assert out[:, 0].tolist() == [2.0, 4.0, 5.0]
    assert calls[-1] == ["ab", "abcd", "abcde"]
    cache(["ab", "ab"])
    assert len(calls) == 2  # cached: no new encode
