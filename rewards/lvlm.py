"""LVLM judge (Free²Guide): a vision-language model rates how well the prompt describes the video.

Four key frames are stitched into a 2×2 grid labelled "Frame 1".."Frame 4"; a system prompt (`SYSTEM_PROMPT`) tells
the model the grid is one video's frames in time order. Two policies (Free²Guide's Table 4):
- ``"score"`` (default): reason, then end with "Answer: <integer 1–9>". Parsing: the integer following the last
  "Answer:" (with no "Answer:", the last integer of the reply); it must lie in 1–9; anything else gets the lowest
  score, 1, with a `warnings.warn`. Range (1, 9): an ensemble's weighted sum maps it to [0, 1] by (s − 1)/8.
- ``"binary"``: answer yes or no; the reward is the probability of "yes", `p(yes) / (p(yes) + p(no))`, from the
  token log-probabilities where the backend gives them (OpenAI-compatible `logprobs`/`top_logprobs` of the first
  answer token; the transformers backend's logits of the first generated token), else 1 for a "yes" reply and 0
  for anything else (a warning when it is neither yes nor no). Range (0, 1).
The policy is the `policy` argument, else env ``GVS_LVLM_POLICY``, else "score".

Backends:
- ``"openai"``: any OpenAI-compatible server. ``GVS_LVLM_URL`` (base URL, e.g. http://127.0.0.1:8000/v1),
  ``GVS_LVLM_MODEL``, ``GVS_LVLM_API_KEY`` (optional; never logged, never shown in repr or errors), or the
  ``url`` / ``model`` / ``api_key`` arguments. POST ``{url}/chat/completions`` with a base64 PNG ``image_url``.
- ``"transformers"``: a local VLM id or folder via ``AutoProcessor`` + ``AutoModelForImageTextToText``
  (loaded on first use).
"""
from __future__ import annotations

import base64
import io
import math
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import numpy as np
import torch

from .base import Reward, RewardError, broadcast_video_reward, check_frames

POLICIES = ("score", "binary")

SYSTEM_PROMPT = (
    "You judge generated videos. The image you receive is a grid of {n} key frames taken from ONE video, in time "
    'order, labelled "Frame 1" to "Frame {n}" (read left to right, then top to bottom: in a 2x2 grid Frame 1 is top '
    "left, Frame 2 top right, Frame 3 bottom left, Frame 4 bottom right). Judge the video as a whole: its objects, "
    "their attributes, the background, the style, and the motion from one frame to the next."
)

QUESTION = (
    'The image shows {n} key frames of one video in temporal order, labelled "Frame 1" to "Frame {n}". '
    'Does the following prompt describe this video: "{prompt}"? Consider the objects, their attributes, the motion '
    "across frames, the background and the style. First explain your reasoning briefly. Then, on the last line, "
    'write "Answer:" followed by a single integer from 1 (does not match at all) to 9 (matches perfectly).'
)

QUESTION_BINARY = (
    'The image shows {n} key frames of one video in temporal order, labelled "Frame 1" to "Frame {n}". '
    'Does the following prompt describe this video, including the motion across frames: "{prompt}"? '
    "Answer with a single word: yes or no."
)


class _Secret:
    """Holds the API key; never printed."""

    __slots__ = ("_v",)

    def __init__(self, v: Optional[str]):
        self._v = v or None

    def get(self) -> Optional[str]:
        return self._v

    def __repr__(self) -> str:
        return "<hidden>" if self._v else "None"

    __str__ = __repr__


def key_frame_indices(num_frames: int, k: int = 4) -> list[int]:
    """`k` evenly spaced frame indices (0, 5, 10, 15 for 16 frames)."""
    if num_frames <= 0:
        raise RewardError(f"lvlm: need at least one frame, got {num_frames}")
    return sorted(set(int(round(x)) for x in np.linspace(0, num_frames - 1, min(k, num_frames))))


