"""FVD: the standard TorchScript I3D detector (StyleGAN-V `i3d_torchscript.pt` calling convention) loads beside the
state-dict layout; sets too small for a 400-dimensional covariance are refused or marked unreliable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rewards.base import RewardError


class _TinyDetector(torch.nn.Module):
    """The detector's interface: detector(x, rescale, resize, return_features) -> (b, 400); x (b, 3, T, H, W)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        if rescale:  # the detector's own [0, 255] -> [-1, 1] (we pass [-1, 1] already: it must be off)
            x = x / 127.5 - 1
        if resize:
            x = x * 0 + 7.0  # a marker: the test fails if the wrapper lets the detector resize
        logits = self.proj(x.mean(dim=(2, 3, 4)))
        return logits if return_features else torch.softmax(logits, -1)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    torch.manual_seed(0)
    det = _TinyDetector().eval()
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(det).save(str(path))
    return det, path


def test_torchscript_detector_loads_and_gives_its_logits(scripted):
    from rewards.i3d import TorchScriptI3D, i3d_features, i3d_preprocess, load_i3d

    det, path = scripted
    model = load_i3d(path)
    assert isinstance(model, TorchScriptI3D)
    videos = torch.rand(3, 4, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    feats = i3d_features(model, videos, size=32)
    assert feats.shape == (3, 400)
    x = i3d_preprocess(videos, 32)  # [-1, 1], resized by us
    with torch.no_grad():
        want = det(x, rescale=False, resize=False, return_features=True).double().numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(RewardError, match="logits only"):
        model(x, features="pool")


def test_state_dict_layout_still_loads(tmp_path):
    from rewards.i3d import InceptionI3d, load_i3d

    torch.manual_seed(0)
    path = tmp_path / "rgb.pt"
    torch.save(InceptionI3d(400).state_dict(), path)
    assert isinstance(load_i3d(path), InceptionI3d)


def test_fvd_refuses_or_marks_sets_too_small_for_the_covariance():
    from rewards.i3d import fvd_check, fvd_from_features

    rng = np.random.default_rng(0)
    small_a, small_b = rng.normal(size=(8, 400)), rng.normal(size=(8, 400))
    ok, note = fvd_check(8, 8, 400)
    assert not ok and "unreliable" in note and "400" in note
    with pytest.raises(RewardError, match="unreliable"):
        fvd_from_features(small_a, small_b, strict=True)
    assert np.isfinite(fvd_from_features(small_a, small_b))  # not strict: a number, marked by the caller
    big_a, big_b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    assert fvd_check(30, 30, 8)[0] and np.isfinite(fvd_from_features(big_a, big_b, strict=True))
    assert not fvd_check(401, 400, 400)[0] and fvd_check(401, 401, 400)[0]


def test_real_metrics_marks_a_small_fvd_set(scripted):
    from rewards.metrics import MetricsConfig, real_metrics
    from rewards.testing import tiny_clip

    _, path = scripted
    g = torch.Generator().manual_seed(2)
    gen, refs = torch.rand(3, 4, 3, 32, 32, generator=g), torch.rand(3, 4, 3, 32, 32, generator=g)
    out = real_metrics(gen, reference_videos=refs,
                       config=MetricsConfig(clip=tiny_clip(seed=1), style_clip=tiny_clip(seed=2), guiding_clip=None,
                                            i3d=str(path), i3d_size=32, motion="diff"))
    assert np.isfinite(out["fvd"]) and out["fvd_reliable"] is False and "unreliable" in out["fvd_note"]


@pytest.fixture()
def fvd_run(tmp_path):
    """A finished real run (3 t2v videos of method none in out/videos) and a folder of 3 reference videos."""
    from pipelines.media import write_mp4

    out, refs = tmp_path / "run", tmp_path / "refs"
    (out / "videos").mkdir(parents=True)
    refs.mkdir()
    g = torch.Generator().manual_seed(3)
    rows = []
    for k in range(3):
        write_mp4(out / "videos" / f"none-{k}.mp4", torch.rand(6, 3, 16, 16, generator=g), 4)
        write_mp4(refs / f"r{k}.mp4", torch.rand(6, 3, 16, 24, generator=g), 4)
        rows.append({"suite": "t2v", "method": "none", "key": f"none-{k}"})
    return out, refs, rows


@pytest.fixture()
def strict_calls(monkeypatch):
    import rewards.i3d as ri3d

    calls, orig = [], ri3d.fvd_from_features
    monkeypatch.setattr(ri3d, "fvd_from_features",
                        lambda a, b, strict=False: calls.append(strict) or orig(a, b, strict=strict))
    return calls


def _summary():
    return [{"suite": "t2v", "method": "none", "primary": "clip_sim"}]


def test_evaluate_fvd_with_weights_from_a_file_is_strict(fvd_run, scripted, strict_calls):
    """The standard set-up (a weights file, 224², 400 logits): strict=True, so 3 videos per set are refused."""
    from pipelines.evaluation.real import add_fvd

    out, refs, rows = fvd_run
    summary = _summary()
    notes = add_fvd(summary, rows, out, refs, i3d=str(scripted[1]), i3d_size=224, device="cpu")
    assert strict_calls == [True]
    assert "fvd" not in summary[0]
    assert summary[0]["fvd_check"].startswith("refused: unreliable: 3 videos")
    assert any("not computed" in n and "unreliable" in n for n in notes["t2v"])


@pytest.mark.parametrize("how", ["object", "size"])
def test_evaluate_fvd_off_the_standard_set_up_is_marked(fvd_run, scripted, strict_calls, how):
    """A random/test I3D passed as a model, or another input size: a value, marked with why it is not standard."""
    from rewards.i3d import TorchScriptI3D

    from pipelines.evaluation.real import add_fvd

    out, refs, rows = fvd_run
    summary = _summary()
    i3d = TorchScriptI3D(scripted[0]) if how == "object" else str(scripted[1])
    size = 224 if how == "object" else 32
    notes = add_fvd(summary, rows, out, refs, i3d=i3d, i3d_size=size, device="cpu")
    assert strict_calls == [False]
    assert np.isfinite(summary[0]["fvd"])
    check = summary[0]["fvd_check"]
    assert check.startswith("not the standard FVD: ")
    assert ("TorchScriptI3D object" in check) == (how == "object") and ("32² I3D input" in check) == (how == "size")
    assert "unreliable: 3 videos" in check  # and the set is too small for the covariance besides
    assert any(check in n for n in notes["t2v"])
