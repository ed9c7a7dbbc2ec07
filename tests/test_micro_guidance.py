"""Guidance on the trained micro preset: rewards rise over unguided sampling at the same seeds, endpoints pin.

Skipped only when the micro weights are absent (they are committed in assets/micro/).
"""
import numpy as np
import pytest
import torch

from pipelines.guidance import make_guidance
from pipelines.micro import MICRO_DIR, world
from pipelines.tasks import TaskInputs, build_task

pytestmark = pytest.mark.skipif(not (MICRO_DIR / "model_index.json").exists(), reason="micro weights not present")
STEPS = 12


@pytest.fixture(scope="module")
def micro():
    from pipelines.presets import load_preset

    return load_preset("micro", device="cpu")


def _final(preset, prompt, setup, method, seed, **params):
    params = {**preset.guidance_defaults(method, setup.task), **params}  # the app's per-task defaults
    events = list(preset.pipe.stream(prompt, num_frames=8, num_inference_steps=STEPS, eta=1.0,
                                     generator=torch.Generator().manual_seed(seed), reward=setup.reward,
                                     hooks=setup.hooks, guidance=make_guidance(method, **params), preview_every=0))
    return events[-1]


@pytest.mark.parametrize("method", ["titan", "free2guide"])
def test_text_guidance_raises_clip_alignment_on_a_held_out_prompt(micro, method):
    colour, shape, motion = world.HELD_OUT[1]  # one with room to improve (unguided CLIP score ≈ 0.55)
    prompt = world.caption(colour, shape, motion, "gray")
    setup = build_task(micro, "t2v", TaskInputs(prompt=prompt), 8, 32, 32)
    gains = [(_final(micro, prompt, setup, method, s).reward - _final(micro, prompt, setup, "none", s).reward)
             for s in (0, 1)]
    assert sum(gains) > 0 and max(gains) > 0, gains


@pytest.mark.parametrize("method", ["mpgd", "titan"])
def test_style_guidance_moves_toward_the_reference(micro, method):
    prompt = "a red circle moving up on a black background"
    ref = torch.from_numpy(np.repeat(world.background_image("checkered")[None], 3, 0)).float()
    setup = build_task(micro, "style", TaskInputs(prompt=prompt, style_image=ref), 8, 32, 32)
    for seed in (0, 1):
        assert _final(micro, prompt, setup, method, seed).reward > _final(micro, prompt, setup, "none", seed).reward


def test_replacement_reproduces_the_key_frames(micro):
    clip, _ = world.render_clip("green", "square", "moving left to right", "gray", seed=3)
    prompt = world.caption("green", "square", "moving left to right", "gray")
    setup = build_task(micro, "interpolate", TaskInputs(prompt=prompt, first_frame=clip[0], last_frame=clip[-1],
                                                         interpolation_mode="replacement"), 8, 32, 32)
    video = _final(micro, prompt, setup, "none", 0).frames
    err = ((video[[0, -1]] - clip[[0, -1]]) ** 2).mean().item()
    assert err < 0.01, err  # the micro VAE reconstructs the world (MSE ≈ 0.002)


def test_the_interpolation_tabs_example_moves_monotonically_from_key_to_key(micro):
    """The app's Frame interpolation example (its default method and mode) on the micro preset: the object's
    centroid moves forward along the key-to-key axis in every frame, and the end frames sit on the keys."""
    from pipelines.studio.examples import example_rows as _examples_for
    from pipelines.evaluation.readers import centroids as _centroids
    from pipelines.presets import load_preset
    from pipelines.request import DEFAULT_INTERPOLATION_MODE, Generation, GenerationRequest, validate
    from pipelines.presets import task_default_method

    preset = load_preset("micro")
    prompt, first, last, method, mg, seed = _examples_for("interpolate")[0]
    assert method == task_default_method("interpolate")[0]
    keys = _centroids(np.stack([np.asarray(world_image(p)) for p in (first, last)]))
    g = Generation(validate(GenerationRequest(task="interpolate", prompt=prompt, first_frame=first, last_frame=last,
                                              method=method, mg_scale=mg, seed=seed,
                                              interpolation_mode=DEFAULT_INTERPOLATION_MODE),
                            preset), preset, preview_every=0)
    for _ in g:
        pass
    path = np.asarray(_centroids(g.final_event.frames), np.float64)
    axis = np.subtract(keys[1], keys[0]) / np.linalg.norm(np.subtract(keys[1], keys[0]))
    proj = (path - np.asarray(keys[0])) @ axis
    assert np.all(np.diff(proj) > 0), proj
    assert np.linalg.norm(path[0] - keys[0]) < 3 and np.linalg.norm(path[-1] - keys[1]) < 3


def world_image(path):
    from PIL import Image

    return (np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0).transpose(2, 0, 1)
