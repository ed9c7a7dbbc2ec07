"""`python -m pipelines evaluate` on a real preset's path (`pipelines/evaluation/real.py`), run on the tiny preset with
tiny random metric CLIPs: rows measured by `rewards.metrics.real_metrics`, the injected metric models, resume,
summary, FVD per suite and method, and the refusals. Nothing downloads."""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from pipelines.evaluation import cli, grid
from pipelines.evaluation import real as er

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SPECS = ["none", "titan[step_size=0.5]"]
#: The fields of a row, as the micro suites write them.
ROW_FIELDS = {"max_shift_ratio", "key", "suite", "case", "method", "base_method", "seed", "eta", "steps", "cfg", "frames", "mg_scale",
              "params", "metrics", "final_reward", "seconds", "peak_memory_bytes", "device", "preset"}


def _rows(out):
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def metric_clip():
    from rewards.testing import tiny_clip

    return tiny_clip(seed=3)


def test_tiny_run_writes_real_metric_rows_resumes_and_summarizes(tmp_path, monkeypatch, metric_clip, capsys):
    from rewards.metrics import MetricsConfig, clip_sim, frame_consistency
    from rewards.testing import tiny_clip

    from pipelines.presets import load_preset

    out = tmp_path / "run"
    seen = {}
    measure = er.measure

    def spy(cell, frames, gen, cfg, folder):  # keep the frames the metrics were computed on
        seen[cell.key] = torch.as_tensor(frames).detach().float().clamp(0, 1).cpu()
        return measure(cell, frames, gen, cfg, folder)

    monkeypatch.setattr(er, "measure", spy)
    cfg = MetricsConfig(clip=metric_clip, style_clip=tiny_clip(seed=4))
    grid.evaluate(["t2v"], SPECS, [0], out, preset_name="tiny", device="cpu", max_cases=1, threads=1,
                metrics_config=cfg, log=lambda s: None)
    rows = _rows(out)
    assert len(rows) == 2 and {r["method"] for r in rows} == set(SPECS)  # 1 case × 2 methods × 1 seed
    preset = load_preset("tiny", device="cpu")
    for r in rows:
        assert set(r) == ROW_FIELDS and r["suite"] == "t2v" and r["preset"] == "tiny" and r["case"] == "p0"
        m = r["metrics"]
        for k in ("clip_sim", "frame_consistency"):
            assert isinstance(m[k], float) and math.isfinite(m[k])
        assert set(m["skipped"]) == {"style_score", "av_align", "imagebind", "fvd"}
        # the injected metric CLIP measured them, not the guiding one
        frames = seen[r["key"]]
        assert m["clip_sim"] == pytest.approx(clip_sim(frames, er.T2V_PROMPTS[0], clip=metric_clip), abs=1e-6)
        assert m["frame_consistency"] == pytest.approx(frame_consistency(frames, clip=metric_clip), abs=1e-6)
        assert abs(clip_sim(frames, er.T2V_PROMPTS[0], clip=preset.clip) - m["clip_sim"]) > 1e-3
        # the video is kept (for FVD and for looking at)
        video = er.read_video(out / "videos" / f"{r['key']}.mp4")
        assert video.shape == (8, 3, 16, 16)
    assert not torch.allclose(seen[rows[0]["key"]], seen[rows[1]["key"]])  # guidance changed the video
    md = (out / "summary.md").read_text()
    assert "### t2v (clip_sim: higher is better)" in md
    assert "| none |" in md and "| titan[step_size=0.5] |" in md and "frame_consistency" in md
    assert "FVD: not computed: no --reference-videos" in md
    # resume: nothing runs again
    monkeypatch.setattr(grid, "run_cell", lambda *a, **k: pytest.fail("a finished cell ran again"))
    grid.evaluate(["t2v"], SPECS, [0], out, preset_name="tiny", device="cpu", max_cases=1, metrics_config=cfg,
                log=print)
    assert len(_rows(out)) == 2 and "2 done before, 0 for process 0/1" in capsys.readouterr().out
    # --summarize rebuilds the tables from the rows
    (out / "summary.md").unlink()
    assert cli.main(["--suite", "t2v", "--summarize", "--out", str(out)]) == 0
    assert "| titan[step_size=0.5] |" in (out / "summary.md").read_text()


def test_style_and_audio_rows_carry_their_metrics(tmp_path):
    pytest.importorskip("cv2")
    out = tmp_path / "run"
    assert cli.main(["--preset", "tiny", "--device", "cpu", "--suite", "style,audio,interpolate", "--methods", "none",
                    "--seeds", "1", "--cases", "1", "--threads", "1", "--out", str(out)]) == 0
    rows = {r["suite"]: r for r in _rows(out)}
    assert set(rows) == {"style", "audio"}  # interpolate is skipped for a real preset
    assert math.isfinite(rows["style"]["metrics"]["style_score"]) and rows["style"]["metrics"]["style_score"] > 0
    av = rows["audio"]["metrics"]["av_align"]
    assert 0.0 <= av <= 1.0 and "imagebind" in rows["audio"]["metrics"]["skipped"]
    md = (out / "summary.md").read_text()
    assert "### style (style_score: lower is better)" in md and "### audio (av_align: higher is better)" in md


