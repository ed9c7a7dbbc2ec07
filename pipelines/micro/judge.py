"""A black-box video judge for the micro world, served like a vision-language model.

Free²Guide's LVLM judge (`rewards.lvlm.LVLMJudge`) asks an OpenAI-compatible server whether a prompt describes a
grid of four key frames and reads a 1–9 score ("score" policy) or the probability of "yes" ("binary" policy, from
the first answer token's log-probabilities). No vision-language model can be downloaded here, so this module is a
stand-in with the same interface, for the micro world: the ensemble and policy tables of `bench/EVALUATE.md` run the
real client code end to end against it.

How it judges: it reads the quoted prompt from the question and the four tiles from the grid image (labels and
all, as a VLM would see them), and asks the micro CLIP, zero-shot, which colour, shape and background each tile
shows: for each attribute, a softmax over the world's values of that attribute (the other words of the prompt kept),
at CLIP's logit scale, averaged over the tiles. p(yes) is the product of the three probabilities of the prompt's
values. Like many real VLMs it cannot judge motion from four frames, and it ignores it. It is **not** the exact
detector (`pipelines.micro.detector`, which the tables measure with): a different model reading a different image.

    python -m pipelines.micro.judge --port 8765          # then GVS_LVLM_URL=http://127.0.0.1:8765/v1
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import numpy as np
import torch

from . import world

MODEL_NAME = "micro-judge"
_QUOTED = re.compile(r'"([^"]+)"')
_ATTRIBUTES = (("colour", tuple(world.COLOURS)), ("shape", world.SHAPES), ("background", world.BACKGROUNDS))


class MicroJudge:
    """p(yes) that a world caption describes a 2×2 grid of key frames, from the micro CLIP (zero-shot)."""

    def __init__(self, clip=None):
        from rewards.clip import load_clip

        self.clip = clip if clip is not None else load_clip("micro")
        self.logit_scale = float(self.clip.model.logit_scale.exp()) if hasattr(self.clip.model, "logit_scale") else 100.0
        self._lock = threading.Lock()
        self._text_cache: dict[str, list[torch.Tensor]] = {}

    @staticmethod
    def tiles(grid_image, size: int = world.SIZE) -> torch.Tensor:
        """The 2×2 grid's tiles as (4, 3, size, size) in [0, 1] (each tile downscaled by area averaging)."""
        from PIL import Image

        img = grid_image.convert("RGB")
        w, h = img.size
        tw, th = w // 2, h // 2
        out = []
        for i in range(4):
            x, y = (i % 2) * tw, (i // 2) * th
            tile = img.crop((x, y, x + tw, y + th)).resize((size, size), Image.BOX)
            out.append(torch.from_numpy(np.asarray(tile, np.float32) / 255.0).permute(2, 0, 1))
        return torch.stack(out)

    def p_yes(self, prompt: str, grid_image) -> float:
        target = world.parse_caption(prompt)
        if target is None:  # not a world caption: the judge cannot say yes
            return 0.0
        frames = self.tiles(grid_image)
        with self._lock, torch.no_grad():
            img = self.clip.encode_images(frames).float()  # (4, d), normalised
            p = 1.0
            for (name, values), txt in zip(_ATTRIBUTES, self._alternatives(prompt, target)):
                probs = torch.softmax(self.logit_scale * img @ txt.T, dim=-1).mean(0)
                p *= float(probs[list(values).index(target[name])])
        return p

    def _alternatives(self, prompt: str, target: dict) -> list[torch.Tensor]:
        """Per attribute, the text embeddings of the prompt with each of that attribute's values (cached per
        prompt: Free²Guide asks about the same prompt for every candidate of every step)."""
        if prompt not in self._text_cache:
            if len(self._text_cache) >= 1024:  # a long-running server: keep the cache bounded
                self._text_cache.clear()
            words = {k: target[k] for k in ("colour", "shape", "motion", "background")}
            self._text_cache[prompt] = [
                self.clip.encode_text([world.caption(**{**words, name: v}) for v in values]).float()
                for name, values in _ATTRIBUTES]
        return self._text_cache[prompt]


def _answer(judge: MicroJudge, body: dict) -> dict:
    """An OpenAI-compatible chat completion for `body` (a binary question gets yes/no with top log-probabilities;
    any other question gets a short reason and "Answer: <1–9>")."""
    from PIL import Image

    messages = body.get("messages") or []
    user = next((m for m in messages if m.get("role") == "user"), None)
    if user is None or not isinstance(user.get("content"), list):
        raise ValueError("messages: no user message with content parts")
    text = " ".join(p.get("text", "") for p in user["content"] if p.get("type") == "text")
    urls = [p["image_url"]["url"] for p in user["content"] if p.get("type") == "image_url"]
    if not urls or "," not in urls[0]:
        raise ValueError("messages: no image_url data URL")
    quoted = _QUOTED.findall(text)  # the prompt, and other quoted words ("Frame 1", "Answer:")
    captions = [q for q in quoted if world.parse_caption(q) is not None]
    prompt = captions[-1] if captions else max(quoted, key=len, default="")
    image = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    p = min(max(judge.p_yes(prompt, image), 1e-6), 1 - 1e-6)
    binary = "yes or no" in text.lower()
    if binary:
        word = "Yes" if p >= 0.5 else "No"
        top = [{"token": "Yes", "logprob": math.log(p)}, {"token": "No", "logprob": math.log(1 - p)}]
        top.sort(key=lambda d: -d["logprob"])
        logprobs = {"content": [{"token": word, "logprob": math.log(p if word == "Yes" else 1 - p),
                                 "top_logprobs": top}]}
        content = word
    else:
        score = int(round(1 + 8 * p))
        content = f"Colour, shape and background match with probability {p:.2f}.\nAnswer: {score}"
        logprobs = None
    return {"object": "chat.completion", "model": body.get("model") or MODEL_NAME,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": logprobs, "finish_reason": "stop"}]}


def make_server(port: int = 0, host: str = "127.0.0.1", judge: Optional[MicroJudge] = None) -> ThreadingHTTPServer:
    """A server answering POST /v1/chat/completions (port 0: any free port; `server.server_address[1]`)."""
    judge = judge or MicroJudge()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                return self._send(200, _answer(judge, body))
            except Exception as e:  # a bad request gets a 400 naming the problem; the server keeps running
                return self._send(400, {"error": {"message": f"{type(e).__name__}: {e}"}})

        def _send(self, code: int, obj: dict):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.micro.judge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    server = make_server(a.port, a.host)
    print(f"micro judge on http://{a.host}:{server.server_address[1]}/v1 (model {MODEL_NAME})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
