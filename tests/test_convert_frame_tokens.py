"""scripts/convert_micro_frame_tokens.py, the start of micro's paper-token stage: a retired FrameTokenGenerator folder is refitted
into the paper's HarivoFrameTokens, which loads as the one generator class and gets closer the longer it fits."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("convert_micro_frame_tokens",
                                                  REPO / "scripts" / "convert_micro_frame_tokens.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _old_folder(script, tmp_path):
    from safetensors.torch import save_file

    cfg = dict(dim=128, num_tokens=3, hidden=32, time_freqs=6, max_frames=32, text_length=24, token_features=4)
    torch.manual_seed(0)
    old = script._OldFrameTokenGenerator(**cfg)
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"_class_name": "FrameTokenGenerator", **cfg}))
    return folder


def test_refit_loads_as_the_paper_generator_and_improves_with_steps(script, tmp_path):
    from pipelines.frame_tokens import HarivoFrameTokens, load_frame_tokens

    old = _old_folder(script, tmp_path)
    errors = {}
    for steps in (1, 150):
        out, report = tmp_path / f"new{steps}", tmp_path / f"fit{steps}.json"
        assert script.main(["--old-folder", str(old), "--out", str(out), "--steps", str(steps), "--mixes", "8",
                            "--frames", "8", "--max-frames", "8", "--batch", "32", "--report", str(report),
                            "--threads", str(torch.get_num_threads())]) == 0  # leaves the session's threads as they are
        errors[steps] = json.loads(report.read_text())["relative_error"]["8"]["captions"]
        gen = load_frame_tokens(out)
        assert isinstance(gen, HarivoFrameTokens) and gen.config.text_length == 24 and gen.config.num_tokens == 3
    assert errors[150] < 0.8 * errors[1]


def test_refuses_a_folder_that_is_not_the_old_generator(script, tmp_path):
    folder = _old_folder(script, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "_class_name": "HarivoFrameTokens"}))
    with pytest.raises(ValueError, match="expected an old FrameTokenGenerator"):
        script.main(["--old-folder", str(folder), "--out", str(tmp_path / "x"), "--threads", str(torch.get_num_threads())])
