"""LVLM judge policies (score 1–9, binary yes/no) against a fake OpenAI-compatible server on 127.0.0.1 and a tiny
fake transformers backend; the system prompt says the grid is one video's frames in time order."""
import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from rewards import RewardError
from rewards.ensemble import EnsembleReward
from rewards.lvlm import LVLMJudge, yes_no, yes_probability

from .fake_chat import ScriptedChatServer


class _Server(ScriptedChatServer):
    """/v1/chat/completions answering scripted `choices[0]` objects; at most `limit` requests are served."""

    def __init__(self, choices, limit=20):
        self.choices, self.requests, self.limit = list(choices), [], limit
        super().__init__(self._reply)

    def _reply(self, path, headers, body):
        self.requests.append(body)
        if len(self.requests) > self.limit or not self.choices:
            return 429, None
        return 200, {"choices": [self.choices.pop(0)]}


def _msg(text, logprobs=None):
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return choice


def _tok(token, p, alts):
    return {"token": token, "logprob": math.log(p), "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in alts]}


FRAMES = torch.rand(16, 3, 16, 16)


def test_yes_no_words():
    assert [yes_no(t) for t in ("Yes", " yes", "NO", "\n no.", '"Yes"', "Now", "yesterday", "", None)] == [
        "yes", "yes", "no", "no", "yes", None, None, None, None]
    assert yes_probability({"Yes": math.log(0.6), " yes": math.log(0.1), "No": math.log(0.1), "Maybe": 0.0}) == \
        pytest.approx(0.7 / 0.8)
    assert yes_probability({"Maybe": -0.1}) is None


def test_binary_policy_uses_openai_logprobs():
    first = _tok("Yes", 0.6, [("Yes", 0.6), ("No", 0.25), (" yes", 0.1), ("Maybe", 0.05)])
    newline_first = [_tok("\n", 0.9, [("\n", 0.9)]), _tok("No", 0.8, [("No", 0.8), ("Yes", 0.2)])]
    with _Server([_msg("Yes", [first]), _msg("\nNo", newline_first)]) as srv:
        judge = LVLMJudge("a red circle moving left", url=srv.url, model="fake", policy="binary", timeout=10)
        assert judge.score_range == (0.0, 1.0)
        out = judge(FRAMES)
        assert out.shape == (16,) and float(out[0]) == pytest.approx(0.7 / 0.95, rel=1e-6)
        assert float(judge(FRAMES)[0]) == pytest.approx(0.2, rel=1e-6)  # skips the leading newline token
        body = srv.requests[0]
        assert body["logprobs"] is True and body["top_logprobs"] == 10 and body["max_tokens"] <= 4
        system, user = body["messages"]
        assert system["role"] == "system"
        assert "ONE video" in system["content"] and "time order" in system["content"] and "Frame 4" in system["content"]
        text = next(p["text"] for p in user["content"] if p["type"] == "text")
        assert "yes or no" in text and "a red circle moving left" in text
    assert len(srv.requests) == 2


def test_binary_policy_without_logprobs_is_one_or_zero():
    with _Server([_msg("Yes, it matches."), _msg("No."), _msg("It is hard to say.")]) as srv:
        judge = LVLMJudge("a cat", url=srv.url, model="fake", policy="binary", timeout=10, max_workers=1)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            scores = judge.score_candidates([FRAMES[:4]] * 3)
        assert scores.tolist() == [1.0, 0.0, 0.0]
        assert any("neither yes nor no" in str(x.message) for x in w)
        assert judge.last_answers[0] == "Yes, it matches."


def test_score_policy_parses_and_falls_back_to_the_lowest():
    with _Server([_msg("Frame 1 shows a cat... Frame 4 too.\nAnswer: 7"), _msg("I refuse.")]) as srv:
        judge = LVLMJudge("a cat", url=srv.url, model="fake", timeout=10)
        assert judge.policy == "score" and judge.score_range == (1.0, 9.0)
        assert float(judge(FRAMES)[0]) == 7.0
        with pytest.warns(RuntimeWarning, match="lowest"):
            assert float(judge(FRAMES)[0]) == 1.0
        assert "logprobs" not in srv.requests[0]
        assert srv.requests[0]["messages"][0]["role"] == "system"


def test_policy_from_env_and_bad_policy(monkeypatch):
    monkeypatch.setenv("GVS_LVLM_POLICY", "binary")
    assert LVLMJudge("a cat", url="http://127.0.0.1:9/v1", model="m").policy == "binary"
    monkeypatch.setenv("GVS_LVLM_POLICY", "maybe")
    with pytest.raises(RewardError, match="policy"):
        LVLMJudge("a cat", url="http://127.0.0.1:9/v1", model="m")


def test_weighted_ensemble_maps_the_binary_judge_as_is():
    with _Server([_msg("Yes", [_tok("Yes", 0.5, [("Yes", 0.5), ("No", 0.5)])])]) as srv:
        judge = LVLMJudge("a cat", url=srv.url, model="fake", policy="binary", timeout=10)
        e = EnsembleReward([judge], weights=[1.0])
        assert float(e.score_candidates([FRAMES[:4]])[0]) == pytest.approx(0.5)


# ---------------------------------------------------------------------------- fake transformers backend
VOCAB = ["<pad>", "<img>", "Yes", " yes", "No", " no", "Answer:", " 6", "Maybe", "<q>"]


class _FakeTokenizer:
    def encode(self, text, add_special_tokens=False):
        return [VOCAB.index(text)] if text in VOCAB else [0, 0]

    def decode(self, ids):
        return "".join(VOCAB[int(i)] for i in ids)


class _FakeProcessor:
    def __init__(self, system_role=True):
        self.tokenizer, self.system_role, self.messages = _FakeTokenizer(), system_role, None

    def apply_chat_template(self, messages, add_generation_prompt=True):
        if not self.system_role and any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        self.messages = messages
        return "chat"

    def __call__(self, text, images, return_tensors):
        class _Batch(dict):
            def to(self, device):
                return self
        return _Batch(input_ids=torch.tensor([[9, 1, 1]]))

    def batch_decode(self, seqs, skip_special_tokens=True):
        return [self.tokenizer.decode(s) for s in seqs]


class _FakeVLM:
    device = torch.device("cpu")

    def __init__(self, logits, reply_ids):
        self.logits, self.reply_ids, self.calls = logits, reply_ids, []

    def generate(self, input_ids, max_new_tokens, do_sample, output_scores, return_dict_in_generate):
        self.calls.append(dict(max_new_tokens=max_new_tokens, output_scores=output_scores))
        seq = torch.cat([input_ids, torch.tensor([self.reply_ids])], 1)
        return SimpleNamespace(sequences=seq, scores=(self.logits[None],) if output_scores else None)


def _hf_judge(policy, logits, reply, system_role=True):
    judge = LVLMJudge("a cat", backend="transformers", model="fake-local-vlm", policy=policy)
    proc, model = _FakeProcessor(system_role), _FakeVLM(logits, reply)
    judge._hf = (proc, model)
    return judge, proc, model


def test_transformers_binary_policy_reads_the_first_token_logits():
    logits = torch.tensor([0.0, 0.0, 2.0, 1.0, 1.5, -1.0, 0.0, 0.0, 3.0, 0.0])
    judge, proc, model = _hf_judge("binary", logits, [8])  # greedy reply "Maybe": logits still give p(yes)
    p = torch.softmax(logits, 0)
    expected = float((p[2] + p[3]) / (p[2] + p[3] + p[4] + p[5]))
    assert float(judge(FRAMES)[0]) == pytest.approx(expected, rel=1e-5)
    assert model.calls[0]["output_scores"] is True and model.calls[0]["max_new_tokens"] <= 4
    assert proc.messages[0]["role"] == "system" and "time order" in proc.messages[0]["content"][0]["text"]


def test_transformers_score_policy_and_system_role_fallback():
    judge, proc, model = _hf_judge("score", torch.zeros(10), [6, 7], system_role=False)
    assert float(judge(FRAMES)[0]) == 6.0  # "Answer: 6"
    (user,) = proc.messages
    text = user["content"][1]["text"]
    assert text.startswith("You judge generated videos") and "Answer:" in text  # system prompt moved into the turn
    assert model.calls[0]["output_scores"] is False
