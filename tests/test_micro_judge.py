"""The micro world's stand-in VLM judge, served over the OpenAI-compatible protocol that `rewards.lvlm` speaks."""
import os
import threading

import numpy as np
import pytest
import requests
import torch

from pipelines.evaluation import grid, micro, specs
from pipelines.micro import world
from pipelines.micro.judge import make_server
from rewards.lvlm import LVLMJudge


@pytest.fixture(scope="module")
def judge_url():
    server = make_server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _clip(seed):
    rng = np.random.default_rng(seed)
    a = world.sample_attributes(rng, "train")
    v, _ = world.render_clip(a["colour"], a["shape"], a["motion"], a["background"], rng=rng)
    return torch.as_tensor(v), a


@pytest.mark.parametrize("policy", ["binary", "score"])
def test_the_judge_says_yes_to_the_true_caption_and_no_to_a_wrong_colour_or_shape(judge_url, policy):
    for seed in range(4):
        video, a = _clip(seed)
        true = world.caption(a["colour"], a["shape"], a["motion"], a["background"])
        colour = next(c for c in world.COLOURS if c != a["colour"])
        shape = next(s for s in world.SHAPES if s != a["shape"])
        wrong = [world.caption(colour, a["shape"], a["motion"], a["background"]),
                 world.caption(a["colour"], shape, a["motion"], a["background"])]

        def score(prompt):
            j = LVLMJudge(prompt, backend="openai", url=judge_url, model="micro-judge", policy=policy)
            return float(j(video).mean())

        lo, hi = (0.0, 1.0) if policy == "binary" else (1.0, 9.0)
        s_true = score(true)
        assert s_true > lo + 0.5 * (hi - lo)
        assert all(score(w) < s_true for w in wrong)


def test_a_prompt_outside_the_world_gets_the_lowest_answer(judge_url):
    video, _ = _clip(0)
    j = LVLMJudge("a cat playing the piano", backend="openai", url=judge_url, model="micro-judge", policy="binary")
    assert float(j(video).mean()) < 1e-3


def test_a_bad_request_gets_a_400_naming_the_problem_and_the_server_keeps_running(judge_url):
    r = requests.post(judge_url + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "content parts" in r.json()["error"]["message"]
    assert requests.post(judge_url + "/nowhere", json={}).status_code == 404
    video, a = _clip(1)
    j = LVLMJudge(world.caption(a["colour"], a["shape"], a["motion"], a["background"]), backend="openai",
                  url=judge_url, model="micro-judge", policy="binary")
    assert float(j(video).mean()) > 0.5  # still answering


def test_a_method_spec_picks_the_t2v_reward():
    assert specs.parse_spec("free2guide[reward=clip+lvlm borda,num_candidates=4]") == (
        "free2guide", {"num_candidates": 4}, {"t2v_reward": "clip+lvlm borda"})
    assert specs.parse_spec("free2guide[reward=lvlm,policy=binary]")[2] == {"t2v_reward": "lvlm", "lvlm_policy": "binary"}
    with pytest.raises(ValueError, match="policy"):
        specs.parse_spec("free2guide[reward=lvlm,policy=maybe]")


def test_a_cell_builds_its_judge_with_the_spec_policy_and_leaves_the_environment_as_it_was(judge_url, monkeypatch):
    from pipelines.presets import load_preset

    monkeypatch.setenv("GVS_LVLM_URL", judge_url)
    monkeypatch.setenv("GVS_LVLM_MODEL", "micro-judge")
    monkeypatch.delenv("GVS_LVLM_POLICY", raising=False)
    import rewards.lvlm as lvlm

    policies = []
    init = lvlm.LVLMJudge.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        policies.append(self.policy)

    monkeypatch.setattr(lvlm.LVLMJudge, "__init__", spy)
    case = micro.cases("t2v-reward")[0]
    row = grid.run_cell(grid.Cell("t2v-reward", case, "free2guide[reward=lvlm,policy=binary,num_candidates=2]", 0, 1.0,
                              3, 8), load_preset("micro"))
    assert policies == ["binary"] and "GVS_LVLM_POLICY" not in os.environ
    assert "accuracy" in row["metrics"]
