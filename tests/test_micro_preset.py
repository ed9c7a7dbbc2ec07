"""The shipped micro preset (assets/micro): loads offline through diffusers, generates the prompted colour,
and a missing or corrupt weights folder gives an error naming the folder."""
import json
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from pipelines.micro import MICRO_DIR, check_micro_dir, load_micro_clip  # noqa: E402
from pipelines.micro.detector import detect  # noqa: E402
from pipelines.micro.loading import load_micro_pipeline  # noqa: E402

have_weights = (MICRO_DIR / "model_index.json").is_file() and (MICRO_DIR / "unet").is_dir()
needs_weights = pytest.mark.skipif(not have_weights, reason="assets/micro not trained yet")


@pytest.fixture(scope="module")
def pipe():
    from diffusers import AnimateDiffPipeline

    torch.set_num_threads(1)
    p = AnimateDiffPipeline.from_pretrained(str(MICRO_DIR))
    p.set_progress_bar_config(disable=True)
    return p


@needs_weights
def test_assets_small_and_complete():
    total = sum(f.stat().st_size for f in MICRO_DIR.rglob("*") if f.is_file())
    assert total < 30 * 2**20, total
    assert check_micro_dir(MICRO_DIR) == MICRO_DIR
    index = json.loads((MICRO_DIR / "model_index.json").read_text())
    assert index["motion_adapter"] == [None, None]
    vae_cfg = json.loads((MICRO_DIR / "vae" / "config.json").read_text())
    assert len(vae_cfg["block_out_channels"]) == 3


@needs_weights
def test_loads_offline_and_generates_prompted_colour(pipe):
    from diffusers import UNetMotionModel

    assert isinstance(pipe.unet, UNetMotionModel)
    assert pipe.unet.dtype == torch.float32
    video = pipe("a red square moving left to right on a black background", num_frames=8, num_inference_steps=15,
                 guidance_scale=7.5, generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert tuple(video.shape) == (1, 8, 3, 32, 32)
    d = detect(video[0])
    assert d["colour"] == "red", d
    assert d["background"] == "black", d


@needs_weights
def test_generates_prompted_motion():
    """The shipped model follows the motion words (each motion, 2 seeds; the evaluation set gets 84/84)."""
    from pipelines import GuidedAnimateDiffPipeline

    from pipelines.micro import world

    torch.set_num_threads(1)
    p = load_micro_pipeline(MICRO_DIR)
    assert isinstance(p, GuidedAnimateDiffPipeline) and p.frame_tokens is not None
    assert p.scheduler.config.prediction_type == "v_prediction"
    p.set_progress_bar_config(disable=True)
    prompts = [world.caption("yellow", "circle", m, "gray") for m in world.MOTIONS]
    gens = [torch.Generator().manual_seed(s) for _ in prompts for s in (0, 1)]
    video = p([q for q in prompts for _ in (0, 1)], num_frames=8, num_inference_steps=20, guidance_scale=7.5,
              generator=gens, output_type="pt").frames
    got = [detect(v)["motion"] for v in video]
    want = [m for m in world.MOTIONS for _ in (0, 1)]
    assert sum(g == w for g, w in zip(got, want)) >= 9, list(zip(want, got))


@needs_weights
def test_subclass_loads_same_folder():
    from pipelines import GuidedAnimateDiffPipeline as cls

    p = load_micro_pipeline(MICRO_DIR, pipeline_cls=cls)
    assert isinstance(p, cls)


@needs_weights
def test_micro_clip_ranks_matching_caption():
    from pipelines.training.micro_models import clip_normalize
    from pipelines.micro.world import render_clip

    model, tok = load_micro_clip()
    assert model.config.vision_config.image_size == 32 and model.config.vision_config.num_hidden_layers >= 3
    v, _ = render_clip("blue", "circle", "moving up", "gray", seed=0)
    caps = [f"a {c} circle moving up on a gray background" for c in ("red", "green", "blue", "yellow", "cyan", "white")]
    ids = tok(caps, padding=True, return_tensors="pt")
    with torch.no_grad():
        img = model.get_image_features(pixel_values=clip_normalize(v[:1]))
        txt = model.get_text_features(**ids)
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    sims = torch.nn.functional.cosine_similarity(img, txt)
    assert int(sims.argmax()) == 2, sims


def test_missing_folder_error_names_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        check_micro_dir(missing)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_micro_clip(missing)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_micro_pipeline(missing)


@needs_weights
def test_corrupt_weights_error_names_folder(tmp_path):
    bad = tmp_path / "corrupt_micro"
    shutil.copytree(MICRO_DIR, bad)
    # truncated weights file
    w = bad / "clip" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt_micro"):
        load_micro_clip(bad)
    u = next((bad / "unet").glob("*.safetensors"))
    u.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt_micro"):
        load_micro_pipeline(bad)
    (bad / "model_index.json").write_text("{ broken")
    with pytest.raises(ValueError, match="corrupt_micro"):
        check_micro_dir(bad)
    (bad / "vae" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="corrupt_micro"):
        check_micro_dir(bad)
