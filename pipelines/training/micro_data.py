"""Micro-world training data for the micro-model stages: seeded frames and clips rendered on the fly (world 1, or
world 2 with attribute-dropout captions), and `WorldLatents` (exact posterior-mean denoising targets, world 1)."""
from __future__ import annotations

import numpy as np
import torch

from ..micro import world

STAGES = ("clip", "vae", "unet", "motion", "joint", "export")  # a stage's position seeds its data stream


def stage_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, STAGES.index(stage), step])


def render_frames(rng: np.random.Generator, n: int, fixed: bool = False, world_version=1, dropout: float = 0.0,
                  with_attrs: bool = False):
    """n single frames (n, 3, 32, 32) and their captions (random frame of a random training clip) of world
    `world_version` (1 or 2; world 2's captions leave each attribute out with probability `dropout`); `with_attrs`:
    also the attribute dicts."""
    w = world.get_world(world_version)
    frames, caps, attrs = [], [], []
    for _ in range(n):
        a = w.sample(rng, "train", dropout)
        v, meta = world.render_clip(a["colour"], a["shape"], a["motion"], a["background"], rng=rng)
        frames.append(v[int(rng.integers(v.shape[0]))])
        caps.append(w.caption_of(a))
        attrs.append(a)
    return (torch.stack(frames), caps, attrs) if with_attrs else (torch.stack(frames), caps)


def render_clips(rng: np.random.Generator, n: int, num_frames: int = world.NUM_FRAMES, world_version=1,
                 dropout: float = 0.0):
    """n clips (n, f, 3, H, W) and their captions, of world `world_version` (as `render_frames`)."""
    w = world.get_world(world_version)
    attrs = [w.sample(rng, "train", dropout) for _ in range(n)]
    vids, _, _ = world.render_batch(attrs, num_frames=num_frames, rng=rng)
    return vids, [w.caption_of(a) for a in attrs]  # (n, f, 3, H, W)


def same_content(attrs: list[dict], world_version=1) -> torch.Tensor:
    """(n, n) float: 1 where caption j fits frame i, up to the motion words (a frame cannot show motion). World 1:
    the same colour, shape and background; world 2: every attribute caption j names (but motion) is frame i's."""
    w = world.get_world(world_version)
    if w.version == 1:
        keys = [(a["colour"], a["shape"], a["background"]) for a in attrs]
        return torch.tensor([[a == b for b in keys] for a in keys], dtype=torch.float32)
    from ..micro.looks import look_matches

    named = [world.named_target(a) for a in attrs]

    def fits(a, t):
        return (all(a[k] == t[k] for k in ("colour", "shape") if k in t)
                and ("look" not in t or look_matches(a["background"], t["look"])))

    return torch.tensor([[fits(a, t) for t in named] for a in attrs], dtype=torch.float32)


def table_bytes(world_version=1, latent_floats: int = 4 * 8 * 8) -> tuple[int, int]:
    """(keys, bytes) of `WorldLatents`' table for a world: every (colour, shape, background) x every object position,
    one float32 frame latent each."""
    w = world.get_world(world_version)
    keys = len(world.COLOURS) * len(world.SHAPES) * len(w.backgrounds)
    side = world.SIZE - world.OBJ + 1
    return keys, keys * side * side * latent_floats * 4


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

    Scaling: the table is (colours x shapes x backgrounds) x 23² frame latents (`table_bytes`): 72 keys and 39 MB for
    world 1's 4 backgrounds; world 2's 642 looks make 11 556 keys, 6.3 GB and 6.1 M VAE encodings, and its dropout
    captions make the posterior a sum over every attribute a caption leaves out (up to every key x every path). So
    the table is world 1 only; world-2 training regresses on the sampled clip (`--x0-target sample`).
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


__all__ = ["STAGES", "stage_rng", "render_frames", "render_clips", "same_content", "table_bytes", "WorldLatents"]
