"""Interpolation reward, ensembles, the LVLM judge against a fake OpenAI-compatible server, cheap `import rewards`."""
import logging
import subprocess
import sys
import warnings

import pytest
import torch

from rewards import Reward, RewardError
from rewards.ensemble import EnsembleReward, borda, borda_points, minmax, normalized_sum, weighted_sum
from rewards.interpolation import InterpolationReward
from rewards.lvlm import LVLMJudge, frames_to_grid, key_frame_indices, parse_score

from .fake_chat import ScriptedChatServer


# --------------------------------------------------------------------------- interpolation
def test_interpolation_reward():
    known = torch.rand(2, 3, 8, 8)
    r = InterpolationReward(known)
    assert r.required_frames(6) == [0, 5]
    frames = torch.rand(6, 3, 8, 8)
    frames[0] = known[0]
    out = r(frames)
    assert out.shape == (6,)
    assert float(out[0]) == 0.0 and (out[1:5] == 0).all() and float(out[5]) < 0
    torch.testing.assert_close(out[5], -((frames[5] - known[1]) ** 2).mean())
    # subsets: frame_indices tell which frames these are
    sub = r(frames[[0, 3, 5]], frame_indices=[0, 3, 5], num_frames=6)
    torch.testing.assert_close(sub, out[[0, 3, 5]])
    # known frames at another resolution are resized
    assert InterpolationReward(torch.rand(2, 3, 16, 16))(frames).shape == (6,)
    # gradients (reverse + forward mode)
    x = frames.clone().requires_grad_(True)
    r(x).sum().backward()
    assert x.grad[5].abs().sum() > 0 and x.grad[1:5].abs().sum() == 0
    _, t = torch.func.jvp(lambda y: r(y), (frames,), (torch.randn_like(frames),))
    assert t.shape == (6,) and t[1:5].abs().sum() == 0
    with pytest.raises(RewardError, match="known"):
        InterpolationReward(torch.rand(2, 1, 8, 8))
    with pytest.raises(RewardError, match="indices"):
        InterpolationReward(known, indices=[0])
    with pytest.raises(RewardError, match="outside"):
        InterpolationReward(known, indices=[0, 9])(frames)


# --------------------------------------------------------------------------- ensembles
class _Const(Reward):
    """Score = the frames' mean times a factor (differentiable) or a fixed list (not)."""

    def __init__(self, factor=1.0, differentiable=True, frame_local=True, name="c"):
        self.factor, self.differentiable, self.frame_local, self.name = factor, differentiable, frame_local, name

    def __call__(self, frames, frame_indices=None, num_frames=None):
        return self.factor * frames.flatten(1).mean(1)


