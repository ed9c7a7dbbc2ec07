"""A minimal, dependency-free definition of ImageBind's vision and audio towers.

Written from the architecture of facebookresearch/ImageBind (`imagebind/models/imagebind_model.py`,
`multimodal_preprocessors.py`, `transformer.py`, `helpers.py`) without its torchaudio / pytorchvideo / timm / einops
dependencies. Parameter and buffer names match the official checkpoint `imagebind_huge.pth`, so its vision and
audio entries load strictly (the text, depth, thermal and IMU entries are skipped).

Layout per modality `m` in {vision, audio}:
- `modality_preprocessors.m`: `cls_token (1, 1, D)`, `rgbt_stem.proj` (vision: `[PadIm2Video (no params), Conv3d]`,
  so the conv is `rgbt_stem.proj.1`; audio: the Conv2d itself, plus `rgbt_stem.norm_layer` LayerNorm),
  `pos_embedding_helper.pos_embed (1, 1 + patches, D)`.
- `modality_trunks.m`: `pre_transformer_layer.0` (LayerNorm for vision, Identity for audio), `blocks.i` with
  `attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias}` (+ `bias_k`, `bias_v` for audio: one extra
  learned key/value token, as `nn.MultiheadAttention(add_bias_kv=True)`), `norm_1`, `mlp.fc1`, `mlp.fc2`, `norm_2`.
- `modality_heads.m`: `0` LayerNorm, `1` select CLS, `2` Linear without bias.
- `modality_postprocessors.audio.1.log_logit_scale` (a fixed buffer, log 20). Embeddings are L2-normalised.

The attention is written out in math form (no fused kernels), so the vision tower works under `torch.func.jvp`.
Drop-path / dropout are training-only and omitted (the model is used in eval mode).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import RewardError

IMAGEBIND_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
MODALITIES = ("vision", "audio")

#: Hyper-parameters of ImageBind-huge (vision and audio towers).
HUGE_CONFIG = dict(
    out_embed_dim=1024,
    vision_embed_dim=1280,
    vision_num_blocks=32,
    vision_num_heads=16,
    image_size=224,
    kernel_size=(2, 14, 14),
    audio_embed_dim=768,
    audio_num_blocks=12,
    audio_num_heads=12,
    audio_num_mel_bins=128,
    audio_target_len=204,
    audio_kernel_size=16,
    audio_stride=10,
)


class _PadIm2Video(nn.Module):
    """(B, C, H, W) image -> (B, C, T, H, W) by repeating it `ntimes` along time (ImageBind's 'repeat' pad)."""

    def __init__(self, ntimes: int = 2):
        super().__init__()
        self.ntimes = ntimes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.ntimes, -1, -1)
        return x


class _PatchStem(nn.Module):
    def __init__(self, proj: nn.Module, norm_layer: Optional[nn.Module] = None):
        super().__init__()
        self.proj = proj
        self.norm_layer = norm_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # B C (T) H W -> B (T H W) C
        return self.norm_layer(x) if self.norm_layer is not None else x


class _PosEmbed(nn.Module):
    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, dim) * dim ** -0.5)


