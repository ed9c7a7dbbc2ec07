"""Style reward: Gram matrices of CLIP ViT tokens (METHODS.md "Rewards / Style")."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import Reward, RewardError, check_frames
from .clip import CLIP_B16, load_clip, to_image_tensor


def gram(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens (f, N, d) -> Gram matrices `FᵀF / N` (f, d, d)."""
    return tokens.transpose(1, 2) @ tokens / tokens.shape[1]


class StyleReward(Reward):
    """`−‖G(frame) − G(reference)‖_F` with `G` the Gram of the hidden tokens after vision block `layer` (CLS dropped).

    `mode="embedding"`: cosine of CLIP image embeddings instead. Frames and reference get the same preprocessing
    (resize to the CLIP image size, bicubic, CLIP mean/std). The reference itself scores the maximum, 0 (gram mode)
    or 1 (embedding mode).
    """

    name = "style"
    differentiable = True
    frame_local = True

    def __init__(self, reference, clip=CLIP_B16, layer: int = 2, mode: str = "gram", device=None, dtype=None):
        if mode not in ("gram", "embedding"):
            raise RewardError(f"style: mode must be 'gram' or 'embedding', got {mode!r}")
        self.clip = load_clip(clip, device=device, dtype=dtype)
        self.mode = mode
        self.layer = int(layer)
        if mode == "gram" and not 0 <= self.layer <= self.clip.num_vision_layers:
            raise RewardError(f"style: layer must be in [0, {self.clip.num_vision_layers}], got {layer}")
        if reference is None:
            raise RewardError("style: a reference style image is required")
        self.reference = to_image_tensor(reference, who="style reference").float().clamp(0, 1)
        self._target = None

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        acc = torch.promote_types(self.clip.dtype, torch.float32)  # fp16 CLIP: fp32 Grams; fp64 CLIP: fp64
        if self.mode == "gram":
            return gram(self.clip.hidden_tokens(frames, self.layer).to(acc))
        return self.clip.encode_images(frames).to(acc)

    @property
    def target(self) -> torch.Tensor:
        acc = torch.promote_types(self.clip.dtype, torch.float32)
        if self._target is None or self._target.device != self.clip.device or self._target.dtype != acc:
            with torch.no_grad():
                self._target = self._features(self.reference[None].to(self.clip.device))[0]
        return self._target

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "style")
        feats = self._features(frames)
        if self.mode == "gram":
            diff = (feats - self.target[None]).flatten(1)
            # sqrt(Σd² + ε) − sqrt(ε): finite gradient at the reference itself (‖·‖ has none at 0), and exactly 0 there
            eps = 1e-12
            return -(torch.sqrt((diff * diff).sum(-1) + eps) - eps ** 0.5).to(frames.dtype)
        return (feats * self.target[None]).sum(-1).to(frames.dtype)

    def to(self, device=None, dtype=None):
        self.clip.to(device=device, dtype=dtype)
        self.reference = self.reference.to(device=device, dtype=dtype)
        self._target = None
        _ = self.target  # computed once on the new device (not on the first guided step)
        return self

    def __repr__(self):
        return f"StyleReward(mode={self.mode!r}, layer={self.layer}, clip={self.clip.name!r})"


#: `PatchStyleReward`'s neighbour offsets (dy, dx) in px at 32×32: the pixel itself, then one and two band widths of
#: the micro world's looks (4 and 8 px) along each look angle: down, right, and both diagonals. Their pairwise
#: products say which directions the texture repeats in (stripes' angle), how far (their period) and in which
#: colours.
PATCH_OFFSETS = ((0, 0), (4, 0), (0, 4), (3, 3), (3, -3), (8, 0), (0, 8), (6, 6), (6, -6))


def background_weight(frames: torch.Tensor, sat: float = 0.3, white: float = 0.75, soft: float = 0.05) -> torch.Tensor:
    """(f, H, W) weights in [0, 1], ≈ 0 on pixels that look like an object (saturated, or bright in every channel:
    the micro world's separability rule) and 1 elsewhere. Not differentiated: the reward styles the background it
    sees, and cannot gain by erasing the object."""
    with torch.no_grad():
        mx, mn = frames.max(1).values, frames.min(1).values
        obj = torch.maximum(torch.sigmoid((mx - mn - sat) / soft), torch.sigmoid((mn - white) / soft))
        return 1.0 - obj


