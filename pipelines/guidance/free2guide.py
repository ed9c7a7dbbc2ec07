"""Free²Guide: gradient-free path-integral guidance (seed 003; METHODS.md "Free²Guide").

Per guided step: one CFG pass at x_t gives ε̂, x̂0 and the DDIM mean μ (η = 1); n candidates
x_{t−1}^{(j)} = μ + σ_t ξ_j; a batched lookahead pass at the timestep the next step evaluates (the next listed
timestep: under "linspace" or "trailing" spacing that is not DDIM's `t − T//N`) gives each candidate's x̂0^{(j)}; only the key
frames are decoded and scored by any reward (black-box welcome); the best candidate is kept (argmax, the α → 0
limit) or one is drawn with weights ∝ exp(r_j/α). The chosen candidate's lookahead ε̂ is reused as the next
step's ε̂, so guidance costs one batched lookahead per guided step and no gradients at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rewards.lvlm import key_frame_indices

from .base import Guidance, noise_left, param


@dataclass
class Free2GuideGuidance(Guidance):
    name: ClassVar[str] = "free2guide"
    needs_gradient: ClassVar[bool] = False
    summary: ClassVar[str] = "Free²Guide: sample candidates, score them with any reward, keep the best."

    num_candidates: int = param(5, min=1, max=32, step=1, help="n candidates per guided step")
    key_frames: int = param(4, min=1, max=64, step=1, help="frames decoded and scored per candidate")
    selection: str = param("argmax", choices=["argmax", "softmax"], help="keep the best, or sample ∝ exp(r/α)")
    temperature: float = param(1.0, min=1e-4, max=100.0, step=0.01, help="α for softmax selection")
    guided_fraction: float = param(0.1, min=0.0, max=1.0, step=0.01, help="share of the first steps guided")
    min_guided_steps: int = param(2, min=0, max=1000, step=1, help="at least this many guided steps")
    reuse_eps: bool = param(True, help="reuse the chosen lookahead's ε̂ as the next step's ε̂")
    candidate_batch: int = param(8, min=1, max=32, step=1, help="lookahead passes batched together")

    def start(self, ctx) -> None:
        total = len(ctx.timesteps)
        n = max(self.min_guided_steps, round(self.guided_fraction * total))
        self._guided = set(range(min(total - 1, n)))
        self._cached = None  # (timestep, x_t, ε̂) from the last lookahead

    @staticmethod
    def next_timestep(ctx, i: int, t_prev: int) -> int:
        """The timestep step `i + 1` evaluates the UNet at (the listed one), or DDIM's target after the last step."""
        return int(ctx.timesteps[i + 1]) if i + 1 < len(ctx.timesteps) else int(t_prev)

    def _eps_at(self, ctx, x, t):
        if self.reuse_eps and self._cached is not None:
            ct, cx, ce = self._cached
            self._cached = None
            if ct == t and cx.shape == x.shape and torch.equal(cx, x):
                return ce
        return ctx.eps(x, t)

    def step(self, ctx, x, t, i):
        with torch.no_grad():
            eps = self._eps_at(ctx, x, t)
            x0 = ctx.note_x0(ctx.x0(x, eps, t))
            t_prev = ctx.prev_t(t)
            if i not in self._guided or t_prev < 0:
                return ctx.ddim(x0, eps, t)
            eta = max(ctx.eta, 1.0)  # candidates need noise: η = 1 on guided steps (as in the paper)
            mean = ctx.ddim(x0, eps, t, noise=torch.zeros_like(x), eta=eta)
            sigma = ctx.sigma(t, eta)
            n = self.num_candidates
            cands = torch.cat([mean + sigma * ctx.randn_like(x) for _ in range(n)])  # (n, c, f, h, w)
            f = ctx.num_frames
            keys = key_frame_indices(f, self.key_frames)
            required = ctx.reward_fn.required_frames(f) if ctx.reward_fn is not None else None
            if required:
                keys = sorted(set(keys) | {int(k) for k in required})
            # The lookahead runs where the next step's UNet will run (its listed timestep), so its ε̂ is the one the
            # next step would compute and can be reused; DDIM's target `t − T//N` differs from it under "linspace"
            # and "trailing" spacing (25 steps, linspace: 999 → 959 while the next listed timestep is 957).
            t_look = self.next_timestep(ctx, i, t_prev)
            eps_all, videos = [], []
            for s in range(0, n, self.candidate_batch):
                chunk = cands[s : s + self.candidate_batch]
                e = ctx.eps(chunk, t_look)
                eps_all.append(e)
                x0c = ctx.x0(chunk, e, t_look)
                videos.extend(ctx.decode(x0c[j : j + 1], keys).clamp(0, 1) for j in range(x0c.shape[0]))
            eps_all = torch.cat(eps_all)
            scores = ctx.reward_fn.score_candidates(videos, keys, f).float()
            if self.selection == "argmax":
                j = int(torch.argmax(scores))
            else:
                probs = torch.softmax(scores / self.temperature, 0)
                j = int(torch.multinomial(probs, 1, generator=ctx.aux_generator))
            ctx.stats.update({"candidate_best": float(scores.max()), "candidate_mean": float(scores.mean())})
            chosen = cands[j : j + 1]
            # The step ÷ noise left: a candidate is the DDIM mean plus σ_t ξ, the sampler's own noise (σ_t ≤ √(1−ᾱ_{t−1}))
            ctx.stats["shift_ratio"] = float(sigma / noise_left(ctx, t_prev).clamp(min=1e-12))
            self._cached = (t_look, chosen, eps_all[j : j + 1])
            return chosen
