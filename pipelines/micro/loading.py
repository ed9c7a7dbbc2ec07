"""Loaders for the micro weights with clear errors naming the folder."""
from __future__ import annotations

import json
from pathlib import Path

#: Where the trained micro weights live (diffusers layout, loadable by `AnimateDiffPipeline.from_pretrained`).
MICRO_DIR = Path(__file__).resolve().parents[2] / "assets" / "micro"
REQUIRED = {
    "": ["model_index.json"],
    "vae": ["config.json"],
    "unet": ["config.json"],
    "text_encoder": ["config.json"],
    "tokenizer": ["vocab.json", "merges.txt"],
    "scheduler": ["scheduler_config.json"],
}
CLIP_REQUIRED = ["config.json", "vocab.json", "merges.txt"]
_WEIGHTS = ("model.safetensors", "diffusion_pytorch_model.safetensors", "pytorch_model.bin", "diffusion_pytorch_model.bin")


def check_micro_dir(folder: str | Path | None = None, clip: bool = False) -> Path:
    """Raise FileNotFoundError / ValueError naming `folder` if the micro weights are missing or unreadable."""
    folder = Path(folder) if folder is not None else MICRO_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"micro weights folder {folder} does not exist (train them: python -m pipelines train-micro)")
    checks = {"clip": CLIP_REQUIRED} if clip else REQUIRED
    for sub, names in checks.items():
        d = folder / sub if sub else folder
        for name in names:
            if name in ("vocab.json", "merges.txt") and (d / "tokenizer.json").is_file():
                continue  # a fast-tokenizer file is enough
            if not (d / name).is_file():
                raise FileNotFoundError(f"micro weights folder {folder}: missing {d / name}")
        if sub in ("vae", "unet", "text_encoder", "clip") and not any((d / w).is_file() for w in _WEIGHTS):
            raise FileNotFoundError(f"micro weights folder {folder}: no weights file in {d}")
    for p in [folder / "model_index.json"] if not clip else [folder / "clip" / "config.json"]:
        try:
            cfg = json.loads(p.read_text())
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"micro weights folder {folder}: {p.name} is corrupt ({e})") from e
    if not clip:
        from ..frame_tokens import refuse_retired

        refuse_retired((cfg.get("frame_tokens") or [None, None])[-1], f"micro weights folder {folder}")
    return folder


def _wrap(folder: Path, fn):
    try:
        return fn()
    except (FileNotFoundError, ValueError) as e:
        if str(folder) in str(e):
            raise
        raise ValueError(f"micro weights folder {folder} could not be loaded: {e}") from e
    except Exception as e:  # noqa: BLE001  (safetensors / json / shape errors)
        raise ValueError(f"micro weights folder {folder} could not be loaded: {type(e).__name__}: {e}") from e


def load_micro_clip(folder: str | Path | None = None, device: str = "cpu"):
    """(CLIPModel, CLIPTokenizer) of the micro CLIP in `folder`/clip (default assets/micro/clip), fp32, eval mode."""
    folder = Path(folder) if folder is not None else MICRO_DIR
    check_micro_dir(folder, clip=True)
    from transformers import CLIPModel, CLIPTokenizer

    def load():
        model = CLIPModel.from_pretrained(str(folder / "clip"), torch_dtype="float32").to(device).eval()
        tok = CLIPTokenizer.from_pretrained(str(folder / "clip"))
        return model, tok

    return _wrap(folder, load)


def load_micro_pipeline(folder: str | Path | None = None, pipeline_cls=None, device: str = "cpu"):
    """The micro pipeline from `folder`, fp32. Default class `GuidedAnimateDiffPipeline`, which also loads the
    shipped frame-wise tokens (`diffusers.AnimateDiffPipeline` loads the folder too, without them)."""
    folder = Path(folder) if folder is not None else MICRO_DIR
    check_micro_dir(folder)
    if pipeline_cls is None:
        from ..pipeline import GuidedAnimateDiffPipeline as pipeline_cls
    import torch

    def load():
        pipe = pipeline_cls.from_pretrained(str(folder), torch_dtype=torch.float32)
        return pipe.to(device)

    return _wrap(folder, load)


def world_of(folder: str | Path | None = None) -> int:
    """Which micro world a weights folder was trained on: `training.json`'s `world` (written by the trainer's export),
    1 when absent (the shipped assets/micro and assets/micro-harivo predate world 2)."""
    folder = Path(folder) if folder is not None else MICRO_DIR
    meta = folder / "training.json"
    if not meta.is_file():
        return 1
    try:
        v = json.loads(meta.read_text()).get("world", 1)
    except (OSError, ValueError) as e:
        raise ValueError(f"micro weights folder {folder}: unreadable {meta}: {e}") from e
    if v not in (1, 2):
        raise ValueError(f"micro weights folder {folder}: {meta} names world {v!r}; known worlds are 1 and 2")
    return int(v)
