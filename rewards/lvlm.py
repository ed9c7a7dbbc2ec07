"""LVLM judge (Free²Guide): a vision-language model rates how well the prompt describes the video, 1–9.

Four key frames are stitched into a 2×2 grid labelled "Frame 1".."Frame 4"; the model is asked to reason first,
then end with "Answer: <integer 1–9>". Parsing: the first integer after the last "Answer:" if there is one, else the
last integer in the reply; it must lie in 1–9; anything else scores 0 with a `warnings.warn`.

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
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import numpy as np
import torch

from .base import Reward, RewardError, broadcast_video_reward, check_frames

QUESTION = (
    'The image shows {n} key frames of one video in temporal order, labelled "Frame 1" to "Frame {n}". '
    'Does the following prompt describe this video: "{prompt}"? Consider the objects, their attributes, the motion '
    "across frames, the background and the style. First explain your reasoning briefly. Then, on the last line, "
    'write "Answer:" followed by a single integer from 1 (does not match at all) to 9 (matches perfectly).'
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


def parse_score(text: Optional[str]) -> int:
    """The judge's integer 1–9, or 0 (with a warning) when none can be parsed."""
    if not isinstance(text, str) or not text.strip():
        warnings.warn("lvlm: empty answer, scored 0", RuntimeWarning, stacklevel=2)
        return 0
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
        warnings.warn(f"lvlm: cannot parse a score 1-9 from the answer (...{snippet!r}), scored 0", RuntimeWarning, stacklevel=2)
        return 0
    return value


def _png_data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class LVLMJudge(Reward):
    """Video-level, non-differentiable reward: the judge's 1–9 score on every frame."""

    name = "lvlm"
    differentiable = False
    frame_local = False
    #: the fixed scale an ensemble's weighted sum maps to [0, 1]: (s − 1)/8
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
        question: str = QUESTION,
    ):
        if not isinstance(prompt, str) or not prompt.strip():
            raise RewardError("lvlm: prompt must be a non-empty string")
        if backend not in ("openai", "transformers"):
            raise RewardError(f"lvlm: backend must be 'openai' or 'transformers', got {backend!r}")
        if not 1 <= int(num_key_frames) <= 4:
            raise RewardError(f"lvlm: num_key_frames must be 1..4, got {num_key_frames}")
        self.prompt, self.backend = prompt, backend
        self.timeout, self.max_new_tokens = float(timeout), int(max_new_tokens)
        self.num_key_frames, self.max_workers = int(num_key_frames), int(max_workers)
        self.question = question
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

    def _ask_openai(self, image, n: int) -> str:
        import requests

        headers = {"Content-Type": "application/json"}
        if self._key.get():
            headers["Authorization"] = "Bearer " + self._key.get()
        body = {
            "model": self.model,
            "messages": [
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
            content = resp.json()["choices"][0]["message"]["content"]
        except Exception:
            content = None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RewardError(f"lvlm: {endpoint} returned no choices[0].message.content")
        return content

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

    def _ask_transformers(self, image, n: int) -> str:
        processor, model = self._load_hf()
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.question_text(n)}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return processor.batch_decode(new, skip_special_tokens=True)[0]

    def ask(self, frames: torch.Tensor) -> str:
        """The judge's raw answer for one video (key frames chosen from `frames` when more than 4 are given)."""
        n = min(frames.shape[0], self.num_key_frames)
        image = self.grid(frames)
        return self._ask_openai(image, n) if self.backend == "openai" else self._ask_transformers(image, n)

    # -- protocol -----------------------------------------------------------------------------------------------
    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "lvlm")
        answer = self.ask(frames)
        self.last_answers = [answer]
        score = float(parse_score(answer))
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
                answers = list(pool.map(self.ask, candidates))
        else:
            answers = [self.ask(c) for c in candidates]
        self.last_answers = answers
        return torch.tensor([float(parse_score(a)) for a in answers])

    def __repr__(self) -> str:
        return f"LVLMJudge(backend={self.backend!r}, model={self.model!r}, url={self.url!r})"