def frames_to_grid(frames: torch.Tensor, min_tile: int = 256, labels: bool = True):
    """Up to 4 frames (k, 3, H, W) in [0, 1] -> a 2×2 PIL grid, each tile labelled "Frame i" (ImageDraw default
    font). Small frames are upscaled (nearest, integer factor) so the tile's shorter side is >= `min_tile`."""
    from PIL import Image, ImageDraw

    check_frames(frames, "lvlm")
    if frames.shape[0] > 4:
        raise RewardError(f"lvlm: a 2x2 grid holds at most 4 frames, got {frames.shape[0]}")
    arr = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    h, w = arr.shape[1:3]
    s = max(1, -(-min_tile // min(h, w)))
    th, tw = h * s, w * s
    grid = Image.new("RGB", (2 * tw, 2 * th), (0, 0, 0))
    draw = ImageDraw.Draw(grid)
    for i, a in enumerate(arr):
        tile = Image.fromarray(a).resize((tw, th), Image.NEAREST) if s > 1 else Image.fromarray(a)
        x, y = (i % 2) * tw, (i // 2) * th
        grid.paste(tile, (x, y))
        if labels:
            text = f"Frame {i + 1}"
            box = draw.textbbox((x + 4, y + 4), text)
            draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
            draw.text((x + 4, y + 4), text, fill=(255, 255, 255))
    return grid


_INT = re.compile(r"(?<![\d.])-?\d+(?![\d.])")


LOWEST_SCORE = 1


def parse_score(text: Optional[str]) -> int:
    """The judge's integer 1–9: the integer following the last "Answer:" (no "Answer:": the reply's last integer);
    unparsable or out of range -> the lowest score, 1, with a warning."""
    if not isinstance(text, str) or not text.strip():
        warnings.warn(f"lvlm: empty answer, scored {LOWEST_SCORE} (the lowest)", RuntimeWarning, stacklevel=2)
        return LOWEST_SCORE
    value = None
    pos = text.lower().rfind("answer:")
    if pos >= 0:
        m = _INT.search(text, pos + len("answer:"))
        if m:
            value = int(m.group())
    if value is None:
        ints = _INT.findall(text)
        if ints:
            value = int(ints[-1])
    if value is None or not 1 <= value <= 9:
        snippet = text.strip().replace("\n", " ")[-80:]
        warnings.warn(f"lvlm: cannot parse a score 1-9 from the answer (...{snippet!r}), scored {LOWEST_SCORE} "
                      "(the lowest)", RuntimeWarning, stacklevel=2)
        return LOWEST_SCORE
    return value


_YESNO = re.compile(r"^[\s\"'*_:.(\[]*(yes|no)(?![a-z])", re.IGNORECASE)


def yes_no(token: Optional[str]) -> Optional[str]:
    """"yes" / "no" when a token or reply starts with that word (any case, after spaces or quotes), else None."""
    if not isinstance(token, str):
        return None
    m = _YESNO.match(token)
    return m.group(1).lower() if m else None


def yes_probability(logprobs) -> Optional[float]:
    """`p(yes) / (p(yes) + p(no))` from the log-probabilities of one position, a {token: logprob} dict or
    (token, logprob) pairs (variants like " Yes" summed); None when neither word appears."""
    pairs = logprobs.items() if isinstance(logprobs, dict) else logprobs
    py = pn = 0.0
    for tok, lp in pairs:
        word = yes_no(tok)
        if word == "yes":
            py += math.exp(lp)
        elif word == "no":
            pn += math.exp(lp)
    if py + pn <= 0:
        return None
    return py / (py + pn)


def binary_from_text(text: Optional[str]) -> float:
    """1 for a reply starting with yes, 0 for no; anything else 0 with a warning."""
    word = yes_no(text.strip() if isinstance(text, str) else text)
    if word is None:
        snippet = (text or "").strip().replace("\n", " ")[:80]
        warnings.warn(f"lvlm: the answer is neither yes nor no ({snippet!r}), scored 0", RuntimeWarning, stacklevel=2)
        return 0.0
    return 1.0 if word == "yes" else 0.0


def _png_data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class LVLMJudge(Reward):
    """Video-level, non-differentiable reward on every frame: the judge's 1–9 score (policy "score") or its
    probability of "yes" (policy "binary")."""

    name = "lvlm"
    differentiable = False
    frame_local = False
    #: the fixed scale an ensemble's weighted sum maps to [0, 1] ((s − 1)/8 for "score"; (0, 1) for "binary")
    score_range = (1.0, 9.0)

    def __init__(
        self,
        prompt: str,
        backend: str = "openai",
        model: Optional[str] = None,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 120.0,
        max_new_tokens: int = 256,
        num_key_frames: int = 4,
        max_workers: int = 4,
        device=None,
        question: Optional[str] = None,
        policy: Optional[str] = None,
        system_prompt: str = SYSTEM_PROMPT,
        top_logprobs: int = 10,
    ):
        if not isinstance(prompt, str) or not prompt.strip():
            raise RewardError("lvlm: prompt must be a non-empty string")
        if backend not in ("openai", "transformers"):
            raise RewardError(f"lvlm: backend must be 'openai' or 'transformers', got {backend!r}")
        if not 1 <= int(num_key_frames) <= 4:
            raise RewardError(f"lvlm: num_key_frames must be 1..4, got {num_key_frames}")
        policy = policy or os.environ.get("GVS_LVLM_POLICY") or "score"
        if policy not in POLICIES:
            raise RewardError(f"lvlm: policy must be one of {POLICIES} (argument or GVS_LVLM_POLICY), got {policy!r}")
        self.policy = policy
        self.score_range = (1.0, 9.0) if policy == "score" else (0.0, 1.0)
        self.system_prompt = system_prompt
        self.top_logprobs = int(top_logprobs)
        self.prompt, self.backend = prompt, backend
        self.timeout, self.max_new_tokens = float(timeout), int(max_new_tokens)
        self.num_key_frames, self.max_workers = int(num_key_frames), int(max_workers)
        self.question = question or (QUESTION if policy == "score" else QUESTION_BINARY)
        self.device = device
        self.last_answers: list[str] = []
        if backend == "openai":
            self.url = (url or os.environ.get("GVS_LVLM_URL") or "").rstrip("/")
            self.model = model or os.environ.get("GVS_LVLM_MODEL")
            self._key = _Secret(api_key if api_key is not None else os.environ.get("GVS_LVLM_API_KEY"))
            if not self.url:
                raise RewardError("lvlm: no endpoint: set GVS_LVLM_URL (e.g. http://127.0.0.1:8000/v1) or pass url=")
            if not self.url.startswith(("http://", "https://")):
                raise RewardError(f"lvlm: GVS_LVLM_URL must start with http:// or https://, got {self.url!r}")
            if not self.model:
                raise RewardError("lvlm: no model name: set GVS_LVLM_MODEL or pass model=")
        else:
            if not model:
                raise RewardError("lvlm: the transformers backend needs model=<local VLM id or folder>")
            self.url, self.model, self._key = None, model, _Secret(None)
            self._hf = None

    # -- prompt / image -----------------------------------------------------------------------------------------
    def required_frames(self, num_frames: int) -> Optional[list[int]]:
        return key_frame_indices(num_frames, self.num_key_frames)

    def question_text(self, n: int) -> str:
        return self.question.format(n=n, prompt=self.prompt)

    def system_text(self, n: int) -> str:
        return self.system_prompt.format(n=n)

    def grid(self, frames: torch.Tensor, frame_indices=None, num_frames=None):
        check_frames(frames, "lvlm")
        f = frames.shape[0]
        if f > self.num_key_frames:
            frames = frames[key_frame_indices(f, self.num_key_frames)]
        return frames_to_grid(frames)

    # -- backends -----------------------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        key = self._key.get()
        return text.replace(key, "<hidden>") if key else text

    def _ask_openai(self, image, n: int):
        """(reply text, {token: logprob} of the first answer token or None)."""
        import requests

        headers = {"Content-Type": "application/json"}
        if self._key.get():
            headers["Authorization"] = "Bearer " + self._key.get()
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system_text(n)},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": self.question_text(n)},
                        {"type": "image_url", "image_url": {"url": _png_data_url(image)}},
                    ],
                }
            ],
            "max_tokens": self.max_new_tokens,
            "temperature": 0.0,
        }
        if self.policy == "binary":
            body.update(max_tokens=min(self.max_new_tokens, 4), logprobs=True, top_logprobs=self.top_logprobs)
        endpoint = self.url + "/chat/completions"
        err = None
        try:
            resp = requests.post(endpoint, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            err = f"lvlm: {endpoint} did not answer within {self.timeout:g} s"
        except requests.RequestException as exc:
            err = f"lvlm: cannot reach {endpoint} ({type(exc).__name__}); is the server running?"
        if err:  # raised outside the except block: no chained exception carrying the request headers
            raise RewardError(self._scrub(err))
        if resp.status_code >= 400:
            detail = self._scrub(resp.text[:300].replace("\n", " "))
            raise RewardError(f"lvlm: {endpoint} returned HTTP {resp.status_code}: {detail}")
        try:
            choice = resp.json()["choices"][0]
            content = choice["message"]["content"]
        except Exception:
            choice, content = {}, None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RewardError(f"lvlm: {endpoint} returned no choices[0].message.content")
        return content, _first_answer_logprobs(choice.get("logprobs") if isinstance(choice, dict) else None)

    def _load_hf(self):
        if self._hf is None:
            try:
                from transformers import AutoModelForImageTextToText, AutoProcessor

                processor = AutoProcessor.from_pretrained(self.model)
                model = AutoModelForImageTextToText.from_pretrained(self.model, dtype="auto")
            except Exception as exc:
                raise RewardError(
                    f"lvlm: cannot load the vision-language model {self.model!r} (needs internet once or a cached "
                    f"copy): {type(exc).__name__}: {exc}"
                ) from exc
            if self.device is not None:
                model.to(self.device)
            self._hf = (processor, model.eval())
        return self._hf

    def to(self, device=None, dtype=None):
        """The local judge's model goes to `device` (now, or when it loads). It keeps its own dtype: it reads PIL
        images of the key frames, not the pipeline's tensors, and its checkpoint's dtype ("auto") is what it was
        trained in. The OpenAI-compatible backend holds no model."""
        if device is not None:
            self.device = torch.device(device)
            if getattr(self, "_hf", None) is not None:
                self._hf[1].to(self.device)
        return self

    def placement(self):
        """The local judge's parameters (none for the endpoint backend)."""
        if getattr(self, "_hf", None) is None:
            return []
        return [(f"LVLMJudge.model.{n}", t) for n, t in self._hf[1].named_parameters()]

    def _chat_text(self, processor, n: int) -> str:
        user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.question_text(n)}]}
        system = {"role": "system", "content": [{"type": "text", "text": self.system_text(n)}]}
        try:
            return processor.apply_chat_template([system, user], add_generation_prompt=True)
        except Exception:  # some chat templates have no system role: put it before the question
            user["content"][1]["text"] = self.system_text(n) + "\n\n" + self.question_text(n)
            return processor.apply_chat_template([user], add_generation_prompt=True)

    def _ask_transformers(self, image, n: int):
        """(reply text, p(yes) from the first generated token's logits for "binary", else None)."""
        processor, model = self._load_hf()
        text = self._chat_text(processor, n)
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
        binary = self.policy == "binary"
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=min(self.max_new_tokens, 4) if binary else self.max_new_tokens,
                                 do_sample=False, output_scores=binary, return_dict_in_generate=True)
        seqs = out.sequences if hasattr(out, "sequences") else out
        new = seqs[:, inputs["input_ids"].shape[1]:]
        reply = processor.batch_decode(new, skip_special_tokens=True)[0]
        p_yes = None
        if binary and getattr(out, "scores", None):
            tok = getattr(processor, "tokenizer", processor)
            logp = torch.log_softmax(out.scores[0][0].float(), dim=-1)
            p_yes = yes_probability([(tok.decode([i]), float(logp[i])) for i in _yes_no_token_ids(tok, logp.shape[0])])
        return reply, p_yes

    def ask(self, frames: torch.Tensor) -> str:
        """The judge's raw answer for one video (key frames chosen from `frames` when more than 4 are given)."""
        return self._query(frames)[0]

    def _query(self, frames: torch.Tensor):
        n = min(frames.shape[0], self.num_key_frames)
        image = self.grid(frames)
        if self.backend == "openai":
            reply, logprobs = self._ask_openai(image, n)
            return reply, (yes_probability(logprobs) if logprobs else None)
        return self._ask_transformers(image, n)

    def judge(self, frames: torch.Tensor):
        """(reward value, raw answer) for one video under the policy."""
        reply, p_yes = self._query(frames)
        if self.policy == "score":
            return float(parse_score(reply)), reply
        return (float(p_yes) if p_yes is not None else binary_from_text(reply)), reply

    # -- protocol -----------------------------------------------------------------------------------------------
    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "lvlm")
        score, answer = self.judge(frames)
        self.last_answers = [answer]
        return broadcast_video_reward(torch.tensor(score, device=frames.device, dtype=torch.float32), frames.shape[0])

    def score_candidates(self, candidates, frame_indices=None, num_frames=None) -> torch.Tensor:
        """Scores of all candidates; HTTP requests run concurrently (`max_workers`)."""
        candidates = list(candidates)
        if not candidates:
            raise RewardError("lvlm: no candidates to score")
        for c in candidates:
            check_frames(c, "lvlm")
        if self.backend == "openai" and len(candidates) > 1 and self.max_workers > 1:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(candidates))) as pool:
                results = list(pool.map(self.judge, candidates))
        else:
            results = [self.judge(c) for c in candidates]
        self.last_answers = [a for _, a in results]
        return torch.tensor([v for v, _ in results])

    def __repr__(self) -> str:
        return f"LVLMJudge(backend={self.backend!r}, model={self.model!r}, url={self.url!r}, policy={self.policy!r})"


