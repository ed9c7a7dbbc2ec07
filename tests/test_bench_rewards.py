"""The bench measures the task's real reward classes (built by build_task on the pipeline's placement)."""
from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("task,cls", [("t2v", "TextAlignmentReward"), ("style", "StyleReward"),
                                      ("interpolate", "InterpolationReward"), ("target", "_TargetReward")])
def test_bench_rows_use_the_tasks_reward(task, cls, monkeypatch):
    from pipelines import bench

    rows = list(bench.run_bench(preset="tiny", methods=["freedom"], sizes=["4x16"], steps=2, device="cpu", task=task))
    assert rows[0]["ok"] and rows[0]["task"] == task and rows[0]["reward"] == cls


def test_bench_reward_is_called_by_the_guidance(monkeypatch):
    """The row's reward object is the one the guided steps evaluate (not a stand-in)."""
    from pipelines import bench
    from rewards.text import TextAlignmentReward

    calls = []
    orig = TextAlignmentReward.__call__
    monkeypatch.setattr(TextAlignmentReward, "__call__", lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    rows = list(bench.run_bench(preset="tiny", methods=["freedom"], sizes=["4x16"], steps=2, device="cpu"))
    assert rows[0]["reward"] == "TextAlignmentReward" and calls


def test_sd15_random_bench_rewards_have_the_real_shapes():
    """On sd15-random the bench's t2v reward is a random CLIP of ViT-B/16's shapes on the pipeline's placement."""
    from pipelines.bench import task_setup
    from tests.engine_helpers import tiny_pipe

    setup = task_setup("sd15-random", tiny_pipe(), "t2v", 2, 16)
    clip = setup.reward.clip
    vc = clip.model.config.vision_config
    assert (vc.image_size, vc.patch_size, vc.hidden_size, vc.num_hidden_layers) == (224, 16, 768, 12)
    assert clip.model.config.projection_dim == 512
    assert {t.dtype for _, t in setup.reward.placement() if t.is_floating_point()} == {torch.float32}
