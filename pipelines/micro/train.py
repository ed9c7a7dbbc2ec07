"""Train the micro models on the micro world (AnimateDiff-style recipe), CPU-friendly.

Stages (each resumable, each with its own `--steps`):
  clip    micro CLIP (`transformers.CLIPModel`), contrastive frames <-> captions; its text tower becomes the
          video model's text encoder (as SD uses CLIP text).
  vae     AutoencoderKL, 32x32 RGB -> 4x8x8 latents (recon + small KL); scaling_factor set for unit-std latents.
  unet    image UNet2DConditionModel on single frames, eps prediction, frozen CLIP text, 10 % empty captions (CFG).
  motion  UNetMotionModel.from_unet2d(unet, MotionAdapter), 2D params frozen, motion modules trained on clips.
  joint   optional short phase with every UNet parameter trainable (text still frozen) on clips.
  export  write the diffusers layout to --out (model_index.json, scheduler, unet, ...).

Data are rendered on the fly from fixed seeds (a stage's step k always sees the same batch), held-out
(colour, shape, motion) combinations are never rendered. Logs: <work>/logs/<stage>.jsonl; checkpoints:
<work>/ckpt/<stage>.pt (`--resume` continues from them).

    python -m pipelines.micro.train --stages clip,vae,unet,motion,joint,export --out assets/micro
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import world
from .world import VOCABULARY

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
STAGES = ("clip", "vae", "unet", "motion", "joint", "export")

# Model sizes. "default" is what ships in assets/micro; "tiny" is for tests.
SIZES = {
    "default": dict(
        clip_hidden=128, clip_layers=3, clip_heads=4, clip_proj=64,
        vae_channels=(16, 32, 64), vae_groups=8,
        unet_channels=(48, 96), unet_layers=1, unet_heads=4, unet_groups=16,
        motion_heads=4,
        batch_clip=64, batch_vae=32, batch_unet=32, batch_motion=4,
        lr_clip=5e-4, lr_vae=1e-3, lr_unet=5e-4, lr_motion=5e-4, lr_joint=2e-4,
    ),
    "tiny": dict(
        clip_hidden=32, clip_layers=3, clip_heads=2, clip_proj=16,
        vae_channels=(8, 16, 16), vae_groups=4,
        unet_channels=(16, 32), unet_layers=1, unet_heads=2, unet_groups=4,
        motion_heads=2,
        batch_clip=16, batch_vae=8, batch_unet=8, batch_motion=2,
        lr_clip=2e-3, lr_vae=2e-3, lr_unet=1e-3, lr_motion=1e-3, lr_joint=1e-3,
    ),
}
AUX_CLASSES = {"motion": list(world.MOTIONS), "colour": list(world.COLOURS), "shape": list(world.SHAPES),
               "background": list(world.BACKGROUNDS)}
AUX_WEIGHTS = {"motion": 1.0, "colour": 0.25, "shape": 0.25, "background": 0.25}
DEFAULT_STEPS = {"clip": 800, "vae": 1000, "unet": 2000, "motion": 800, "joint": 800}
MAX_TOKENS = 24


# ------------------------------------------------------------------------------------------------ helpers
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


def clip_normalize(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - m) / s


def lr_at(step: int, total: int, base: float, warmup: int = 50) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    decay_start = int(total * 0.6)
    if step < decay_start:
        return base
    frac = (step - decay_start) / max(1, total - decay_start)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


class Logger:
    def __init__(self, work: Path, stage: str, resume: bool):
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.path = work / "logs" / f"{stage}.jsonl"
        if not resume and self.path.exists():
            self.path.unlink()
        self.stage = stage
        self.t0 = time.time()

    def log(self, **kw):
        kw = {"stage": self.stage, "wall_s": round(time.time() - self.t0, 2), **kw}
        with self.path.open("a") as f:
            f.write(json.dumps(kw) + "\n")


def save_ckpt(path: Path, step: int, model, opt, extra: dict | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "extra": extra or {}}, tmp)
    os.replace(tmp, path)


def load_ckpt(path: Path, model, opt):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    return ck["step"], ck.get("extra", {})


def _progress(total: int, start: int, desc: str, quiet: bool):
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=start, desc=desc, disable=quiet, mininterval=5.0, file=sys.stderr)
    except Exception:  # noqa: BLE001
        return None


# ----------------------------------------------------------------------------------------- model builders
def build_tokenizer(folder: Path):
    from ..tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(VOCABULARY, folder, model_max_length=MAX_TOKENS)


def build_clip(cfg: dict, tok):
    from transformers import CLIPConfig, CLIPModel

    h = cfg["clip_hidden"]
    text = dict(
        vocab_size=len(tok), hidden_size=h, intermediate_size=2 * h, num_hidden_layers=cfg["clip_layers"],
        num_attention_heads=cfg["clip_heads"], max_position_embeddings=MAX_TOKENS,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        projection_dim=cfg["clip_proj"],
    )
    vision = dict(
        hidden_size=h, intermediate_size=2 * h, num_hidden_layers=cfg["clip_layers"],
        num_attention_heads=cfg["clip_heads"], image_size=32, patch_size=4, projection_dim=cfg["clip_proj"],
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg["clip_proj"])
    torch.manual_seed(0)
    return CLIPModel(config)


def build_vae(cfg: dict):
    from diffusers import AutoencoderKL

    ch = tuple(cfg["vae_channels"])
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=ch, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * len(ch), up_block_types=("UpDecoderBlock2D",) * len(ch),
        norm_num_groups=cfg["vae_groups"], sample_size=32,
    )


def build_unet2d(cfg: dict, cross_dim: int):
    from diffusers import UNet2DConditionModel

    ch = tuple(cfg["unet_channels"])
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=ch, layers_per_block=cfg["unet_layers"],
        down_block_types=("CrossAttnDownBlock2D",) * len(ch), up_block_types=("CrossAttnUpBlock2D",) * len(ch),
        cross_attention_dim=cross_dim, attention_head_dim=cfg["unet_heads"], norm_num_groups=cfg["unet_groups"],
    )


def build_motion_unet(cfg: dict, unet2d):
    from diffusers import MotionAdapter, UNetMotionModel

    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=tuple(cfg["unet_channels"]), motion_layers_per_block=cfg["unet_layers"],
        motion_norm_num_groups=cfg["unet_groups"], motion_num_attention_heads=cfg["motion_heads"],
        motion_max_seq_length=32, use_motion_mid_block=True,
    )
    return UNetMotionModel.from_unet2d(unet2d, adapter)


def make_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )


# -------------------------------------------------------------------------------------------- the stages
class Trainer:
    def __init__(self, out: Path, work: Path, size: str = "default", seed: int = 0, device: str = "cpu",
                 resume: bool = False, quiet: bool = False, fixed_batch: bool = False, ckpt_every: int = 200,
                 log_every: int = 10, stop_at: int | None = None, loss_weight: str = "eps",
                 init_unet: str | Path | None = None, train_text: bool = False, reset_motion_words: bool = False,
                 lr: float | None = None, text_aux_weight: float = 0.0, text_aux_pretrain: int = 0,
                 text_lr_scale: float = 1.0, t_sampling: str = "uniform", frame_tokens: int = 0,
                 x0_target: str = "sample", prediction: str = "epsilon",
                 init_frame_tokens: str | Path | None = None, write_at_stop: bool = False):
        self.out, self.work = Path(out), Path(work)
        self.cfg = SIZES[size]
        self.seed, self.device, self.resume, self.quiet = seed, torch.device(device), resume, quiet
        self.fixed_batch, self.ckpt_every, self.log_every = fixed_batch, ckpt_every, log_every
        self.loss_weight = loss_weight  # "eps": plain eps MSE; "v": eps MSE x (1 + 1/SNR), capped (v-loss weighting)
        self.init_unet = Path(init_unet) if init_unet else None  # joint stage: start from this UNetMotionModel
        self.train_text = train_text  # joint stage: also fine-tune the (copied) CLIP text tower
        self.reset_motion_words = reset_motion_words  # ... after giving the motion words distinct token embeddings
        self.lr = lr  # override of the stage's learning rate
        # joint stage with train_text: auxiliary supervised loss on the text encoder (linear heads on the mean of
        # the final hidden states predict the caption's motion/colour/shape/background; heads discarded after)
        self.text_aux_weight = text_aux_weight
        self.text_aux_pretrain = text_aux_pretrain  # steps of text+heads only (aux loss) before the joint loop
        self.text_lr_scale = text_lr_scale  # text encoder lr = stage lr x this
        self.t_sampling = t_sampling  # "uniform"; "high": t = T*sqrt(u); "layout": half at t >= 0.7 T
        # joint stage: "sample" (the usual eps target) or "posterior" (exact E[z0 | z_t, caption], WorldLatents)
        if x0_target not in ("sample", "posterior"):
            raise ValueError(f"x0_target must be 'sample' or 'posterior', got {x0_target!r}")
        self.x0_target = x0_target
        # joint stage: what the UNet predicts, "epsilon" or "v_prediction" (v = √ᾱ ε − √(1−ᾱ) z0: at high noise the
        # network outputs the clean clip itself instead of a tiny correction to a copy of its input)
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction must be 'epsilon' or 'v_prediction', got {prediction!r}")
        self.prediction = prediction
        self.init_frame_tokens = Path(init_frame_tokens) if init_frame_tokens else None  # ... continue this one
        self.frame_tokens = frame_tokens  # joint stage: train HARIVO frame-wise tokens (K per frame; 0 = none)
        self.stop_at = stop_at  # interrupt a stage after this step (checkpoint saved, stage output not written)
        self.write_at_stop = write_at_stop  # ... unless this is set
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)

    # -- shared pieces
    def tokenizer(self):
        from transformers import CLIPTokenizer

        folder = self.out / "tokenizer"
        if not (folder / "vocab.json").exists():
            build_tokenizer(folder)
        return CLIPTokenizer.from_pretrained(str(folder))

    def _rng(self, stage: str, step: int):
        return stage_rng(self.seed, stage, 0 if self.fixed_batch else step)

    def _loop(self, stage: str, steps: int, model, params, lr: float, loss_fn, save_fn):
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        params = [q for g in groups for q in g["params"]]
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-2)
        ck = self.work / "ckpt" / f"{stage}.pt"
        start = 0
        if self.resume and ck.exists():
            start, _ = load_ckpt(ck, model, opt)
        logger = Logger(self.work, stage, self.resume and start > 0)
        bar = _progress(steps, start, stage, self.quiet)
        losses = []
        model.train()
        for step in range(start, steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, lr, warmup=min(50, max(1, steps // 10))) * g.get("lr_scale", 1.0)
            loss, info = loss_fn(self._rng(stage, step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if step % self.log_every == 0 or step == steps - 1:
                logger.log(step=step, loss=float(loss.detach()), lr=opt.param_groups[0]["lr"], **info)
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if (step + 1) % self.ckpt_every == 0 and step + 1 < steps:
                save_ckpt(ck, step + 1, model, opt)
            if self.stop_at is not None and step + 1 == self.stop_at and step + 1 < steps:
                save_ckpt(ck, step + 1, model, opt)
                if bar is not None:
                    bar.close()
                if self.write_at_stop:  # the stage's outputs as they are at this step
                    model.eval()
                    save_fn()
                return losses
        if bar is not None:
            bar.close()
        save_ckpt(ck, steps, model, opt)
        model.eval()
        save_fn()
        return losses

    # -- (b) micro CLIP
    def train_clip(self, steps: int):
        tok = self.tokenizer()
        model = build_clip(self.cfg, tok).to(self.device)
        B = self.cfg["batch_clip"]

        def loss_fn(rng):
            x, caps = render_frames(rng, B)
            ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
            out = model(input_ids=ids.input_ids.to(self.device), attention_mask=ids.attention_mask.to(self.device),
                        pixel_values=clip_normalize(x).to(self.device))
            # Frames cannot show motion and several captions of a batch may describe the same frame content:
            # targets spread over every caption identical to the positive up to the motion words.
            keys = [world.parse_caption(c) for c in caps]
            keys = [(k["colour"], k["shape"], k["background"]) for k in keys]
            same = torch.tensor([[a == b for b in keys] for a in keys], dtype=torch.float32, device=self.device)
            tgt = same / same.sum(1, keepdim=True)
            li = out.logits_per_image
            loss = 0.5 * (-(tgt * li.log_softmax(1)).sum(1).mean() - (tgt * li.t().log_softmax(1)).sum(1).mean())
            acc = float((same.gather(1, li.argmax(1, keepdim=True)) > 0).float().mean())
            return loss, {"acc": round(acc, 3)}

        def save():
            from transformers import CLIPTextModel

            d = self.out / "clip"
            model.save_pretrained(str(d), safe_serialization=True)
            tok.save_pretrained(str(d))
            for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):  # the slow-tokenizer files too
                src_file = self.out / "tokenizer" / name
                if src_file.exists():
                    (d / name).write_bytes(src_file.read_bytes())
            from transformers import CLIPImageProcessor

            try:
                CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                   image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(str(d))
            except Exception:  # noqa: BLE001
                pass
            text = CLIPTextModel(model.config.text_config)
            src = model.text_model.state_dict()
            tgt = text.state_dict()
            mapped = {}
            for k in tgt:
                key = k[len("text_model."):] if k.startswith("text_model.") else k
                if key in src:
                    mapped[k] = src[key]
            missing, _ = text.load_state_dict(mapped, strict=False)
            assert not [m for m in missing if "position_ids" not in m], missing
            text.save_pretrained(str(self.out / "text_encoder"), safe_serialization=True)

        return self._loop("clip", steps, model, [p for p in model.parameters()], self.cfg["lr_clip"], loss_fn, save)

    # -- (a) VAE
    def train_vae(self, steps: int, kl_weight: float = 5e-4):
        vae = build_vae(self.cfg).to(self.device)
        B = self.cfg["batch_vae"]

        def loss_fn(rng):
            x, _ = render_frames(rng, B)
            x = x.to(self.device)
            post = vae.encode(x * 2 - 1).latent_dist
            g = torch.Generator().manual_seed(int(rng.integers(2**31)))
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(self.device)
            rec = (vae.decode(z).sample + 1) / 2
            mx, mn = x.max(1).values, x.min(1).values
            w = 1.0 + 4.0 * (((mx - mn) > 0.3) | (mn > 0.78)).float()[:, None]  # object pixels count more
            rl = (w * (rec - x) ** 2).mean() + 0.5 * (w * (rec - x).abs()).mean()
            kl = (0.5 * (post.mean ** 2 + post.var - 1.0 - post.logvar)).mean()
            info = {"rec": round(float(((rec - x) ** 2).detach().mean()), 5), "kl": round(float(kl.detach()), 3)}
            return rl + kl_weight * kl, info

        def save():
            with torch.no_grad():
                x, _ = render_frames(stage_rng(self.seed + 1, "vae", 0), 256)
                z = vae.encode(x.to(self.device) * 2 - 1).latent_dist.sample()
                std = float(z.std())
            vae.register_to_config(scaling_factor=1.0 / std)
            vae.save_pretrained(str(self.out / "vae"), safe_serialization=True)

        return self._loop("vae", steps, vae, list(vae.parameters()), self.cfg["lr_vae"], loss_fn, save)

    # -- frozen parts for the UNet stages
    def _frozen(self):
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel

        vae = AutoencoderKL.from_pretrained(str(self.out / "vae")).to(self.device).eval().requires_grad_(False)
        text = CLIPTextModel.from_pretrained(str(self.out / "text_encoder")).to(self.device).eval().requires_grad_(False)
        tok = self.tokenizer()
        cache: dict[str, torch.Tensor] = {}

        @torch.no_grad()
        def embed(caps: list[str]) -> torch.Tensor:
            missing = [c for c in dict.fromkeys(caps) if c not in cache]
            if missing:
                ids = tok(missing, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
                hs = text(ids.input_ids.to(self.device))[0]
                for c, h in zip(missing, hs):
                    cache[c] = h
            return torch.stack([cache[c] for c in caps])

        @torch.no_grad()
        def encode(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
            post = vae.encode(x.to(self.device) * 2 - 1).latent_dist
            g = torch.Generator().manual_seed(int(rng.integers(2**31)))
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(self.device)
            return z * vae.config.scaling_factor

        return vae, text, embed, encode

    def _eps_loss(self, unet, sched, z0, emb, rng, video_frames: int | None = None, x0_mean=None,
                  v_pred: bool = False):
        """Denoising loss (eps target, or v with `v_pred`); with `x0_mean(zt, t) -> (z0 estimate (b, ...), used (b,)
        bool)` the target is derived from that estimate where `used` (the exact posterior mean, `WorldLatents`)."""
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        noise = torch.randn(z0.shape, generator=g).to(self.device)
        T = sched.config.num_train_timesteps
        if self.t_sampling == "high" and video_frames is not None:  # direction is decided at high noise
            u = torch.rand((z0.shape[0],), generator=g)
            t = (u.sqrt() * T).long().clamp(max=T - 1).to(self.device)
        elif self.t_sampling == "layout" and video_frames is not None:
            # half of the clips at t in [0.7 T, T), where a clip's layout (and direction of travel) is decided
            # in sampling, the others uniform
            u = torch.rand((z0.shape[0],), generator=g)
            hi = torch.rand((z0.shape[0],), generator=g) < 0.5
            t = (torch.where(hi, 0.7 + 0.3 * u, u) * T).long().clamp(max=T - 1).to(self.device)
        else:
            t = torch.randint(0, T, (z0.shape[0],), generator=g).to(self.device)
        zt = sched.add_noise(z0, noise, t)
        b = z0.shape[0]
        target = noise
        ab_t = sched.alphas_cumprod.to(self.device)[t].view(-1, *([1] * (zt.ndim - 1)))
        x0_tgt = z0
        if x0_mean is not None:
            mean, used = x0_mean(zt, t)
            used = used.view(-1, *([1] * (zt.ndim - 1))).to(self.device)
            eps_mean = (zt - ab_t.sqrt() * mean) / (1 - ab_t).sqrt()
            target = torch.where(used, eps_mean, noise)
            x0_tgt = torch.where(used, mean, z0)
        if v_pred:
            target = ab_t.sqrt() * target - (1 - ab_t).sqrt() * x0_tgt
        pred = unet(zt, t, encoder_hidden_states=emb).sample
        if self.loss_weight == "eps" or video_frames is None or v_pred:  # v-MSE is eps-MSE / ᾱ already
            w = torch.ones(b, device=self.device)
        else:
            # v-loss weighting: eps error x 1/alpha_bar (= x0 error x SNR... balanced over t), capped. The layout
            # of a clip (where the object is in each frame) is decided at high noise, where plain eps MSE is tiny.
            w = (1.0 / sched.alphas_cumprod.to(self.device)[t]).clamp(max=50.0)
        err = ((pred - target) ** 2).flatten(1).mean(1)  # (b,)
        return (w * err).mean() / w.mean()

    # -- (c) image UNet
    def train_unet(self, steps: int, p_uncond: float = 0.1):
        _, text, embed, encode = self._frozen()
        unet = build_unet2d(self.cfg, text.config.hidden_size).to(self.device)
        sched = make_scheduler()
        B = self.cfg["batch_unet"]

        def loss_fn(rng):
            x, caps = render_frames(rng, B)
            caps = ["" if rng.random() < p_uncond else c for c in caps]
            return self._eps_loss(unet, sched, encode(x, rng), embed(caps), rng), {}

        def save():
            unet.save_pretrained(str(self.work / "unet2d"), safe_serialization=True)

        return self._loop("unet", steps, unet, list(unet.parameters()), self.cfg["lr_unet"], loss_fn, save)

    # -- (d) motion modules, then (optional) joint
    def _video_stage(self, stage: str, steps: int, p_uncond: float = 0.1):
        from diffusers import UNet2DConditionModel, UNetMotionModel

        vae, text, embed, encode = self._frozen()
        if stage == "motion":
            unet2d = UNet2DConditionModel.from_pretrained(str(self.work / "unet2d"))
            unet = build_motion_unet(self.cfg, unet2d).to(self.device)
            unet.freeze_unet2d_params()
            lr = self.cfg["lr_motion"]
        else:
            src = self.init_unet or (self.work / "unet_motion")
            unet = UNetMotionModel.from_pretrained(str(src)).to(self.device)
            unet.requires_grad_(True)
            lr = self.cfg["lr_joint"]
        train_text = stage == "joint" and self.train_text
        tok = self.tokenizer()
        if train_text:
            # The contrastive CLIP makes captions that differ only in motion words nearly identical (a frame cannot
            # show motion); fine-tuning the text tower with the video loss lets the motion words apart.
            text.requires_grad_(True)
            if self.reset_motion_words and not (self.resume and (self.work / "ckpt" / "joint.pt").exists()):
                emb_w = text.get_input_embeddings().weight
                g = torch.Generator().manual_seed(self.seed + 7)
                scale = float(emb_w.norm(dim=1).mean())
                with torch.no_grad():
                    for w in ("left", "right", "up", "down", "bouncing"):
                        i = tok.convert_tokens_to_ids(w + "</w>")
                        v = torch.randn(emb_w.shape[1], generator=g)
                        emb_w[i] = (v / v.norm() * 2 * scale).to(emb_w)
            modules = {"unet": unet, "text": text}
            aux = self.text_aux_weight > 0
            if aux:
                h = text.config.hidden_size
                torch.manual_seed(self.seed + 11)
                heads = torch.nn.ModuleDict({k: torch.nn.Linear(h, len(v)) for k, v in AUX_CLASSES.items()})
                modules["heads"] = heads.to(self.device)

            def embed(caps):  # noqa: F811  (with gradients, no cache)
                ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
                return text(ids.input_ids.to(self.device))[0]

            def aux_loss(rng, n: int = 64):
                # random training captions; a linear head per attribute on the masked token mean of the final
                # hidden states (what the UNet cross-attends to); motion is the point, the others keep their
                # separation while the text moves.
                attrs = [world.sample_attributes(rng, "train") for _ in range(n)]
                caps = [world.caption(a["colour"], a["shape"], a["motion"], a["background"]) for a in attrs]
                ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
                hs = text(ids.input_ids.to(self.device))[0]
                m = ids.attention_mask.to(self.device).unsqueeze(-1).to(hs.dtype)
                pooled = (hs * m).sum(1) / m.sum(1)
                loss, info = 0.0, {}
                for k, classes in AUX_CLASSES.items():
                    y = torch.tensor([classes.index(a[k]) for a in attrs], device=self.device)
                    logits = modules["heads"][k](pooled)
                    loss = loss + AUX_WEIGHTS[k] * F.cross_entropy(logits, y)
                    info[f"acc_{k}"] = round(float((logits.argmax(1) == y).float().mean()), 3)
                return loss, info
        else:
            modules = {"unet": unet}
        gen = None
        if stage == "joint" and self.frame_tokens > 0:
            gen = self._frame_token_generator(text, embed)
            modules["frame_tokens"] = gen
        model = torch.nn.ModuleDict(modules) if len(modules) > 1 else unet
        if train_text:
            text_ids = {id(q) for q in text.parameters()}
            head_ids = {id(q) for q in modules["heads"].parameters()} if aux else set()
            params = [
                {"params": [q for q in unet.parameters() if q.requires_grad]},
                {"params": [q for q in text.parameters() if q.requires_grad], "lr_scale": self.text_lr_scale},
            ]
            if aux:
                params.append({"params": list(modules["heads"].parameters()), "lr_scale": 5.0})
            assert len(text_ids & head_ids) == 0
        else:
            params = [{"params": [q for q in unet.parameters() if q.requires_grad]}]
        if gen is not None:  # a fresh module on a trained UNet: a larger step size
            params.append({"params": list(gen.parameters()), "lr_scale": 5.0})
        if train_text and aux and self.text_aux_pretrain > 0 and not (
                self.resume and (self.work / "ckpt" / "joint.pt").exists()):
            # text tower + heads alone for a few hundred steps (seconds): motion words separated from the start
            pre = torch.optim.AdamW(list(text.parameters()) + list(modules["heads"].parameters()), lr=1e-3,
                                    weight_decay=1e-2)
            logger = Logger(self.work, "text_aux_pretrain", False)
            for step in range(self.text_aux_pretrain):
                loss, info = aux_loss(stage_rng(self.seed + 3, stage, step))
                pre.zero_grad(set_to_none=True)
                loss.backward()
                pre.step()
                if step % self.log_every == 0 or step == self.text_aux_pretrain - 1:
                    logger.log(step=step, loss=float(loss.detach()), **info)
        sched = make_scheduler()
        B = self.cfg["batch_motion"]
        wl = None
        if stage == "joint" and self.x0_target == "posterior":
            wl = WorldLatents(vae, self.device)

        def loss_fn(rng):
            # The motion stage sees 8-frame clips; the joint stage also 12 and 16 frames (the app offers them) at
            # about the same number of frames per batch.
            f = 8 if stage == "motion" else int(rng.choice([8, 12, 16], p=[0.6, 0.2, 0.2]))
            x0_mean = None
            if wl is not None:  # clips straight from the latent table, targets from the exact posterior
                attrs = [world.sample_attributes(rng, "train") for _ in range(max(1, (B * 8) // f))]
                z = torch.stack([wl.clip(a, f, rng) for a in attrs]).to(self.device)
                caps = [world.caption(a["colour"], a["shape"], a["motion"], a["background"]) for a in attrs]
                caps = ["" if rng.random() < p_uncond else c for c in caps]

                def x0_mean(zt, t):
                    used = torch.tensor([bool(c) for c in caps])
                    ab = sched.alphas_cumprod
                    mean = torch.stack([wl.posterior_mean(a, zt[i], float(ab[int(t[i])])) if c else zt[i]
                                        for i, (a, c) in enumerate(zip(attrs, caps))])
                    return mean, used
            else:
                vids, caps = render_clips(rng, max(1, (B * 8) // f), num_frames=f)
                b, f = vids.shape[:2]
                caps = ["" if rng.random() < p_uncond else c for c in caps]
                z = encode(vids.flatten(0, 1), rng)  # (b f) c h w
                z = z.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4).contiguous()  # b c f h w
            # UNetMotionModel takes per-frame text embeddings ((b f), seq, dim), as the pipeline passes them.
            emb = embed(caps)
            emb = gen.expand(emb, f) if gen is not None else emb.repeat_interleave(f, 0)
            loss = self._eps_loss(unet, sched, z, emb, rng, video_frames=f, x0_mean=x0_mean,
                                  v_pred=stage == "joint" and self.prediction == "v_prediction")
            if train_text and self.text_aux_weight > 0:
                la, info = aux_loss(rng)
                return loss + self.text_aux_weight * la, {"eps": round(float(loss.detach()), 5), **info}
            return loss, {}

        def save():
            dest = self.work / "unet_motion" if stage == "motion" else self.work / "unet_joint"
            unet.save_pretrained(str(dest), safe_serialization=True)
            if train_text:
                text.save_pretrained(str(self.work / "text_encoder_joint"), safe_serialization=True)
            if gen is not None:
                gen.save_pretrained(str(self.work / "frame_tokens"), safe_serialization=True)
            if stage == "joint":  # the prediction type goes with the UNet
                make_scheduler(self.prediction).save_pretrained(str(self.work / "scheduler_joint"))

        return self._loop(stage, steps, model, params, self.lr or lr, loss_fn, save)

    def _frame_token_generator(self, text, embed):
        """HARIVO frame-wise token generator; its text standardisation comes from the training captions."""
        from ..frame_tokens import FrameTokenGenerator

        if self.init_frame_tokens is not None:
            return FrameTokenGenerator.from_pretrained(str(self.init_frame_tokens)).to(self.device)
        torch.manual_seed(self.seed + 13)
        gen = FrameTokenGenerator(dim=text.config.hidden_size, num_tokens=self.frame_tokens,
                                  hidden=2 * text.config.hidden_size, text_length=MAX_TOKENS).to(self.device)
        caps = [world.caption(c, s, m, b) for (c, s, m) in world.TRAIN_COMBOS for b in world.BACKGROUNDS] + [""]
        with torch.no_grad():
            tokens = torch.cat([embed(caps[i:i + 256]) for i in range(0, len(caps), 256)])
        gen.set_text_statistics(tokens)
        return gen

    def train_motion(self, steps: int):
        return self._video_stage("motion", steps)

    def train_joint(self, steps: int):
        return self._video_stage("joint", steps)

    # -- export
    def export(self):
        from diffusers import UNetMotionModel

        src = self.work / "unet_joint"
        if not (src / "config.json").exists():
            src = self.work / "unet_motion"
        unet = UNetMotionModel.from_pretrained(str(src))
        unet.save_pretrained(str(self.out / "unet"), safe_serialization=True)
        te = self.work / "text_encoder_joint"
        if (te / "config.json").exists():
            from transformers import CLIPTextModel

            CLIPTextModel.from_pretrained(str(te)).save_pretrained(str(self.out / "text_encoder"), safe_serialization=True)
        sched = self.work / "scheduler_joint" / "scheduler_config.json"
        pred = json.loads(sched.read_text()).get("prediction_type", "epsilon") if sched.exists() else "epsilon"
        make_scheduler(pred).save_pretrained(str(self.out / "scheduler"))
        ft = self.work / "frame_tokens"
        if (ft / "config.json").exists():
            from ..frame_tokens import FrameTokenGenerator

            FrameTokenGenerator.from_pretrained(str(ft)).save_pretrained(str(self.out / "frame_tokens"),
                                                                         safe_serialization=True)
        elif (self.out / "frame_tokens").exists():  # a stale generator from an earlier export would not match
            import shutil

            shutil.rmtree(self.out / "frame_tokens")
        index = {
            "_class_name": "AnimateDiffPipeline",
            "_diffusers_version": __import__("diffusers").__version__,
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "motion_adapter": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNetMotionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }
        if (self.out / "frame_tokens" / "config.json").exists():
            index["frame_tokens"] = ["pipelines.frame_tokens", "FrameTokenGenerator"]
        (self.out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        meta = {"unet_source": src.name, "size": [k for k, v in SIZES.items() if v is self.cfg][:1], "seed": self.seed}
        (self.out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
        return []

    def run(self, stage: str, steps: int | None = None):
        if stage == "export":
            return self.export()
        steps = DEFAULT_STEPS[stage] if steps is None else steps
        return getattr(self, f"train_{stage}")(steps)


# --------------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--stages", default="clip,vae,unet,motion,joint,export",
                   help=f"comma list of stages to run, in order, from {','.join(STAGES)}")
    p.add_argument("--out", default=None, help="output folder (diffusers layout), default assets/micro")
    p.add_argument("--work", default=None, help="checkpoints/logs folder, default runs/micro-train")
    p.add_argument("--size", default="default", choices=sorted(SIZES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--resume", action="store_true", help="continue from <work>/ckpt/<stage>.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--stop-at", type=int, default=None, help="stop each stage after this step (resume later)")
    p.add_argument("--write-at-stop", action="store_true",
                   help="with --stop-at: also write the stage's outputs as they are at that step")
    p.add_argument("--loss-weight", default="eps", choices=["eps", "v"],
                   help="video stages: plain eps MSE, or v-loss weighting (eps MSE x 1/alpha_bar, capped at 50)")
    p.add_argument("--init-unet", default=None, help="joint stage: start from this UNetMotionModel folder")
    p.add_argument("--train-text", action="store_true", help="joint stage: also fine-tune the text encoder")
    p.add_argument("--reset-motion-words", action="store_true",
                   help="with --train-text: give left/right/up/down/bouncing fresh distinct token embeddings first")
    p.add_argument("--lr", type=float, default=None, help="override the video stages' learning rate")
    p.add_argument("--text-aux-weight", type=float, default=0.0,
                   help="with --train-text: weight of an auxiliary loss (linear heads on the text encoder's mean "
                        "final hidden state predict the caption's motion, and with 1/4 weight colour/shape/background)")
    p.add_argument("--text-aux-pretrain", type=int, default=0,
                   help="with --text-aux-weight: steps of text encoder + heads alone (aux loss) before the joint loop")
    p.add_argument("--text-lr-scale", type=float, default=1.0, help="with --train-text: text lr = stage lr x this")
    p.add_argument("--t-sampling", default="uniform", choices=["uniform", "high", "layout"],
                   help="video stages' timestep sampling: uniform, biased to high noise (t = T*sqrt(u)), or "
                        "'layout': half the clips at t >= 0.7 T, half uniform")
    p.add_argument("--x0-target", default="sample", choices=["sample", "posterior"],
                   help="joint stage: regress on the sampled clip (usual), or on the exact posterior mean "
                        "E[z0 | z_t, caption] of the micro world (clips drawn from a table of frame latents)")
    p.add_argument("--prediction", default="epsilon", choices=["epsilon", "v_prediction"],
                   help="joint stage: the UNet predicts eps (as the earlier stages) or v; export writes it to the "
                        "scheduler")
    p.add_argument("--init-frame-tokens", default=None,
                   help="with --frame-tokens: continue this trained FrameTokenGenerator folder")
    p.add_argument("--frame-tokens", type=int, default=0,
                   help="joint stage: train HARIVO frame-wise tokens, this many per frame (0 = none; HARIVO uses 3)")
    for s in STAGES[:-1]:
        p.add_argument(f"--{s}-steps", type=int, default=DEFAULT_STEPS[s], help=f"steps of stage {s}")
    p.add_argument("--steps", type=int, default=None, help="override the steps of every stage run")
    return p


def main(argv: list[str] | None = None) -> int:
    p = add_arguments(argparse.ArgumentParser(prog="python -m pipelines train-micro", description=__doc__,
                                              formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    from . import MICRO_DIR

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        print(f"error: unknown stage(s) {bad}; choose from {STAGES}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else MICRO_DIR
    work = Path(args.work) if args.work else Path("runs/micro-train")
    tr = Trainer(out, work, size=args.size, seed=args.seed, device=args.device, resume=args.resume,
                 quiet=args.quiet, ckpt_every=args.ckpt_every, stop_at=args.stop_at, loss_weight=args.loss_weight,
                 init_unet=args.init_unet, train_text=args.train_text,
                 reset_motion_words=args.reset_motion_words, lr=args.lr, text_aux_weight=args.text_aux_weight,
                 text_aux_pretrain=args.text_aux_pretrain, text_lr_scale=args.text_lr_scale,
                 t_sampling=args.t_sampling, frame_tokens=args.frame_tokens, x0_target=args.x0_target,
                 prediction=args.prediction, init_frame_tokens=args.init_frame_tokens,
                 write_at_stop=args.write_at_stop)
    timings = {}
    for s in stages:
        t0 = time.time()
        steps = args.steps if args.steps is not None else getattr(args, f"{s}_steps", None)
        losses = tr.run(s, steps)
        timings[s] = round(time.time() - t0, 1)
        if losses:
            k = max(1, min(20, len(losses) // 5))
            print(f"[{s}] {len(losses)} steps in {timings[s]} s, loss {np.mean(losses[:k]):.4f} -> {np.mean(losses[-k:]):.4f}",
                  flush=True)
        else:
            print(f"[{s}] done in {timings[s]} s", flush=True)
    with (work / "timings.jsonl").open("a") as f:
        f.write(json.dumps(timings) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