def patch_stats(frames: torch.Tensor, offsets=PATCH_OFFSETS, weight: Optional[torch.Tensor] = None):
    """Each frame's mean colour (f, 3) and the covariance (f, 3k, 3k) of its small patches: each pixel's colour
    stacked with its neighbours' at `offsets` (k of them, wrapping at the border), centred on the mean colour, over
    the pixels `weight` (f, H, W) keeps (and whose neighbours it keeps)."""
    f, _, h, w = frames.shape
    if weight is None:
        wt = frames.new_ones(f, h, w)
    else:
        wt = torch.ones_like(weight)
        for dy, dx in offsets:
            wt = wt * torch.roll(weight, shifts=(-dy, -dx), dims=(-2, -1))
    wt = wt.reshape(f, 1, h * w).to(frames.dtype)
    total = wt.sum(-1).clamp_min(1.0)  # (f, 1)
    x = frames.reshape(f, 3, h * w)
    mean = (x * wt).sum(-1) / total  # (f, 3)
    xc = (x - mean[..., None]).reshape(f, 3, h, w)
    feats = torch.cat([torch.roll(xc, shifts=(-dy, -dx), dims=(-2, -1)) for dy, dx in offsets], dim=1)
    z = feats.reshape(f, -1, h * w)
    cov = (z * wt) @ z.transpose(1, 2) / total[..., None]
    return mean, cov


class PatchStyleReward(Reward):
    """`−(‖μ − μ_ref‖ / COLOUR_SCALE + ‖C − C_ref‖_F / (‖C_ref‖_F + COV_FLOOR))` with `μ` the mean colour and `C`
    the covariance of small pixel patches (`patch_stats`: each pixel's RGB with its neighbours along the four stripe
    angles at one and two band widths), over the frame's background (`background_weight`: the object's pixels left
    out). A style reward for the micro world's 32×32 frames, whose looks are two tints in stripes or checks: the
    covariance's diagonal blocks are the tints' colour spread, its off-diagonal blocks the correlations that tell
    stripes from checks, their angle and their width. No network: the micro CLIP's layer-2 Gram (`StyleReward`)
    sees 8×8-px patches of a 32×32 frame and mixes the object into its statistics. The reference is read at the
    frames' size (`image_tensor` resizes it) and scores the maximum, 0.    the maximum, 0."""

    name = "style"
    differentiable = True
    frame_local = True

    def __init__(self, reference, offsets=PATCH_OFFSETS, device=None, dtype=None):
        if reference is None:
            raise RewardError("style: a reference style image is required")
        self.reference = to_image_tensor(reference, who="style reference").float().clamp(0, 1)
        self.offsets = tuple(tuple(int(v) for v in o) for o in offsets)
        self._target = None
        if device is not None or dtype is not None:
            self.to(device, dtype)

    #: The colour term's scale: a mean-colour distance of this much (RGB, [0, 1]) costs as much as a patch covariance
    #: as far from the reference's as the reference's own size.
    COLOUR_SCALE = 0.1
    #: Added to the reference covariance's norm (a flat reference has none).
    COV_FLOOR = 0.01

    @property
    def target(self):
        if self._target is None or self._target[0].device != self.reference.device:
            with torch.no_grad():
                m, c = patch_stats(self.reference[None].float(), self.offsets)
                self._target = (m[0], c[0])
        return self._target

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "style")
        x = frames.float()
        if tuple(x.shape[-2:]) != tuple(self.reference.shape[-2:]):
            import torch.nn.functional as F

            x = F.interpolate(x, size=tuple(self.reference.shape[-2:]), mode="bilinear", align_corners=False,
                              antialias=True)
        mean, cov = patch_stats(x, self.offsets, background_weight(x))
        tm, tc = (v.to(x.device) for v in self.target)
        eps = 1e-12
        dc = (mean - tm[None])
        colour = torch.sqrt((dc * dc).sum(-1) + eps) - eps ** 0.5
        dv = (cov - tc[None]).flatten(1)
        structure = torch.sqrt((dv * dv).sum(-1) + eps) - eps ** 0.5
        return -(colour / self.COLOUR_SCALE + structure / (tc.norm() + self.COV_FLOOR)).to(frames.dtype)

    def to(self, device=None, dtype=None):
        self.reference = self.reference.to(device=device, dtype=dtype)
        self._target = None
        return self

    def __repr__(self):
        return f"PatchStyleReward(offsets={len(self.offsets)})"
