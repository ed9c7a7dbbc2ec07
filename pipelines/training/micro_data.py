"""Micro-world training data for the micro-model stages: seeded frames and clips rendered on the fly, and
`WorldLatents` (exact posterior-mean denoising targets)."""
from __future__ import annotations

import numpy as np
import torch

from ..micro import world

STAGES = ("clip", "vae", "unet", "motion", "joint", "export")  # a stage's position seeds its data stream


def stage_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, STAGES.index(stage), step])


def render_frames(rng: np.random.Generator, n: int, fixed: bool = False):
    """n single frames (n, 3, 32, 32) and their captions (random frame of a random training clip)."""
    frames, caps = [], []
    for _ in range(n):
        a = world.sample_attributes(rng, "train")
        v, meta = world.render_clip(a["colour"], a["shape"], a["motion"], a["background"], rng=rng)
        frames.append(v[int(rng.integers(v.shape[0]))])
        caps.append(meta["caption"])
    return torch.stack(frames), caps


def render_clips(rng: np.random.Generator, n: int, num_frames: int = world.NUM_FRAMES):
    attrs = [world.sample_attributes(rng, "train") for _ in range(n)]
    vids, caps, _ = world.render_batch(attrs, num_frames=num_frames, rng=rng)
    return vids, caps  # (n, f, 3, H, W)


class WorldLatents:
    """Exact posterior-mean targets for the micro world (`--x0-target posterior`).

    The VAE encodes frames one at a time, so a clip's latent is a stack of single-frame latents, and a frame is
    fixed by (colour, shape, background) and the object's top-left position. This holds the latent (posterior
    mean × scaling factor) of every such frame: 72 attribute triples × 23² positions. With
    `world.enumerate_trajectories` (every path a motion can take, with its probability) the denoising target
    E[z0 | z_t, caption] is then a finite sum: a softmax over the caption's paths of
    log p(path) − ‖z_t − √ᾱ z0(path)‖² / (2(1 − ᾱ)). Regressing on it instead of on the one sampled clip removes
    the sampling noise of the target; that noise is what hides the direction of travel at high noise levels, where
    one sampled clip says little about the average path for a caption.
    """

    def __init__(self, vae, device="cpu", chunk: int = 512):
        span = world.SIZE - world.OBJ
        self.side = span + 1
        self.keys = [(c, s, b) for c in world.COLOURS for s in world.SHAPES for b in world.BACKGROUNDS]
        self._key_index = {k: i for i, k in enumerate(self.keys)}
        positions = [(x, y) for y in range(self.side) for x in range(self.side)]  # index y * side + x
        lat = []
        with torch.no_grad():
            for key in self.keys:
                frames = torch.from_numpy(world.render_positions(*key, positions))
                parts = [vae.encode(frames[i:i + chunk].to(device) * 2 - 1).latent_dist.mean
                         for i in range(0, len(frames), chunk)]
                lat.append(torch.cat(parts) * vae.config.scaling_factor)
        self.z = torch.stack(lat).float()  # (keys, positions, c, h, w)
        self._paths: dict = {}
        self._probs: dict = {}

    def paths(self, motion: str, num_frames: int):
        """(frame-latent index per path and frame `(n, f)`, log-probability per path `(n,)`)."""
        k = (motion, num_frames)
        if k not in self._paths:
            pos, probs = world.enumerate_trajectories(motion, num_frames)
            idx = torch.from_numpy(pos[..., 1] * self.side + pos[..., 0])  # (n, f)
            self._paths[k] = (idx.to(self.z.device), torch.from_numpy(np.log(probs)).to(self.z.device))
            self._probs[k] = probs
        return self._paths[k]

    def frames_of(self, a: dict) -> torch.Tensor:
        """The table for one (colour, shape, background): `(positions, c, h, w)`."""
        return self.z[self._key_index[(a["colour"], a["shape"], a["background"])]]

    def clip(self, a: dict, num_frames: int, rng: np.random.Generator) -> torch.Tensor:
        """A clip's latent `(c, f, h, w)`: a path drawn with `world.trajectory`'s probabilities."""
        idx, _ = self.paths(a["motion"], num_frames)
        j = int(rng.choice(len(idx), p=self._probs[(a["motion"], num_frames)]))
        return self.frames_of(a)[idx[j]].permute(1, 0, 2, 3)

    def posterior_mean(self, a: dict, zt: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """E[z0 | z_t, caption attributes] for one clip `zt` `(c, f, h, w)`."""
        f = zt.shape[1]
        idx, logp = self.paths(a["motion"], f)
        zk = self.frames_of(a).flatten(1).double()  # (P, d)
        x = zt.detach().permute(1, 0, 2, 3).flatten(1).double()  # (f, d)
        ab = float(alpha_bar)
        # ‖x_k − √ᾱ z_p‖² up to terms that do not depend on the path
        d = -2 * ab ** 0.5 * (x @ zk.t()) + ab * (zk * zk).sum(1)[None]  # (f, P)
        logits = logp.double() - d.gather(1, idx.t()).t().sum(1) / (2 * (1 - ab))  # (n,)
        w = torch.softmax(logits, 0)
        weights = torch.zeros(f, zk.shape[0], dtype=torch.float64, device=zk.device)
        weights.scatter_add_(1, idx.t(), w[None].expand(f, -1).contiguous())  # (f, P)
        mean = (weights @ zk).view(f, *zt.shape[:1], *zt.shape[2:])
        return mean.permute(1, 0, 2, 3).to(zt.dtype)


__all__ = ["STAGES", "stage_rng", "render_frames", "render_clips", "WorldLatents"]
