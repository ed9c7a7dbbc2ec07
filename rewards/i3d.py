"""A compact Inception-I3D (Carreira & Zisserman 2017) for FVD features, and the Fréchet distance.

The module names follow the common PyTorch port of the Kinetics-400 RGB I3D (``Conv3d_1a_7x7``, ``Mixed_3b.b1b``,
``logits`` ...; each unit a ``conv3d`` + ``bn``), so a user-supplied state dict of that layout
(e.g. ``rgb_imagenet.pt``) loads strictly. Nothing here downloads: FVD runs only where the user points
`load_i3d` at a weights file (METHODS.md "Metrics": FVD where a reference set exists).

Input: videos `(b, 3, T, H, W)` scaled to [−1, 1] (`i3d_preprocess` does it from frames in [0, 1], resizing to 224
by default). Convolutions and pools use TensorFlow's "SAME" padding as the original. Features: the 400 logits
(`features="logits"`, the default: what the original FVD uses), computed from the global average after
``Mixed_5c`` (the original's 2×7×7 average pool at 16 × 224² is exactly that global mean, which makes any size
work), or that 1024-d average itself (`features="pool"`).

`load_i3d` also takes the standard TorchScript detector of StyleGAN-V / fvd-comparison (`i3d_torchscript.pt`, the
TF-Hub I3D that published FVD figures use): it is called as `detector(x, rescale=False, resize=False,
return_features=True)` on the same [−1, 1], 224² input and gives the 400 pre-softmax logits (`TorchScriptI3D`).

A Fréchet distance between 400-d Gaussians needs more videos per set than dimensions: with n ≤ 400 the covariance
is rank-deficient (rank ≤ n − 1) and the figure is not comparable with published ones (they use 2048 videos or
more). `fvd_check` says so; `fvd_from_features(strict=True)` refuses such sets, and `real_metrics` marks them
(`fvd_reliable: False`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import RewardError


def _same_pad(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> list:
    """F.pad arguments (last dim first) for TensorFlow "SAME" padding of a (T, H, W) input."""
    pads = []
    for s, k, st in zip(size, kernel, stride):
        total = max(k - st, 0) if s % st == 0 else max(k - s % st, 0)
        pads.append((total // 2, total - total // 2))
    return [p for pair in reversed(pads) for p in pair]


class _SamePool(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        # zero padding as the reference port (inputs after ReLU are >= 0, so it equals TF's -inf padding there)
        x = F.pad(x, _same_pad(x.shape[2:], self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d (SAME padding, no bias) + BatchNorm (eps 1e-3) + ReLU; the logits unit has bias, no BN, no ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True,
                 bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x):
        x = self.conv3d(F.pad(x, _same_pad(x.shape[2:], self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class Mixed(nn.Module):
    """Inception block: 1×1 | 1×1→3×3×3 | 1×1→3×3×3 | pool→1×1, concatenated on channels."""

    def __init__(self, cin: int, c: Sequence[int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = _SamePool((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


_MIXED = {  # name: (input channels, branch widths)
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    FEATURE_DIM = 1024

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = _SamePool((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = _SamePool((1, 3, 3), (1, 2, 2))
        self.Mixed_3b, self.Mixed_3c = Mixed(*_MIXED["Mixed_3b"]), Mixed(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = _SamePool((3, 3, 3), (2, 2, 2))
        for n in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, n, Mixed(*_MIXED[n]))
        self.MaxPool3d_5a_2x2 = _SamePool((2, 2, 2), (2, 2, 2))
        self.Mixed_5b, self.Mixed_5c = Mixed(*_MIXED["Mixed_5b"]), Mixed(*_MIXED["Mixed_5c"])
        self.logits = Unit3D(self.FEATURE_DIM, num_classes, bn=False, relu=False, bias=True)
        self._order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                       "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                       "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"]

    def forward(self, x: torch.Tensor, features: str = "pool") -> torch.Tensor:
        """`x` (b, 3, T, H, W) in [−1, 1] -> (b, 1024) pooled features, or (b, num_classes) with "logits"."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise RewardError(f"i3d: expected videos (b, 3, T, H, W), got {tuple(x.shape)}")
        for name in self._order:
            x = getattr(self, name)(x)
        x = x.mean(dim=(2, 3, 4), keepdim=True)
        if features == "pool":
            return x.flatten(1)
        if features == "logits":
            return self.logits(x).flatten(1)
        raise RewardError(f"i3d: features must be 'pool' or 'logits', got {features!r}")