class _Preprocessor(nn.Module):
    def __init__(self, stem: _PatchStem, num_patches: int, dim: int):
        super().__init__()
        self.rgbt_stem = stem
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * dim ** -0.5)
        self.pos_embedding_helper = _PosEmbed(num_patches + 1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        pos = self.pos_embedding_helper.pos_embed
        if tokens.shape[1] + 1 != pos.shape[1]:
            raise RewardError(
                f"imagebind: input gives {tokens.shape[1]} patches, the model expects {pos.shape[1] - 1} "
                "(resize images to the model's image size / pad audio to its target length)"
            )
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + pos


class _Attention(nn.Module):
    """Self-attention with `nn.MultiheadAttention`'s parameter names, in plain math form."""

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool):
        super().__init__()
        if dim % num_heads:
            raise RewardError(f"imagebind: embed dim {dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.bias_v = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        else:
            self.bias_k = self.bias_v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None:  # one learned extra key / value token, appended after the projection
            k = torch.cat([k, self.bias_k.expand(b, -1, -1)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, -1, -1)], dim=1)

        def heads(t):
            return t.reshape(b, t.shape[1], h, d // h).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        attn = (q * (d // h) ** -0.5) @ k.transpose(-2, -1)
        out = attn.softmax(dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool, mlp_ratio: int = 4):
        super().__init__()
        self.attn = _Attention(dim, num_heads, add_bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(mlp_ratio * dim))
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = x + self.attn(self.norm_1(x))
        return x + self.mlp(self.norm_2(x))


class _Trunk(nn.Module):
    def __init__(self, dim: int, num_blocks: int, num_heads: int, pre_ln: bool, add_bias_kv: bool):
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6) if pre_ln else nn.Identity())
        self.blocks = nn.Sequential(*[_Block(dim, num_heads, add_bias_kv) for _ in range(num_blocks)])

    def forward(self, tokens):  # (B, L, D); the official code runs (L, B, D), same maths
        return self.blocks(self.pre_transformer_layer(tokens))


class _SelectCLS(nn.Module):
    def forward(self, x):
        return x[:, 0]


class _LogitScale(nn.Module):
    def __init__(self, init: float):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(math.log(init)))


class _Normalize(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=-1)


