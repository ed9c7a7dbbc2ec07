"""Ensemble modes differ in kind (METHODS.md): weighted = fixed scales, normalized = min–max across candidates,
Borda = ranks."""
import torch

from rewards import Reward
from rewards.ensemble import EnsembleReward, borda, normalized_sum, weighted_sum

LVLM_CLIP_SCALES = [(1.0, 9.0), None]  # LVLM 1–9 -> (s − 1)/8; CLIP cosine as is


class _Scripted(Reward):
    """A black-box reward whose score for candidate j is scripted (the candidate's frames hold j)."""

    differentiable = False
    frame_local = False

    def __init__(self, scores, score_range=None, name="r"):
        self.scores, self.name = list(scores), name
        if score_range is not None:
            self.score_range = score_range

    def __call__(self, frames, frame_indices=None, num_frames=None):
        j = int(round(float(frames.flatten()[0])))
        return torch.full((frames.shape[0],), float(self.scores[j]))


def _cands(n):
    return [torch.full((2, 3, 4, 4), float(j)) for j in range(n)]


def test_weighted_and_normalized_pick_different_winners():
    # candidate 1 has the best LVLM score by a little, candidate 0 a much better CLIP score than 1
    lvlm, clip = [5.0, 5.5, 4.0], [0.30, 0.20, 0.32]
    R = torch.tensor([lvlm, clip])
    w = weighted_sum(R, [0.75, 0.25], LVLM_CLIP_SCALES)
    # by hand: 0.75 (s − 1)/8 + 0.25 c
    expected = [0.75 * (s - 1) / 8 + 0.25 * c for s, c in zip(lvlm, clip)]
    torch.testing.assert_close(w, torch.tensor(expected, dtype=torch.float64))
    n = normalized_sum(R)  # [2/3 + 5/6, 1 + 0, 0 + 1]
    torch.testing.assert_close(n, torch.tensor([1.5, 1.0, 1.0], dtype=torch.float64))
    assert int(w.argmax()) == 1 and int(n.argmax()) == 0
    # the same through EnsembleReward, whose members carry their own score ranges
    judge, cl = _Scripted(lvlm, (1.0, 9.0), "lvlm"), _Scripted(clip, None, "clip")
    cands = _cands(3)
    ew = EnsembleReward([judge, cl], mode="weighted", weights=[0.75, 0.25]).score_candidates(cands)
    en = EnsembleReward([judge, cl], mode="normalized").score_candidates(cands)
    torch.testing.assert_close(ew, w.float())
    assert int(ew.argmax()) == 1 and int(en.argmax()) == 0
    # even with equal weights the fixed scales and the min–max differ in kind
    R2 = torch.tensor([[5.0, 6.0, 4.0], clip])
    assert int(weighted_sum(R2, [0.5, 0.5], LVLM_CLIP_SCALES).argmax()) == 1 and int(normalized_sum(R2).argmax()) == 0


def test_weighted_does_not_depend_on_the_other_candidates_normalized_and_borda_do():
    R = torch.tensor([[5.0, 5.5, 4.0], [0.30, 0.20, 0.32]])
    more = torch.cat([R, torch.tensor([[9.0], [0.10]])], dim=1)  # a fourth candidate joins
    torch.testing.assert_close(weighted_sum(more, [0.75, 0.25], LVLM_CLIP_SCALES)[:3],
                               weighted_sum(R, [0.75, 0.25], LVLM_CLIP_SCALES))
    assert not torch.allclose(normalized_sum(more)[:3], normalized_sum(R))
    assert not torch.allclose(borda(more)[:3], borda(R))


def test_borda_ties_share_points_and_ranks_ignore_scale():
    R = torch.tensor([[3.0, 3.0, 1.0], [0.1, 0.9, 0.5]])
    # reward 1: candidates 0, 1 tie for best -> (3 + 2)/2 each, 2 gets 1; reward 2: ranks 1, 3, 2
    torch.testing.assert_close(borda(R), torch.tensor([3.5, 5.5, 3.0], dtype=torch.float64))
    torch.testing.assert_close(borda(R * torch.tensor([[100.0], [1e-3]])), borda(R))


def test_ensemble_call_uses_fixed_scales_per_frame():
    judge, cl = _Scripted([7.0], (1.0, 9.0), "lvlm"), _Scripted([0.25], None, "clip")
    frames = torch.zeros(3, 3, 4, 4)
    out = EnsembleReward([judge, cl], weights=[0.75, 0.25])(frames)
    torch.testing.assert_close(out, torch.full((3,), 0.75 * 6 / 8 + 0.25 * 0.25))
