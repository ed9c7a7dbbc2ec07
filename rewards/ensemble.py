"""Reward ensembles (Free²Guide): matrix combinations over candidates and a protocol-level `EnsembleReward`.

Matrix functions take `R` of shape (m rewards, n candidates) and return one score per candidate (n,). The three
modes differ in kind (METHODS.md "Ensembles"):
- "weighted": `Σ_i w_i · s_i(R_i)`, each reward mapped from its own FIXED scale to [0, 1] (`s(r) = (r − lo)/(hi − lo)`,
  the reward's `score_range`: LVLM 1–9 -> (s − 1)/8; a reward without one, e.g. a CLIP cosine, as is). A candidate's
  score does not depend on the other candidates ("manual control"; β = 0.75 on the LVLM in the t2v ensemble).
- "normalized": min–max normalise each reward across the candidates (max = min -> 0), then add.
- "borda": each reward ranks the candidates (best n points, ties share the average), then add the points.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .base import Reward, RewardError, check_frames

MODES = ("weighted", "normalized", "borda")


def _as_matrix(R) -> torch.Tensor:
    R = torch.as_tensor(R)
    if R.ndim == 1:
        R = R[None]
    if R.ndim != 2 or R.shape[1] == 0:
        raise RewardError(f"ensemble: reward matrix must be (m rewards, n candidates), got {tuple(R.shape)}")
    R = R.double()
    if not torch.isfinite(R).all():
        raise RewardError("ensemble: reward matrix contains NaN or inf")
    return R


def minmax(R) -> torch.Tensor:
    """Min–max normalise each reward (row) across candidates to [0, 1]; a row with max = min becomes 0."""
    R = _as_matrix(R)
    lo = R.min(dim=1, keepdim=True).values
    hi = R.max(dim=1, keepdim=True).values
    span = hi - lo
    return torch.where(span > 0, (R - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(R))


def normalized_sum(R) -> torch.Tensor:
    """Sum of min–max normalised rewards (n,)."""
    return minmax(R).sum(0)


def fixed_scale(R, scales: Optional[Sequence[Optional[Tuple[float, float]]]] = None) -> torch.Tensor:
    """Map each reward (row) from its fixed range `(lo, hi)` to [0, 1] by `(r − lo)/(hi − lo)`; `None` (or no
    `scales`) keeps a row as is. Independent of the other candidates."""
    R = _as_matrix(R)
    if scales is None:
        return R
    scales = list(scales)
    if len(scales) != R.shape[0]:
        raise RewardError(f"ensemble: {len(scales)} score ranges for {R.shape[0]} rewards")
    rows = []
    for row, sc in zip(R, scales):
        if sc is None:
            rows.append(row)
            continue
        lo, hi = (float(v) for v in sc)
        if not hi > lo:
            raise RewardError(f"ensemble: a score range needs hi > lo, got ({lo:g}, {hi:g})")
        rows.append((row - lo) / (hi - lo))
    return torch.stack(rows)


def weighted_sum(R, weights: Optional[Sequence[float]] = None,
                 scales: Optional[Sequence[Optional[Tuple[float, float]]]] = None) -> torch.Tensor:
    """`Σ_i w_i · s_i(R_i)` (n,): each reward on its own fixed scale mapped to [0, 1] (`fixed_scale`), NOT
    normalised across the candidates, then weighted (e.g. β = 0.75 on the LVLM)."""
    N = fixed_scale(R, scales)
    w = torch.ones(N.shape[0], dtype=N.dtype) if weights is None else torch.as_tensor(weights, dtype=N.dtype)
    if w.shape != (N.shape[0],):
        raise RewardError(f"ensemble: {w.numel()} weights for {N.shape[0]} rewards")
    return w @ N


def borda_points(R) -> torch.Tensor:
    """Per reward, Borda points of each candidate (m, n): best gets n, worst 1, ties share the average."""
    R = _as_matrix(R)
    less = (R[:, None, :] < R[:, :, None]).sum(-1).double()  # candidates strictly worse than each candidate
    equal = (R[:, None, :] == R[:, :, None]).sum(-1).double()  # including itself
    return less + (equal + 1) / 2


def borda(R) -> torch.Tensor:
    """Consensus: summed Borda points (n,)."""
    return borda_points(R).sum(0)


def combine(R, mode: str = "weighted", weights: Optional[Sequence[float]] = None, scales=None) -> torch.Tensor:
    if mode == "weighted":
        return weighted_sum(R, weights, scales)
    if mode == "normalized":
        return normalized_sum(R)
    if mode == "borda":
        return borda(R)
    raise RewardError(f"ensemble: mode must be one of {MODES}, got {mode!r}")


class EnsembleReward(Reward):
    """Several rewards as one.

    `__call__`: `Σ_i w_i s_i(R_i(frames))` per frame, each member on its fixed scale (its `score_range`, else as
    is; affine, so differentiable when every member is).
    `score_candidates`: each member scores the candidates (its own `score_candidates`), then the matrix is combined
    with `mode` ("weighted": fixed scales then weights, "normalized": min–max sum, "borda": consensus ranks).
    """

    name = "ensemble"

    def __init__(self, rewards: Sequence[Reward], mode: str = "weighted", weights: Optional[Sequence[float]] = None):
        rewards = list(rewards)
        if not rewards:
            raise RewardError("ensemble: needs at least one reward")
        for r in rewards:
            if not isinstance(r, Reward):
                raise RewardError(f"ensemble: members must be Reward objects, got {type(r).__name__}")
        if mode not in MODES:
            raise RewardError(f"ensemble: mode must be one of {MODES}, got {mode!r}")
        if weights is None:
            weights = [1.0] * len(rewards)
        weights = [float(w) for w in weights]
        if len(weights) != len(rewards):
            raise RewardError(f"ensemble: {len(weights)} weights for {len(rewards)} rewards")
        self.rewards, self.mode, self.weights = rewards, mode, weights
        self.scales = [getattr(r, "score_range", None) for r in rewards]
        self.differentiable = all(r.differentiable for r in rewards)
        self.frame_local = all(r.frame_local for r in rewards)
        self.name = "+".join(r.name for r in rewards)

    def __call__(self, frames, frame_indices=None, num_frames=None):
        check_frames(frames, "ensemble")
        total = None
        for w, r, sc in zip(self.weights, self.rewards, self.scales):
            v = r(frames, frame_indices, num_frames)
            if sc is not None:
                v = (v - float(sc[0])) / (float(sc[1]) - float(sc[0]))
            v = w * v
            total = v if total is None else total + v.to(total.device)
        return total

    def required_frames(self, num_frames: int):
        req = [r.required_frames(num_frames) for r in self.rewards]
        req = [q for q in req if q is not None]
        if not req:
            return None
        return sorted(set().union(*map(set, req)))

    def score_matrix(self, candidates, frame_indices=None, num_frames=None) -> torch.Tensor:
        return torch.stack(
            [r.score_candidates(candidates, frame_indices, num_frames).detach().double().cpu() for r in self.rewards]
        )

    def score_candidates(self, candidates, frame_indices=None, num_frames=None) -> torch.Tensor:
        if len(candidates) == 0:
            raise RewardError("ensemble: no candidates to score")
        R = self.score_matrix(candidates, frame_indices, num_frames)
        return combine(R, self.mode, self.weights, self.scales).float()

    def to(self, device=None, dtype=None):
        for r in self.rewards:
            r.to(device=device, dtype=dtype)
        return self

    def __repr__(self):
        return f"EnsembleReward({self.rewards!r}, mode={self.mode!r}, weights={self.weights})"
