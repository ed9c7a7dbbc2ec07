"""The micro models' training stages (micro CLIP, VAE, image UNet, motion modules, joint, export) on the training
package's one loop (`loop.run_steps`: accelerate, gradient clipping, `get_scheduler` LR), checkpoints and JSONL logs.

Stages (each resumable, each with its own `--steps`), AnimateDiff-style recipe, CPU-friendly:
  clip    micro CLIP (`transformers.CLIPModel`), contrastive frames <-> captions; its text tower becomes the
          video model's text encoder (as SD uses CLIP text).
  vae     AutoencoderKL, 32x32 RGB -> 4x8x8 latents (recon + small KL); scaling_factor set for unit-std latents.
  unet    image UNet2DConditionModel on single frames, eps prediction, frozen CLIP text, 10 % empty captions (CFG).
  motion  UNetMotionModel.from_unet2d(unet, MotionAdapter), 2D params frozen, motion modules trained on clips.
  joint   optional short phase with every UNet parameter trainable (text still frozen) on clips.
  export  write the diffusers layout to --out (model_index.json, scheduler, unet, ...).

Data are rendered on the fly from fixed seeds (a stage's step k always sees the same batch, `micro_data`), held-out
(colour, shape, motion) combinations are never rendered. `--world 2` trains on micro world 2 (backgrounds are looks,
captions leave each attribute out with probability `--dropout`, default `world.DROPOUT`; the tokenizer is built from
world 2's vocabulary; export records the world in training.json); world 1 (what assets/micro ships) is the default.
Each stage is a run folder `<work>/<stage>/` in the training package's layout: `config.json`, `log.jsonl` (rows
`{"step": completed steps, "loss", ..., "lr", "wall_s"}`), `checkpoints/step_N.pt` (`loop.save_checkpoint`'s format,
the last one kept; `--resume` continues from it). LR: `schedule.warmup_stable_cosine` (diffusers' `get_scheduler`:
warm-up, flat, cosine to 0.1).

    python -m pipelines.training micro-models --stages clip,vae,unet,motion,joint,export --out assets/micro
    python -m pipelines train-micro ...          # the same
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..micro import world
from .loop import latest_checkpoint, load_checkpoint, make_accelerator, run_steps, start_run
from .micro_data import STAGES, WorldLatents, render_clips, render_frames, same_content, stage_rng, table_bytes
from .micro_models import (CLIP_MEAN, CLIP_STD, MAX_TOKENS, SIZES, build_clip, build_motion_unet, build_tokenizer,
                           build_unet2d, build_vae, clip_normalize, make_scheduler)
from .schedule import warmup_stable_cosine

AUX_CLASSES = {"motion": list(world.MOTIONS), "colour": list(world.COLOURS), "shape": list(world.SHAPES),
               "background": list(world.BACKGROUNDS)}
#: World 2's auxiliary background classes: the look's geometry (pattern, angle, width).
AUX_GEOMETRIES = ["flat"] + [f"stripes-{a}-{w}" for a in (0, 45, 90, 135) for w in ("narrow", "wide")] + \
    [f"checks-{w}" for w in ("narrow", "wide")]


def aux_label(attrs: dict, key: str, version: int) -> int:
    """The class index of attribute `key` of `attrs` for the text auxiliary heads (world 2's background: geometry)."""
    if key == "background" and version == 2:
        lk = attrs["background"]
        name = "flat" if lk.pattern == "flat" else (f"stripes-{lk.angle}-{lk.width}" if lk.pattern == "stripes"
                                                  else f"checks-{lk.width}")
        return AUX_GEOMETRIES.index(name)
    return AUX_CLASSES[key].index(attrs[key])


AUX_WEIGHTS = {"motion": 1.0, "colour": 0.25, "shape": 0.25, "background": 0.25}
DEFAULT_STEPS = {"clip": 800, "vae": 1000, "unet": 2000, "motion": 800, "joint": 800}


# -------------------------------------------------------------------------------------------- the stages

class CaptionCache:
    """Text-encoder states per caption, computed once and kept up to `limit` captions (world 2's dropout captions
    are many: past the limit the cache starts again). Called with a batch of captions, returns their stacked states."""

    def __init__(self, encode, limit: int = 20000):
        self.encode, self.limit, self.cache = encode, limit, {}

    def __call__(self, caps: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(caps) if c not in self.cache]
        if len(self.cache) + len(missing) > self.limit:
            self.cache.clear()
            missing = list(dict.fromkeys(caps))  # this batch's cached captions went with the rest
        if missing:
            for c, h in zip(missing, self.encode(missing)):
                self.cache[c] = h
        return torch.stack([self.cache[c] for c in caps])

class Trainer:
    def __init__(self, out: Path, work: Path, size: str = "default", seed: int = 0, device: str = "cpu",
                 resume: bool = False, quiet: bool = False, fixed_batch: bool = False, ckpt_every: int = 200,
                 log_every: int = 10, stop_at: int | None = None, loss_weight: str = "eps",
                 init_unet: str | Path | None = None, train_text: bool = False, reset_motion_words: bool = False,
                 lr: float | None = None, text_aux_weight: float = 0.0, text_aux_pretrain: int = 0,
                 text_lr_scale: float = 1.0, t_sampling: str = "uniform", frame_tokens: int = 0,
                 x0_target: str = "sample", prediction: str = "epsilon",
                 init_frame_tokens: str | Path | None = None, write_at_stop: bool = False,
                 freeze_image: bool = False, freeze_unet: bool = False, world_version: int = 1,
                 dropout: float | None = None):
        self.out, self.work = Path(out), Path(work)
        self.world = world.get_world(world_version)
        # world 2: each caption attribute (and each part of a named look) left out with this probability
        self.dropout = (world.DROPOUT if dropout is None else float(dropout)) if self.world.version == 2 else 0.0
        if self.world.version == 1 and dropout:
            raise ValueError("--dropout needs --world 2: world 1's captions name every attribute")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {dropout!r}")
        if self.world.version == 2 and x0_target == "posterior":
            keys, nbytes = table_bytes(2)
            raise ValueError(f"--x0-target posterior needs world 1: world 2's table of frame latents would hold {keys} "
                             f"(colour, shape, look) keys, {nbytes / 2**30:.1f} GiB, and its dropout captions make the "
                             "posterior a sum over every attribute left out; use --x0-target sample")
        self.size, self.cfg = size, SIZES[size]
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
        self.freeze_image = freeze_image  # joint stage: keep the UNet's image (2D) layers frozen
        self.freeze_unet = freeze_unet  # joint stage: keep the whole UNet frozen (with frame tokens: they alone train)
        self.stop_at = stop_at  # interrupt a stage after this step (checkpoint saved, stage output not written)
        self.write_at_stop = write_at_stop  # ... unless this is set
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)

    # -- shared pieces
    def tokenizer(self):
        from transformers import CLIPTokenizer

        folder = self.out / "tokenizer"
        if not (folder / "vocab.json").exists():
            build_tokenizer(folder, self.world.vocabulary)
        tok = CLIPTokenizer.from_pretrained(str(folder))
        # world 2's tokenizer has every word one token (`build_tokenizer`); world 1's is kept as assets/micro built it
        missing = [w for w in self.world.vocabulary if len(tok.tokenize(w)) != 1] if self.world.version == 2 else []
        if missing:
            raise ValueError(f"{folder} was built for another vocabulary: world {self.world.version}'s words "
                             f"{missing[:6]} are not single tokens; train world {self.world.version} into a "
                             "fresh --out")
        return tok

    def _rng(self, stage: str, step: int):
        return stage_rng(self.seed, stage, 0 if self.fixed_batch else step)

    def _checkpoint(self, stage: str) -> Path | None:
        """The stage's latest checkpoint: `<work>/<stage>/checkpoints/step_N.pt`, else one in the former layout
        (`<work>/ckpt/<stage>.pt`, read by `load_checkpoint` too)."""
        ck = latest_checkpoint(self.work / stage)
        legacy = self.work / "ckpt" / f"{stage}.pt"
        return ck if ck is not None else legacy if legacy.is_file() else None

    def _resuming(self, stage: str) -> bool:
        return self.resume and self._checkpoint(stage) is not None

    def _run(self, name: str, model, opt, *, steps: int, start: int, end: int, lr: float, lr_factor, loss_fn,
             params, max_grad_norm, ckpt_every, config: dict, rng_fn, desc: str) -> list[float]:
        """`loop.run_steps` for one micro stage: a single-process accelerator on this trainer's device, the run
        folder `<work>/<name>/`, one micro-step per step, batches = a seeded `np.random.Generator`."""
        acc = make_accelerator(cpu=self.device.type == "cpu", device_placement=False)
        model, opt = acc.prepare(model, opt)
        run = self.work / name
        start_run(acc, run, start, json.dumps(config, indent=2))

        def step_loss(rng):
            loss, info = loss_fn(rng)
            return loss, {"loss": loss, **info}

        rows = run_steps(acc, model, opt, out=run, start=start, end=end, total=steps, lr=lr, lr_factor=lr_factor,
                         batch_fn=lambda step, micro: rng_fn(step), loss_fn=step_loss, params=params,
                         max_grad_norm=max_grad_norm, log_every=self.log_every, ckpt_every=ckpt_every, config=config,
                         keep_last=1, desc=desc, quiet=self.quiet)
        return [r["loss"] for r in rows]

    def _loop(self, stage: str, steps: int, model, params, lr: float, loss_fn, save_fn):
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        groups = [g for g in groups if g["params"]]  # a frozen part contributes no group
        params = [q for g in groups for q in g["params"]]
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-2)
        start = 0
        ck = self._checkpoint(stage)
        if self.resume and ck is not None:
            start = load_checkpoint(ck, model, opt)
        # --stop-at N interrupts the stage after step N (when N is still ahead), its checkpoint written
        stop = self.stop_at is not None and start < self.stop_at < steps
        end = self.stop_at if stop else steps
        warmup = min(50, max(1, steps // 10))
        config = {"stage": stage, "steps": steps, "lr": lr, "lr_schedule": "warmup_stable_cosine", "lr_warmup": warmup,
                  "seed": self.seed, "size": self.size, "device": str(self.device), "fixed_batch": self.fixed_batch}
        losses = self._run(stage, model, opt, steps=steps, start=start, end=end, lr=lr,
                           lr_factor=warmup_stable_cosine(steps, warmup), loss_fn=loss_fn, params=params,
                           max_grad_norm=1.0, ckpt_every=self.ckpt_every, config=config,
                           rng_fn=lambda step: self._rng(stage, step), desc=stage)
        if not stop or self.write_at_stop:  # an interrupted stage writes its outputs only with --write-at-stop
            model.eval()
            save_fn()
        return losses

    # -- (b) micro CLIP
    def train_clip(self, steps: int):
        tok = self.tokenizer()
        model = build_clip(self.cfg, tok).to(self.device)
        B = self.cfg["batch_clip"]

        def loss_fn(rng):
            x, caps, attrs = render_frames(rng, B, world_version=self.world.version, dropout=self.dropout,
                                           with_attrs=True)
            ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
            out = model(input_ids=ids.input_ids.to(self.device), attention_mask=ids.attention_mask.to(self.device),
                        pixel_values=clip_normalize(x).to(self.device))
            # Frames cannot show motion and several captions of a batch may describe the same frame content:
            # targets spread over every caption that fits the frame up to the motion words (world 1: identical up to
            # them; world 2: a caption that leaves attributes out fits every frame that has what it names).
            same = same_content(attrs, self.world.version).to(self.device)  # (image i, caption j)
            tgt = same / same.sum(1, keepdim=True)
            tgt_t = same.t() / same.t().sum(1, keepdim=True)  # = tgt for world 1 (symmetric)
            li = out.logits_per_image
            loss = 0.5 * (-(tgt * li.log_softmax(1)).sum(1).mean() - (tgt_t * li.t().log_softmax(1)).sum(1).mean())
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
            x, _ = render_frames(rng, B, world_version=self.world.version)
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
                x, _ = render_frames(stage_rng(self.seed + 1, "vae", 0), 256, world_version=self.world.version)
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

        @torch.no_grad()
        def encode_text(caps: list[str]) -> torch.Tensor:
            ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
            return text(ids.input_ids.to(self.device))[0]

        embed = CaptionCache(encode_text)

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
            x, caps = render_frames(rng, B, world_version=self.world.version, dropout=self.dropout)
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
            if self.freeze_unet:  # only the frame-token generator trains, for this UNet as it is
                unet.requires_grad_(False)
            elif self.freeze_image:  # the image layers stay as they are: motion modules (and frame tokens) train
                unet.freeze_unet2d_params()
            lr = self.cfg["lr_joint"]
        train_text = stage == "joint" and self.train_text
        tok = self.tokenizer()
        if train_text:
            # The contrastive CLIP makes captions that differ only in motion words nearly identical (a frame cannot
            # show motion); fine-tuning the text tower with the video loss lets the motion words apart.
            text.requires_grad_(True)
            if self.reset_motion_words and not self._resuming("joint"):
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
                n_cls = {**{k: len(v) for k, v in AUX_CLASSES.items()},
                         **({"background": len(AUX_GEOMETRIES)} if self.world.version == 2 else {})}
                heads = torch.nn.ModuleDict({k: torch.nn.Linear(h, n_cls[k]) for k in AUX_CLASSES})
                modules["heads"] = heads.to(self.device)

            def embed(caps):  # noqa: F811  (with gradients, no cache)
                ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
                return text(ids.input_ids.to(self.device))[0]

            def aux_loss(rng, n: int = 64):
                # random training captions; a linear head per attribute on the masked token mean of the final
                # hidden states (what the UNet cross-attends to); motion is the point, the others keep their
                # separation while the text moves.
                attrs = [self.world.sample(rng, "train") for _ in range(n)]  # full captions: every head has a label
                caps = [self.world.caption_of(a) for a in attrs]
                ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
                hs = text(ids.input_ids.to(self.device))[0]
                m = ids.attention_mask.to(self.device).unsqueeze(-1).to(hs.dtype)
                pooled = (hs * m).sum(1) / m.sum(1)
                loss, info = 0.0, {}
                for k, classes in AUX_CLASSES.items():
                    y = torch.tensor([aux_label(a, k, self.world.version) for a in attrs], device=self.device)
                    logits = modules["heads"][k](pooled)
                    loss = loss + AUX_WEIGHTS[k] * F.cross_entropy(logits, y)
                    info[f"acc_{k}"] = round(float((logits.argmax(1) == y).float().mean()), 3)
                return loss, info
        else:
            modules = {"unet": unet}
        gen = None
        if stage == "joint" and self.frame_tokens > 0:
            gen = self._frame_token_generator(text)
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
        if train_text and aux and self.text_aux_pretrain > 0 and not self._resuming("joint"):
            # text tower + heads alone for a few hundred steps (seconds): motion words separated from the start
            pre_model = torch.nn.ModuleDict({"text": text, "heads": modules["heads"]})
            pre = torch.optim.AdamW(list(text.parameters()) + list(modules["heads"].parameters()), lr=1e-3,
                                    weight_decay=1e-2)
            n = self.text_aux_pretrain
            self._run("text_aux_pretrain", pre_model, pre, steps=n, start=0, end=n, lr=1e-3,
                      lr_factor=lambda step: 1.0, loss_fn=aux_loss, params=list(pre_model.parameters()),
                      max_grad_norm=None, ckpt_every=None, config={"stage": "text_aux_pretrain", "steps": n, "lr": 1e-3},
                      rng_fn=lambda step: stage_rng(self.seed + 3, stage, step), desc="text_aux_pretrain")
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
                vids, caps = render_clips(rng, max(1, (B * 8) // f), num_frames=f, world_version=self.world.version,
                                          dropout=self.dropout)
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

    def _frame_token_generator(self, text):
        """HARIVO's frame-wise token generator (the paper's `HarivoFrameTokens`). A fresh one starts with its last
        linear layer at zero, so it first adds zero tokens and the trained UNet sees its usual input."""
        from ..frame_tokens import HarivoFrameTokens, load_frame_tokens

        if self.init_frame_tokens is not None:
            gen = load_frame_tokens(self.init_frame_tokens)
            if gen.config.num_tokens != self.frame_tokens:
                raise ValueError(f"--init-frame-tokens {self.init_frame_tokens} makes {gen.config.num_tokens} tokens "
                                 f"per frame, --frame-tokens asks for {self.frame_tokens}")
            return gen.to(self.device)
        torch.manual_seed(self.seed + 13)
        gen = HarivoFrameTokens(dim=text.config.hidden_size, text_length=MAX_TOKENS, num_tokens=self.frame_tokens,
                                max_frames=32).to(self.device)  # 32: the motion modules' longest clip
        last = gen.layers[-1][0]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
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
        ft_class = None
        if (ft / "config.json").exists():
            from ..frame_tokens import load_frame_tokens

            gen = load_frame_tokens(ft)
            gen.save_pretrained(str(self.out / "frame_tokens"), safe_serialization=True)
            ft_class = type(gen).__name__
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
        if ft_class is not None:
            index["frame_tokens"] = ["pipelines.frame_tokens", ft_class]
        (self.out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        meta = {"unet_source": src.name, "size": [k for k, v in SIZES.items() if v is self.cfg][:1], "seed": self.seed,
                "world": self.world.version}
        if self.world.version == 2:
            meta["caption_dropout"] = self.dropout
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
    p.add_argument("--resume", action="store_true", help="continue from <work>/<stage>/checkpoints/step_N.pt")
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
    p.add_argument("--freeze-image", action="store_true",
                   help="joint stage: train the motion modules (and frame tokens) only; the UNet's image layers, "
                        "which micro-harivo uses as its frozen image model, stay as they are")
    p.add_argument("--freeze-unet", action="store_true",
                   help="joint stage with --frame-tokens: train the frame-token generator only, for the UNet as it is")
    p.add_argument("--init-frame-tokens", default=None,
                   help="with --frame-tokens: continue this trained frame-token generator folder")
    p.add_argument("--frame-tokens", type=int, default=0,
                   help="joint stage: train HARIVO frame-wise tokens, this many per frame (0 = none; HARIVO uses 3)")
    p.add_argument("--world", type=int, default=1, choices=[1, 2],
                   help="the micro world to train on: 1 (what assets/micro ships: 4 gray backgrounds, full captions) "
                        "or 2 (backgrounds are looks, captions with attribute dropout, world 2's vocabulary)")
    p.add_argument("--dropout", type=float, default=None,
                   help=f"with --world 2: probability that a caption leaves out each attribute and each part of a "
                        f"named look (default {world.DROPOUT})")
    for s in STAGES[:-1]:
        p.add_argument(f"--{s}-steps", type=int, default=DEFAULT_STEPS[s], help=f"steps of stage {s}")
    p.add_argument("--steps", type=int, default=None, help="override the steps of every stage run")
    return p


def main(argv: list[str] | None = None) -> int:
    p = add_arguments(argparse.ArgumentParser(prog="python -m pipelines.training micro-models", description=__doc__,
                                              formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    from ..micro import MICRO_DIR

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        print(f"error: unknown stage(s) {bad}; choose from {STAGES}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else MICRO_DIR
    work = Path(args.work) if args.work else Path("runs/micro-train")
    try:
        tr = _trainer(args, out, work)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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


def _trainer(args, out: Path, work: Path) -> "Trainer":
    return Trainer(out, work, size=args.size, seed=args.seed, device=args.device, resume=args.resume,
                   quiet=args.quiet, ckpt_every=args.ckpt_every, stop_at=args.stop_at, loss_weight=args.loss_weight,
                   init_unet=args.init_unet, train_text=args.train_text,
                   reset_motion_words=args.reset_motion_words, lr=args.lr, text_aux_weight=args.text_aux_weight,
                   text_aux_pretrain=args.text_aux_pretrain, text_lr_scale=args.text_lr_scale,
                   t_sampling=args.t_sampling, frame_tokens=args.frame_tokens, x0_target=args.x0_target,
                   prediction=args.prediction, init_frame_tokens=args.init_frame_tokens,
                   write_at_stop=args.write_at_stop, freeze_image=args.freeze_image,
                   freeze_unet=args.freeze_unet, world_version=args.world, dropout=args.dropout)


if __name__ == "__main__":
    raise SystemExit(main())
