"""Every model a generation uses sits on the pipeline's device and dtype (issue 16).

The tiny preset is put in float64: every reward (CLIP text and style, ImageBind, the interpolation and AV-sync
references) must follow it, and every tensor that enters a reward's model must be float64 on the pipeline's device.
A reward built without the pipeline's placement (float32 CLIP, the old default) fails these checks.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewards.base import Reward

EX = Path(__file__).resolve().parents[1] / "assets" / "examples"
DTYPE = torch.float64


def _float64_tiny_preset():
    from pipelines.presets import _tiny

    preset = _tiny(torch.device("cpu"), "float64 placement test")  # fresh models (not the cached tiny preset)
    preset.pipe.to(DTYPE)
    return preset


def _modules(obj, seen=None):
    from rewards.clip import ClipModel

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        yield obj
    elif isinstance(obj, ClipModel):
        yield obj.model
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _modules(v, seen)
    elif isinstance(obj, Reward):
        for v in vars(obj).values():
            yield from _modules(v, seen)


def _watch_inputs(reward, device, dtype):
    """Forward pre-hooks on every sub-module of the reward's models: record any floating input of another
    device or dtype. Returns (problems, handles, calls)."""
    problems, handles, calls = [], [], []

    def hook(mod, args, kwargs):
        calls.append(type(mod).__name__)
        for t in list(args) + list(kwargs.values()):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and (t.dtype != dtype or t.device != device):
                problems.append((type(mod).__name__, t.dtype, t.device))

    for top in _modules(reward):
        for m in top.modules():
            handles.append(m.register_forward_pre_hook(hook, with_kwargs=True))
    return problems, handles, calls


CASES = {
    "t2v": dict(),
    "style": dict(style_image=str(EX / "style_stripes.png")),
    "audio-avsync": dict(audio=str(EX / "impacts.wav")),
    "audio-imagebind": dict(audio=str(EX / "impacts.wav")),
    "interpolate": dict(first_frame=str(EX / "first_frame.png"), last_frame=str(EX / "last_frame.png")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rewards_follow_the_pipelines_device_and_dtype(case, monkeypatch, tmp_path):
    from pipelines.request import GenerationRequest, finalize, run, validate

    preset = _float64_tiny_preset()
    device, dtype = preset.reward_placement()
    assert dtype == DTYPE and device == torch.device("cpu")
    if case == "audio-imagebind":
        import rewards.imagebind as ib

        tiny = dict(out_embed_dim=8, vision_embed_dim=16, vision_num_blocks=1, vision_num_heads=2, image_size=28,
                    audio_embed_dim=16, audio_num_blocks=1, audio_num_heads=2)
        torch.manual_seed(0)
        model = ib.ImageBindModel(**tiny).eval()
        # the loader honours the placement it is given, as the real one does; build_task must give it
        monkeypatch.setattr(ib, "cached_imagebind",
                            lambda path=None, download=False, device=None, dtype=None: model.to(device=device, dtype=dtype))
        preset.audio_reward = "imagebind"
    task = case.split("-")[0]
    req = GenerationRequest(task=task, prompt="a red circle moving left", method="freedom", steps=2, frames=4,
                            size=16, **CASES[case])
    prepared = validate(req, preset)
    reward = prepared.setup.reward
    assert type(reward).__name__ == {"t2v": "TextAlignmentReward", "style": "StyleReward",
                                     "audio-avsync": "AVSyncReward", "audio-imagebind": "ImageBindReward",
                                     "interpolate": "InterpolationReward"}[case]
    tensors = reward.placement()
    wrong = [(n, t.dtype, t.device) for n, t in tensors
             if t.is_floating_point() and (t.dtype != dtype or t.device != device)]
    assert not wrong, wrong
    problems, handles, calls = _watch_inputs(reward, device, dtype)
    fed = []
    inner = type(reward).__call__

    def spy(self, frames, *a, **kw):
        fed.append((frames.device, frames.dtype))
        return inner(self, frames, *a, **kw)

    monkeypatch.setattr(type(reward), "__call__", spy)
    try:
        gen = run(prepared, preset)
        for _ in gen:
            pass
        report = finalize(gen, tmp_path / "v.mp4", tmp_path / "r.json")
    finally:
        for h in handles:
            h.remove()
    assert fed, "the reward was never called"
    assert all(d == device for d, _ in fed), fed
    assert not problems, problems[:5]
    if any(t.requires_grad is False and isinstance(t, torch.nn.Parameter) for _, t in tensors):
        assert calls, "the reward's model never ran"
    assert report["final_reward"] is not None and report["device"] == "cpu"


def test_every_reward_class_moves_all_its_tensors():
    """Reward.to moves models, references and member rewards; an ensemble's members follow it."""
    from rewards.ensemble import EnsembleReward
    from rewards.interpolation import InterpolationReward
    from rewards.style import StyleReward
    from rewards.testing import tiny_clip
    from rewards.text import TextAlignmentReward

    clip = tiny_clip(seed=5)
    ens = EnsembleReward([TextAlignmentReward("a red circle", clip=clip),
                          InterpolationReward(torch.rand(2, 3, 16, 16)),
                          StyleReward(torch.rand(3, 16, 16), clip=tiny_clip(seed=6))], mode="normalized")
    before = {t.dtype for _, t in ens.placement() if t.is_floating_point()}
    assert before == {torch.float32}
    ens.to("cpu", DTYPE)
    after = {(n.split(".")[0], t.dtype) for n, t in ens.placement() if t.is_floating_point()}
    assert {d for _, d in after} == {DTYPE}, after
    r = ens(torch.rand(2, 3, 16, 16, dtype=DTYPE), [0, 1], 2)
    assert r.dtype == DTYPE and torch.isfinite(r).all()


def test_lvlm_local_judge_goes_to_the_device():
    from rewards.lvlm import LVLMJudge

    judge = LVLMJudge("a red circle", backend="transformers", model="some/local-model")
    judge.to("cpu", DTYPE)
    assert judge.device == torch.device("cpu") and judge.placement() == []

    moved = []

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))

        def to(self, *a, **kw):
            moved.append((a, kw))
            return super().to(*a, **kw)

    judge._hf = (None, Fake())
    judge.to("cpu", DTYPE)
    assert moved == [((torch.device("cpu"),), {})]  # the device only: the judge keeps its own dtype
    assert [t.dtype for _, t in judge.placement()] == [torch.bfloat16]
