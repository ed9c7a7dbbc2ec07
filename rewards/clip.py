"""CLIP loading and differentiable preprocessing shared by the CLIP-based rewards and metrics.

`load_clip(x)` accepts a hub id (``openai/clip-vit-base-patch16`` ...), a local folder (e.g. the micro CLIP in
``assets/micro/clip/``), an already-built ``(CLIPModel, tokenizer)`` pair, or a `ClipModel` (returned as is).
Hub ids and folders are loaded once per (name, device, dtype) and cached.

All image preprocessing happens in torch so rewards stay differentiable in reverse *and* forward mode
(`torch.func.jvp`): frames in [0, 1] -> resize to the model's ``image_size`` (bicubic, ``antialias=False``,
square, no crop: generated frames are square) -> CLIP mean/std. Attention runs in the "eager" (math) form, which
has forward-mode AD rules.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from .base import ModelWrapper, RewardError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Public checkpoints used by the rewards (documented here so the UI can show them).
CLIP_B16 = "openai/clip-vit-base-patch16"
CLIP_L14 = "openai/clip-vit-large-patch14"
CLIP_B32 = "openai/clip-vit-base-patch32"
#: The micro preset's CLIP (`load_clip("micro")`).
MICRO_CLIP_DIR = Path(__file__).resolve().parents[1] / "assets" / "micro" / "clip"


def _as_tensor_output(out) -> torch.Tensor:
    # transformers >= 5 returns a ModelOutput from get_*_features; 4.x returned the tensor.
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        return out.pooler_output
    return out[0]


def clip_preprocess(frames: torch.Tensor, image_size: int, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """Frames (f, 3, H, W) in [0, 1] -> resized (bicubic, no antialias) and normalised pixel values."""
    if frames.shape[-2:] != (image_size, image_size):
        frames = F.interpolate(frames, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=False)
    m = torch.tensor(mean, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (frames - m) / s


def to_image_tensor(image, who: str = "image") -> torch.Tensor:
    """A PIL image, a numpy array (H, W, 3) uint8/float, or a tensor (3, H, W)/(1, 3, H, W) -> float (3, H, W) in [0, 1]."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        import numpy as np

        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    if not isinstance(image, torch.Tensor):
        try:
            import numpy as np

            if isinstance(image, np.ndarray):
                arr = image.astype(np.float32)
                if image.dtype == np.uint8:
                    arr = arr / 255.0
                if arr.ndim == 3 and arr.shape[-1] == 3:
                    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
                return to_image_tensor(torch.from_numpy(arr), who)
        except ImportError:  # pragma: no cover
            pass
        raise RewardError(f"{who}: expected a PIL image or a tensor (3, H, W) in [0, 1], got {type(image).__name__}")
    t = image
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise RewardError(f"{who}: expected shape (3, H, W), got {tuple(image.shape)}")
    if t.numel() == 0 or min(t.shape[1:]) == 0:
        raise RewardError(f"{who}: empty image {tuple(image.shape)}")
    if not t.is_floating_point():
        t = t.float() / 255.0
    return t