class ImageBindModel(nn.Module):
    """ImageBind's vision and audio towers. Dims are parameters (tests build tiny ones); `imagebind_huge()` gives
    the released configuration."""

    def __init__(
        self,
        out_embed_dim: int = 1024,
        vision_embed_dim: int = 1280,
        vision_num_blocks: int = 32,
        vision_num_heads: int = 16,
        image_size: int = 224,
        kernel_size: Sequence[int] = (2, 14, 14),
        audio_embed_dim: int = 768,
        audio_num_blocks: int = 12,
        audio_num_heads: int = 12,
        audio_num_mel_bins: int = 128,
        audio_target_len: int = 204,
        audio_kernel_size: int = 16,
        audio_stride: int = 10,
    ):
        super().__init__()
        kernel_size = tuple(kernel_size)
        self.image_size = image_size
        self.audio_num_mel_bins = audio_num_mel_bins
        self.audio_target_len = audio_target_len
        self.out_embed_dim = out_embed_dim
        n_vis = (image_size // kernel_size[1]) * (image_size // kernel_size[2])  # 2 repeated frames -> 1 time patch
        vision_stem = _PatchStem(
            nn.Sequential(
                _PadIm2Video(ntimes=2),
                nn.Conv3d(3, vision_embed_dim, kernel_size=kernel_size, stride=kernel_size, bias=False),
            )
        )
        n_f = (audio_num_mel_bins - audio_kernel_size) // audio_stride + 1
        n_t = (audio_target_len - audio_kernel_size) // audio_stride + 1
        audio_stem = _PatchStem(
            nn.Conv2d(1, audio_embed_dim, kernel_size=audio_kernel_size, stride=audio_stride, bias=False),
            norm_layer=nn.LayerNorm(audio_embed_dim),
        )
        self.modality_preprocessors = nn.ModuleDict(
            {"vision": _Preprocessor(vision_stem, n_vis, vision_embed_dim), "audio": _Preprocessor(audio_stem, n_f * n_t, audio_embed_dim)}
        )
        self.modality_trunks = nn.ModuleDict(
            {
                "vision": _Trunk(vision_embed_dim, vision_num_blocks, vision_num_heads, pre_ln=True, add_bias_kv=False),
                "audio": _Trunk(audio_embed_dim, audio_num_blocks, audio_num_heads, pre_ln=False, add_bias_kv=True),
            }
        )

        def head(dim):
            return nn.Sequential(nn.LayerNorm(dim, eps=1e-6), _SelectCLS(), nn.Linear(dim, out_embed_dim, bias=False))

        self.modality_heads = nn.ModuleDict({"vision": head(vision_embed_dim), "audio": head(audio_embed_dim)})
        self.modality_postprocessors = nn.ModuleDict(
            {"vision": _Normalize(), "audio": nn.Sequential(_Normalize(), _LogitScale(20.0))}
        )

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings (B, out_embed_dim). vision: (B, 3, S, S) CLIP-normalised images;
        audio: (B, 1, mel_bins, target_len) normalised filterbanks. (The audio logit scale is not applied:
        it does not change cosines.)"""
        if modality not in MODALITIES:
            raise RewardError(f"imagebind: unknown modality {modality!r} (this build has {MODALITIES})")
        tokens = self.modality_preprocessors[modality](x)
        tokens = self.modality_trunks[modality](tokens)
        return F.normalize(self.modality_heads[modality](tokens), dim=-1)

    def forward(self, inputs: dict) -> dict:
        """`{"vision": (B, 3, S, S) or (B, clips, 3, S, S), "audio": (B, clips, 1, M, T)}` -> embeddings; inputs with
        a clip axis are averaged over clips, as in the official model."""
        out = {}
        for m, x in inputs.items():
            reduce = x.ndim >= 5
            if reduce:
                b, s = x.shape[:2]
                x = x.reshape(b * s, *x.shape[2:])
            e = self.encode(m, x)
            out[m] = e.reshape(b, s, -1).mean(1) if reduce else e
        return out


def imagebind_huge(device=None) -> ImageBindModel:
    """Randomly initialised ImageBind-huge vision + audio towers (use `torch.device("meta")` to inspect keys)."""
    with torch.device(device) if device is not None else _nullcontext():
        return ImageBindModel(**HUGE_CONFIG)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def filter_state_dict(sd: dict, modalities: Sequence[str] = MODALITIES) -> dict:
    """Keep the checkpoint entries of the given modalities (drops text / depth / thermal / IMU)."""
    keep = {}
    for k, v in sd.items():
        parts = k.split(".")
        if len(parts) > 2 and parts[0].startswith("modality_") and parts[1] in modalities:
            keep[k] = v
    return keep


#: SHA-256 of the official `imagebind_huge.pth`. Meta publishes none beside the file; set it (or the environment
#: variable IMAGEBIND_SHA256) to pin the download. Without one, a download is checked against the server's length and
#: its digest is recorded beside the file (`.sha256`), so a later truncation or corruption is caught by size there.
IMAGEBIND_SHA256: Optional[str] = None
CHUNK = 1 << 16  # bytes per write: a dropped connection loses at most this much


def default_cache_dir() -> Path:
    """The Hugging Face hub cache folder (HF_HUB_CACHE / HF_HOME), where the other models of the studio live too."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE) / "gvs-imagebind"
    except Exception:  # pragma: no cover - huggingface_hub comes with transformers
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub" / "gvs-imagebind"


def sha256_file(path, chunk: int = CHUNK) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download_checkpoint(url: str, target, sha256: Optional[str] = None, progress: bool = True,
                        timeout: float = 60.0) -> Path:
    """Download `url` to `target`, resuming a previous partial download (`target.part`, HTTP Range), with a tqdm
    progress bar; the length is checked against the server's and the SHA-256 against `sha256` when given. The file
    appears at `target` only once it is complete and checked; a mismatch removes the partial file."""
    import requests

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = requests.get(url, headers=headers, stream=True, timeout=timeout)
        if have and resp.status_code == 416:  # the partial file is already complete
            total, mode = have, "ab"
            resp.close()
            resp = None
        else:
            resp.raise_for_status()
            if have and resp.status_code == 206:
                mode = "ab"
                rng = resp.headers.get("Content-Range", "")
                total = int(rng.rsplit("/", 1)[1]) if "/" in rng and not rng.endswith("*") else None
            else:  # the server ignored the range: start over
                have, mode = 0, "wb"
                total = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
        if resp is not None:
            from tqdm.auto import tqdm

            with open(part, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                              desc=f"downloading {target.name}", disable=not progress) as bar:
                for block in resp.iter_content(chunk_size=CHUNK):
                    fh.write(block)
                    bar.update(len(block))
            resp.close()
    except Exception as exc:
        raise RewardError(f"imagebind: download from {url} failed ({type(exc).__name__}: {exc}); run again to resume "
                          f"from the {part.stat().st_size if part.exists() else 0} bytes already in {part}") from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise RewardError(f"imagebind: download from {url} stopped at {size} of {total} bytes; run again to resume")
    digest = sha256_file(part)
    if sha256 and digest.lower() != sha256.lower():
        part.unlink()
        raise RewardError(f"imagebind: checksum mismatch for {url}: got sha256 {digest}, expected {sha256}; "
                          "the partial file was removed")
    part.replace(target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    return target


def _recorded_ok(target: Path, sha256: Optional[str]) -> bool:
    """A finished download: pinned digest (when one is given) recorded beside it, or no record to contradict."""
    rec = target.with_name(target.name + ".sha256")
    if not rec.is_file():
        return not sha256
    got = rec.read_text().split()[0] if rec.read_text().split() else ""
    return not sha256 or got.lower() == sha256.lower()


def resolve_checkpoint(path=None, download: bool = False, cache_dir=None, url: Optional[str] = None,
                       sha256: Optional[str] = None, progress: bool = True) -> Path:
    """Local checkpoint path from `path`, env `IMAGEBIND_CKPT`, or (only with `download=True`) the official URL
    (env GVS_IMAGEBIND_URL overrides it), downloaded once into the Hugging Face cache folder (resumable, progress
    bar, checked). Refuses to download under HF_HUB_OFFLINE=1."""
    path = path or os.environ.get("IMAGEBIND_CKPT")
    if path:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        raise RewardError(f"imagebind: checkpoint not found at {str(p)!r} (IMAGEBIND_CKPT or the path given)")
    url = url or os.environ.get("GVS_IMAGEBIND_URL") or IMAGEBIND_URL
    sha256 = sha256 or os.environ.get("IMAGEBIND_SHA256") or IMAGEBIND_SHA256
    target = Path(cache_dir or default_cache_dir()) / "imagebind_huge.pth"
    if target.is_file() and _recorded_ok(target, sha256):
        return target
    if not download:
        raise RewardError(
            "imagebind: no checkpoint: pass a path to imagebind_huge.pth (or set IMAGEBIND_CKPT), "
            f"or allow the 4.5 GB download from {url} with download=True"
        )
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise RewardError(f"imagebind: offline (HF_HUB_OFFLINE=1) and no checkpoint in {target.parent}; set "
                          "IMAGEBIND_CKPT to a local imagebind_huge.pth")
    return download_checkpoint(url, target, sha256=sha256, progress=progress)


_MODELS: dict = {}


def cached_imagebind(path=None, download: bool = False, device=None, dtype=None) -> "ImageBindModel":
    """`load_imagebind`, once per (checkpoint, device, dtype) in a process (the app builds a reward per request)."""
    ckpt = resolve_checkpoint(path, download=download)
    key = (str(ckpt), str(device), str(dtype))
    if key not in _MODELS:
        _MODELS[key] = load_imagebind(ckpt, device=device, dtype=dtype)
    return _MODELS[key]


def load_imagebind(path=None, download: bool = False, device=None, dtype=None, config: Optional[dict] = None) -> ImageBindModel:
    """Build the model (huge config unless `config`) and load the vision + audio weights strictly."""
    ckpt = resolve_checkpoint(path, download=download)
    try:
        sd = torch.load(str(ckpt), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise RewardError(f"imagebind: cannot read checkpoint {str(ckpt)!r}: {exc}") from exc
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    with torch.device("meta"):
        model = ImageBindModel(**(config or HUGE_CONFIG))
    try:
        model.load_state_dict(filter_state_dict(sd), strict=True, assign=True)
    except RuntimeError as exc:
        raise RewardError(f"imagebind: checkpoint {str(ckpt)!r} does not match the model: {exc}") from exc
    model.eval().requires_grad_(False)
    return model.to(device=device, dtype=dtype)