def _first_answer_logprobs(logprobs) -> Optional[dict]:
    """{token: logprob} at the first answer position of an OpenAI-compatible `choices[0].logprobs`: the first
    generated token whose alternatives (or itself) include yes/no, skipping leading whitespace tokens."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    for entry in content:
        if not isinstance(entry, dict):
            continue
        table = {}
        for alt in entry.get("top_logprobs") or []:
            if isinstance(alt, dict) and isinstance(alt.get("token"), str) and alt.get("logprob") is not None:
                table[alt["token"]] = float(alt["logprob"])
        if isinstance(entry.get("token"), str) and entry.get("logprob") is not None:
            table.setdefault(entry["token"], float(entry["logprob"]))
        if any(yes_no(t) for t in table):
            return table
        if str(entry.get("token", "")).strip():
            return None  # the first real token is neither yes nor no: no log-probability answer
    return None


def _yes_no_token_ids(tokenizer, vocab_size: int) -> list:
    """Ids of single tokens that spell yes / no (any case, with or without a leading space)."""
    ids = set()
    for word in ("yes", "Yes", "YES", "no", "No", "NO"):
        for text in (word, " " + word):
            enc = tokenizer.encode(text, add_special_tokens=False)
            if len(enc) == 1 and 0 <= int(enc[0]) < vocab_size:
                ids.add(int(enc[0]))
    return sorted(ids)