class ClipModel(ModelWrapper):
    """A CLIP model + tokenizer with differentiable torch-side preprocessing."""

    def __init__(self, model, tokenizer=None, name: str = "clip"):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        try:  # math attention: has forward-mode AD rules (fused SDPA kernels may not)
            self.model.set_attn_implementation("eager")
        except Exception:  # pragma: no cover - older transformers
            try:
                self.model.config._attn_implementation = "eager"
            except Exception:
                pass
        self.tokenizer = tokenizer
        self.name = name
        self.image_size = int(model.config.vision_config.image_size)
        self._text_cache: dict = {}

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_vision_layers(self) -> int:
        return int(self.model.config.vision_config.num_hidden_layers)

    def to(self, device=None, dtype=None) -> "ClipModel":
        super().to(device=device, dtype=dtype)
        self._text_cache.clear()
        return self

    def __repr__(self) -> str:
        return f"ClipModel(name={self.name!r}, image_size={self.image_size})"

    # -- images -----------------------------------------------------------------------------------------------
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(device=self.device, dtype=self.dtype)
        return clip_preprocess(frames, self.image_size)

    def encode_images(self, frames: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Frames (f, 3, H, W) in [0, 1] -> image embeddings (f, d), L2-normalised by default."""
        px = self.preprocess(frames)
        emb = _as_tensor_output(self.model.get_image_features(pixel_values=px))
        return F.normalize(emb, dim=-1) if normalize else emb

    def hidden_tokens(self, frames: torch.Tensor, layer: int) -> torch.Tensor:
        """Hidden state after vision transformer block `layer` (1-based; 0 = embeddings after the pre-LN),
        CLS token dropped: (f, N, d). Only the first `layer` blocks are run."""
        n = self.num_vision_layers
        if not 0 <= int(layer) <= n:
            raise RewardError(f"clip: layer must be in [0, {n}] for {self.name}, got {layer}")
        vm = self.model.vision_model
        px = self.preprocess(frames)
        h = vm.embeddings(px)
        h = vm.pre_layrnorm(h)
        for blk in vm.encoder.layers[: int(layer)]:
            out = blk(h, None)
            h = out[0] if isinstance(out, (tuple, list)) else out
        return h[:, 1:, :]

    # -- text -------------------------------------------------------------------------------------------------
    def encode_text(self, texts: Union[str, Sequence[str]], normalize: bool = True) -> torch.Tensor:
        """List of prompts -> text embeddings (n, d), L2-normalised by default (no gradient)."""
        if isinstance(texts, str):
            texts = [texts]
        if self.tokenizer is None:
            raise RewardError(f"clip: {self.name} has no tokenizer; text rewards need one")
        key = (tuple(texts), normalize)
        if key in self._text_cache:
            return self._text_cache[key]
        max_len = min(int(getattr(self.tokenizer, "model_max_length", 77) or 77),
                      int(self.model.config.text_config.max_position_embeddings))
        tok = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        with torch.no_grad():
            emb = _as_tensor_output(
                self.model.get_text_features(
                    input_ids=tok["input_ids"].to(self.device),
                    attention_mask=tok["attention_mask"].to(self.device) if "attention_mask" in tok else None,
                )
            )
        emb = F.normalize(emb, dim=-1) if normalize else emb
        self._text_cache[key] = emb
        return emb


_CACHE: dict = {}
_LOCK = threading.Lock()


def _load_from_pretrained(name: str, device, dtype) -> ClipModel:
    from transformers import CLIPModel, CLIPTokenizer

    local = Path(name).expanduser()
    src = str(local) if local.exists() else name
    kwargs = {"attn_implementation": "eager"}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = CLIPModel.from_pretrained(src, **kwargs)
    except TypeError:  # pragma: no cover - older transformers (torch_dtype)
        kwargs.pop("dtype", None)
        model = CLIPModel.from_pretrained(src, torch_dtype=dtype, attn_implementation="eager")
    except Exception as exc:
        if local.exists():
            raise RewardError(f"clip: cannot load a CLIPModel from folder {src!r}: {exc}") from exc
        raise RewardError(
            f"clip: cannot load {name!r}: it is downloaded from the Hugging Face Hub on first use, so it needs "
            f"internet once or a cached copy (HF_HOME); offline mode or network error: {type(exc).__name__}"
        ) from exc
    try:
        tokenizer = CLIPTokenizer.from_pretrained(src)
    except Exception:
        tokenizer = None  # image-only use (style reward) still works
    wrapper = ClipModel(model, tokenizer, name=name)
    if device is not None or dtype is not None:
        wrapper.to(device=device, dtype=dtype)
    return wrapper


def load_clip(name_or_path=CLIP_B16, device=None, dtype=None) -> ClipModel:
    """Return a cached `ClipModel`.

    `name_or_path`: a hub id, a local folder, ``"micro"`` (assets/micro/clip/), a `(CLIPModel, tokenizer)` pair,
    a bare `CLIPModel`, or a `ClipModel`. The model is put in eval mode with frozen parameters.
    """
    if isinstance(name_or_path, ClipModel):
        if device is not None or dtype is not None:
            name_or_path.to(device=device, dtype=dtype)
        return name_or_path
    if isinstance(name_or_path, (tuple, list)):
        if len(name_or_path) != 2:
            raise RewardError("clip: expected a (CLIPModel, tokenizer) pair")
        model, tok = name_or_path
        w = ClipModel(model, tok, name=type(model).__name__)
        if device is not None or dtype is not None:
            w.to(device=device, dtype=dtype)
        return w
    if isinstance(name_or_path, torch.nn.Module):
        w = ClipModel(name_or_path, None, name=type(name_or_path).__name__)
        if device is not None or dtype is not None:
            w.to(device=device, dtype=dtype)
        return w
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
        raise RewardError(f"clip: expected a model id, folder or (CLIPModel, tokenizer), got {type(name_or_path).__name__}")
    name = str(name_or_path)
    if name == "micro":  # the project's micro CLIP (assets/micro/clip/), trained by pipelines.micro
        name = str(MICRO_CLIP_DIR)
        if not MICRO_CLIP_DIR.is_dir():
            raise RewardError(f"clip: the micro CLIP is missing at {name!r} (train it with pipelines.micro)")
    key = (name, str(device), str(dtype))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load_from_pretrained(name, device, dtype)
        return _CACHE[key]


def clear_clip_cache() -> None:
    with _LOCK:
        _CACHE.clear()