def test_fvd_per_method_in_the_summary(tmp_path):
    """2 seeds of one method: FVD of the generated set against itself is 0, against other videos it is not."""
    from rewards.i3d import InceptionI3d

    from pipelines.media import write_mp4

    out = tmp_path / "run"
    assert cli.main(["--preset", "tiny", "--device", "cpu", "--suite", "t2v", "--methods", "none", "--seeds", "2",
                    "--cases", "1", "--threads", "1", "--out", str(out)]) == 0
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    for mod in model.modules():  # He init: activations keep their scale through the random layers
        if isinstance(mod, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    i3d = tmp_path / "i3d.pt"
    torch.save(model.state_dict(), i3d)
    same, other = tmp_path / "same", tmp_path / "other"
    shutil.copytree(out / "videos", same)
    other.mkdir()
    g = torch.Generator().manual_seed(0)
    for k in range(3):
        write_mp4(other / f"r{k}.mp4", torch.rand(10, 3, 24, 32, generator=g), 4)

    def fvd(refs):
        args = ["--suite", "t2v", "--summarize", "--out", str(out), "--i3d", str(i3d), "--i3d-size", "32",
                "--reference-videos", str(refs), "--device", "cpu"]
        assert cli.main(args) == 0
        head, row = (out / "summary.csv").read_text().splitlines()[:2]
        return float(row.split(",")[head.split(",").index("fvd")]), (out / "summary.md").read_text()

    value, md = fvd(same)
    assert value == pytest.approx(0.0, abs=1e-3) and "FVD: I3D logits, 2 reference videos" in md
    far, _ = fvd(other)
    assert far > 0.1  # 2.86 here: noise clips are far from the generated ones


def test_refusals_name_the_problem(tmp_path, capsys, metric_clip):
    from rewards.metrics import MetricsConfig

    from pipelines.presets import load_preset

    base = ["--preset", "tiny", "--device", "cpu", "--methods", "none", "--seeds", "1", "--out", str(tmp_path)]
    assert cli.main(base + ["--suite", "t2v-hard"]) == 2
    err = capsys.readouterr().err
    assert "'t2v-hard' is not a real-preset suite" in err and "t2v, style, audio" in err
    assert cli.main(base + ["--suite", "interpolate"]) == 2
    err = capsys.readouterr().err
    assert "interpolate' skipped for real presets" in err and "nothing left to run" in err
    assert cli.main(base + ["--suite", "t2v", "--i3d", str(tmp_path / "missing.pt")]) == 2
    assert "--i3d: file not found" in capsys.readouterr().err
    assert cli.main(base + ["--suite", "t2v", "--reference-videos", str(tmp_path / "nowhere")]) == 2
    assert "--reference-videos: not a folder" in capsys.readouterr().err
    guiding = load_preset("tiny", device="cpu").clip
    with pytest.raises(ValueError, match="must differ from the CLIP that guides"):
        grid.evaluate(["t2v"], ["none"], [0], tmp_path, preset_name="tiny", device="cpu",
                    metrics_config=MetricsConfig(clip=guiding, style_clip=metric_clip), log=lambda s: None)
    # the micro preset still refuses a real suite, as before
    assert cli.main(["--suite", "t2v", "--out", str(tmp_path)]) == 2
    assert "--suite" in capsys.readouterr().err
    assert not (tmp_path / "rows.jsonl").exists()


def test_built_in_references_and_user_files(tmp_path):
    from PIL import Image

    from rewards.metrics import audio_onset_times

    refs = [np.asarray(er.style_reference(p), np.float32) for p in er.STYLE_PATTERNS]
    assert all(r.shape == (256, 256, 3) and r.std() > 20 for r in refs)
    assert all(np.abs(a - b).mean() > 20 for i, a in enumerate(refs) for b in refs[i + 1:])
    # synthesised impacts: onsets where they were put (within one frame at 8 fps)
    for case in er.real_cases("audio", 16, 8):
        wave, sr = case.inputs["audio"]
        assert len(wave) == 2 * sr
        onsets = audio_onset_times(wave, sr)
        assert len(onsets) == len(case.target["impacts_s"])
        assert np.abs(np.sort(onsets) - np.asarray(case.target["impacts_s"])).max() <= 1 / 8
    # a user's file replaces the built-in inputs; its content is part of the case id (a changed file is new work)
    img = tmp_path / "ref.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(img)
    a = er.real_cases("style", 8, 4, style_image=img)
    assert len(a) == len(er.STYLE_CASES) and a[0].inputs["style_image"].size == (40, 40)
    Image.fromarray(np.full((40, 40, 3), 10, np.uint8)).save(img)
    assert er.real_cases("style", 8, 4, style_image=img)[0].id != a[0].id
    with pytest.raises(ValueError, match="file not found"):
        er.real_cases("audio", 8, 4, audio=tmp_path / "none.wav")