def i3d_preprocess(videos: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Videos (b, f, 3, H, W) in [0, 1] -> (b, 3, f, size, size) in [−1, 1] (bilinear resize, square)."""
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise RewardError(f"i3d: expected videos (b, f, 3, H, W), got {tuple(videos.shape)}")
    b, f = videos.shape[:2]
    x = videos.reshape(b * f, 3, *videos.shape[-2:]).float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp(0, 1) * 2 - 1
    return x.reshape(b, f, 3, size, size).transpose(1, 2).contiguous()


class TorchScriptI3D(nn.Module):
    """The StyleGAN-V TorchScript I3D (`i3d_torchscript.pt`) behind `InceptionI3d`'s interface: input (b, 3, T, H, W)
    in [−1, 1] at the size `i3d_preprocess` gives (224), output the 400 logits (`features="logits"`); the
    detector's own rescaling and resizing are off, since `i3d_preprocess` did both."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor, features: str = "logits") -> torch.Tensor:
        if features != "logits":
            raise RewardError("i3d: the TorchScript detector gives the 400 logits only (features='logits')")
        return self.detector(x, rescale=False, resize=False, return_features=True)


def _is_torchscript(p: Path) -> bool:
    """A TorchScript archive (torch.jit.save) holds its code (`<name>/code/...`); a state dict does not."""
    import zipfile

    if not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def load_i3d(path, device=None, num_classes: int = 400):
    """An I3D for FVD from a user-supplied file; nothing is downloaded. Either the StyleGAN-V TorchScript detector
    (`i3d_torchscript.pt`, wrapped in `TorchScriptI3D`), or an `InceptionI3d` state dict (strict key and shape
    check)."""
    if path is None:
        raise RewardError("i3d: FVD needs I3D weights: pass the path of i3d_torchscript.pt (StyleGAN-V) or of a "
                          "Kinetics-400 RGB I3D state dict")
    p = Path(path).expanduser()
    if not p.is_file():
        raise RewardError(f"i3d: weights not found at {str(p)!r}")
    if _is_torchscript(p):
        try:
            detector = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:
            raise RewardError(f"i3d: cannot load the TorchScript detector {str(p)!r}: {exc}") from exc
        return TorchScriptI3D(detector).eval().requires_grad_(False).to(device)
    try:
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RewardError(f"i3d: cannot read a state dict from {str(p)!r}: {exc}") from exc
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise RewardError(f"i3d: {str(p)!r} does not hold a state dict (got {type(sd).__name__})")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if "logits.conv3d.weight" in sd:
        num_classes = int(sd["logits.conv3d.weight"].shape[0])
    model = InceptionI3d(num_classes)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise RewardError(f"i3d: {str(p)!r} does not match the Inception-I3D layout: {exc}") from exc
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def i3d_features(model: InceptionI3d, videos, size: int = 224, batch_size: int = 4, features: str = "logits") -> np.ndarray:
    """Features (n, d) float64 of videos: a tensor (n, f, 3, H, W) or a list of (f, 3, H, W), frames in [0, 1]."""
    if isinstance(videos, torch.Tensor) and videos.ndim == 4:
        videos = videos[None]
    videos = list(videos)
    if not videos:
        raise RewardError("i3d: no videos given")
    p = next(model.parameters())
    out = []
    for i in range(0, len(videos), batch_size):
        chunk = videos[i: i + batch_size]
        shapes = {tuple(v.shape) for v in chunk}
        if len(shapes) != 1:
            raise RewardError(f"i3d: videos in one batch must share a shape, got {sorted(shapes)}")
        x = i3d_preprocess(torch.stack([torch.as_tensor(v) for v in chunk]), size).to(p.device, p.dtype)
        out.append(model(x, features=features).double().cpu())
    return torch.cat(out).numpy()


def gaussian_stats(features: np.ndarray):
    """Mean and covariance (unbiased) of features (n, d); needs n >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise RewardError(f"fvd: needs at least 2 videos per set for a covariance, got features {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """`‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})` with scipy's sqrtm; a singular product gets `eps·I` added to
    both covariances; tiny imaginary parts of the root (numerical) are dropped. With fewer samples than
    dimensions the product is singular (scipy warns); its root is still accurate enough (a set against itself
    gives ≈ 0), so that warning is silenced here."""
    import warnings

    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise RewardError(f"fvd: shapes do not match: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            off = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # ≥ 0 in exact arithmetic; rounding can leave −1e-12


def fvd_check(n_a: int, n_b: int, dim: int) -> tuple[bool, str]:
    """(reliable, note): a d-dimensional covariance has full rank only from d + 1 samples on; below that the
    Fréchet distance depends on the set size and cannot be compared with published FVDs."""
    n = min(int(n_a), int(n_b))
    if n <= dim:
        return False, (f"unreliable: {n} videos in the smaller set for a {dim}-dimensional covariance (rank ≤ {n - 1}); "
                       f"needs more than {dim} per set, published FVDs use 2048")
    return True, f"{n} videos per set (smaller set) for {dim} dimensions"


def fvd_from_features(feats_a: np.ndarray, feats_b: np.ndarray, strict: bool = False) -> float:
    """FVD between two feature sets (n_a, d), (n_b, d). `strict`: refuse (`RewardError`) sets with no more videos
    than dimensions (`fvd_check`)."""
    a, b = np.asarray(feats_a), np.asarray(feats_b)
    if strict and a.ndim == 2 and b.ndim == 2:
        ok, note = fvd_check(a.shape[0], b.shape[0], a.shape[1])
        if not ok:
            raise RewardError(f"fvd: {note}")
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def fvd(videos_a, videos_b, model: InceptionI3d, size: int = 224, features: str = "logits") -> float:
    """Fréchet Video Distance between two sets of videos (frames in [0, 1]) with I3D `model`."""
    return fvd_from_features(i3d_features(model, videos_a, size, features=features),
                             i3d_features(model, videos_b, size, features=features))


__all__ = ["InceptionI3d", "TorchScriptI3D", "i3d_preprocess", "load_i3d", "i3d_features", "gaussian_stats",
           "frechet_distance", "fvd_check", "fvd_from_features", "fvd"]