def test_matrix_functions():
    R = torch.tensor([[1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0], [0.1, 0.5, 0.2, 0.9]])
    mm = minmax(R)
    torch.testing.assert_close(mm[1], torch.zeros(4, dtype=torch.float64))  # max = min -> 0
    torch.testing.assert_close(mm[0], torch.tensor([0.5, 1.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(normalized_sum(R), mm.sum(0))
    bp = borda_points(R)
    torch.testing.assert_close(bp[0], torch.tensor([2.0, 3.5, 3.5, 1.0], dtype=torch.float64))  # ties share
    torch.testing.assert_close(bp[1], torch.full((4,), 2.5, dtype=torch.float64))
    torch.testing.assert_close(bp[2], torch.tensor([1.0, 3.0, 2.0, 4.0], dtype=torch.float64))  # best gets n
    assert int(borda(R).argmax()) == 1
    # weighted: each reward on its fixed scale mapped to [0, 1] (here 1–9 and 0–1000); weights pick the winner
    W = torch.tensor([[9.0, 1.0, 5.0], [0.0, 1000.0, 400.0]])
    scales = [(1.0, 9.0), (0.0, 1000.0)]
    torch.testing.assert_close(weighted_sum(W, [0.75, 0.25], scales),
                               torch.tensor([0.75, 0.25, 0.475], dtype=torch.float64))
    assert int(weighted_sum(W, [0.25, 0.75], scales).argmax()) == 1
    with pytest.raises(RewardError, match="score range"):
        weighted_sum(W, [0.5, 0.5], [(1.0, 9.0)])
    with pytest.raises(RewardError, match="hi > lo"):
        weighted_sum(W, [0.5, 0.5], [(1.0, 9.0), (2.0, 2.0)])
    torch.testing.assert_close(normalized_sum(W), torch.tensor([1.0, 1.0, 0.9], dtype=torch.float64))
    with pytest.raises(RewardError, match="weights"):
        weighted_sum(W, [1.0])
    with pytest.raises(RewardError, match="NaN"):
        minmax(torch.tensor([[1.0, float("nan")]]))
    single = torch.tensor([[4.0]])
    assert float(normalized_sum(single)[0]) == 0.0 and float(borda(single)[0]) == 1.0


def test_ensemble_reward_protocol():
    a, b = _Const(1.0, name="a"), _Const(-2.0, name="b")
    e = EnsembleReward([a, b], mode="weighted", weights=[1.0, 0.5])
    frames = torch.rand(3, 3, 4, 4)
    torch.testing.assert_close(e(frames), a(frames) + 0.5 * b(frames))
    assert e.differentiable and e.frame_local and e.required_frames(4) is None
    x = frames.clone().requires_grad_(True)
    e(x).sum().backward()
    assert x.grad is not None
    cands = [torch.full((2, 3, 4, 4), v) for v in (0.2, 0.8, 0.5)]
    # a prefers bright, b dark: borda ties everything, weighted follows the heavier weight
    assert torch.allclose(EnsembleReward([a, b], mode="borda").score_candidates(cands), torch.full((3,), 4.0))
    assert int(EnsembleReward([a, b], weights=[0.75, 0.25]).score_candidates(cands).argmax()) == 1
    assert int(EnsembleReward([a, b], weights=[0.25, 0.75]).score_candidates(cands).argmax()) == 0
    nd = EnsembleReward([a, _Const(differentiable=False, frame_local=False)], mode="normalized")
    assert not nd.differentiable and not nd.frame_local
    interp = InterpolationReward(torch.rand(2, 3, 4, 4))
    assert EnsembleReward([a, interp]).required_frames(5) == [0, 4]
    with pytest.raises(RewardError, match="mode"):
        EnsembleReward([a], mode="max")
    with pytest.raises(RewardError, match="at least one"):
        EnsembleReward([])


# --------------------------------------------------------------------------- LVLM judge
SECRET = "sk-test-SECRET-1234567890"


class _FakeServer(ScriptedChatServer):
    """OpenAI-compatible /chat/completions returning scripted answers (an int answer is an HTTP error status)."""

    def __init__(self, answers):
        self.answers, self.requests = list(answers), []
        super().__init__(self._reply)

    def _reply(self, path, headers, body):
        self.requests.append({"path": path, "auth": headers.get("Authorization"), "body": body})
        ans = self.answers.pop(0) if self.answers else "Answer: 5"
        if isinstance(ans, int):
            return ans, {"error": "scripted failure"}
        return 200, {"choices": [{"message": {"role": "assistant", "content": ans}}]}


def test_parse_score():
    assert parse_score("The circle is red and moves left.\nAnswer: 7") == 7
    assert parse_score("Frame 1 shows... Frame 4 shows... so 8") == 8
    assert parse_score("answer: 6/9") == 6
    with pytest.warns(RuntimeWarning, match="scored 1 \\(the lowest\\)"):
        assert parse_score("I cannot tell.") == 1
    with pytest.warns(RuntimeWarning):
        assert parse_score("Answer: 12") == 1
    with pytest.warns(RuntimeWarning):
        assert parse_score("") == 1


def test_grid_and_key_frames():
    assert key_frame_indices(16) == [0, 5, 10, 15]
    assert key_frame_indices(3) == [0, 1, 2]
    img = frames_to_grid(torch.rand(4, 3, 32, 32))
    assert img.size == (512, 512)  # 32 px tiles upscaled to 256
    with pytest.raises(RewardError):
        frames_to_grid(torch.rand(5, 3, 8, 8))


def test_lvlm_judge_openai_backend(monkeypatch, caplog):
    answers = ["Red circle, moving right.\nAnswer: 8", "no idea", "Answer: 3", "Answer: 9"]
    caplog.set_level(logging.DEBUG)
    with _FakeServer(answers) as srv:
        monkeypatch.setenv("GVS_LVLM_URL", srv.url)
        monkeypatch.setenv("GVS_LVLM_MODEL", "fake-vlm")
        monkeypatch.setenv("GVS_LVLM_API_KEY", SECRET)
        judge = LVLMJudge("a red circle moving left to right")
        assert not judge.differentiable and judge.required_frames(16) == [0, 5, 10, 15]
        out = judge(torch.rand(16, 3, 32, 32))
        assert out.shape == (16,) and (out == 8).all()
        req = srv.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {SECRET}"
        system, user = req["body"]["messages"]
        assert system["role"] == "system" and "ONE video" in system["content"] and "time order" in system["content"]
        content = user["content"]
        assert req["body"]["model"] == "fake-vlm"
        assert any(p["type"] == "image_url" and p["image_url"]["url"].startswith("data:image/png;base64,") for p in content)
        text = next(p["text"] for p in content if p["type"] == "text")
        assert "a red circle moving left to right" in text and "Answer:" in text and "Frame 1" in text
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            scores = judge.score_candidates([torch.rand(4, 3, 8, 8) for _ in range(3)])
        assert sorted(scores.tolist()) == [1.0, 3.0, 9.0]  # concurrent: order of answers may vary
        assert any("scored 1 (the lowest)" in str(x.message) for x in w)
        assert SECRET not in repr(judge) and SECRET not in str(vars(judge))
    assert SECRET not in caplog.text


def test_lvlm_judge_errors_never_show_the_key(monkeypatch):
    monkeypatch.setenv("GVS_LVLM_API_KEY", SECRET)
    monkeypatch.setenv("GVS_LVLM_MODEL", "fake-vlm")
    monkeypatch.delenv("GVS_LVLM_URL", raising=False)
    with pytest.raises(RewardError, match="GVS_LVLM_URL"):
        LVLMJudge("a cat")
    with _FakeServer([500, 401]) as srv:
        judge = LVLMJudge("a cat", url=srv.url)
        for code in (500, 401):
            with pytest.raises(RewardError, match=f"HTTP {code}") as exc:
                judge(torch.rand(4, 3, 8, 8))
            assert SECRET not in str(exc.value) and exc.value.__cause__ is None and exc.value.__context__ is None
        port_url = srv.url
    # server gone: connection error
    judge = LVLMJudge("a cat", url=port_url, timeout=2)
    with pytest.raises(RewardError, match="cannot reach") as exc:
        judge(torch.rand(4, 3, 8, 8))
    assert SECRET not in str(exc.value) and exc.value.__context__ is None
    with pytest.raises(RewardError, match="prompt"):
        LVLMJudge("", url=port_url)
    with pytest.raises(RewardError, match="backend"):
        LVLMJudge("a cat", backend="magic")
    with pytest.raises(RewardError, match="model="):
        LVLMJudge("a cat", backend="transformers")


# --------------------------------------------------------------------------- package
def test_import_rewards_is_cheap():
    code = (
        "import sys, rewards; "
        "assert 'transformers' not in sys.modules and 'PIL' not in sys.modules and 'scipy' not in sys.modules; "
        "from rewards import EnsembleReward, InterpolationReward; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout
