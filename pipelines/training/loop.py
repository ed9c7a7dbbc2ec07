"""The one training loop (`run_steps`, on Hugging Face `accelerate`) and HARIVO's training run (`train`) on it; the
micro-model stages (`micro_stages`) use the same loop, checkpoints and logs. One CPU process, DDP over GPUs (or CPU
processes with gloo), FSDP as an option, mixed precision, gradient accumulation, checkpoint/resume, a progress bar
and a JSON-lines log with every loss term.

    python -m pipelines.training --config micro --steps 500 --out runs/harivo-micro
    accelerate launch --num_processes 2 -m pipelines.training --config tiny      # DDP (gloo on CPU)

Outputs in `out`: `log.jsonl` (one line per logged step: every loss term averaged over processes and accumulation
micro-steps, lr, wall seconds), `checkpoints/step_N.pt` (trained parameters, contrastive queue, optimiser, step),
`final/` (`motion_adapter/`, `mapping/`, `frame_tokens/`, `harivo.json`), loadable with `load_video_parts`.

Randomness is a function of `(seed, stream position of the sample)` (timestep, noise, caption drop, frame pair) and
batches come from `StepBatches`, so a resumed run repeats an uninterrupted one exactly, and a 2-process run sees the
same samples with the same noise as a 1-process run with twice the accumulation.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig
from .data import StepBatches, collate, open_dataset
from .losses import HarivoObjective, LossWeights
from ..frame_tokens import HarivoFrameTokens
from .modules import ContrastiveProjection, MappingNetwork, build_video_unet, image_unet_from_video

TERMS = ("simple", "trs", "reg", "dc")


# --------------------------------------------------------------------------------------------- components
def _scheduler_alphas(beta_schedule: str, prediction_type: str):
    from diffusers import DDIMScheduler

    s = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule=beta_schedule,
                      prediction_type=prediction_type)
    return s.alphas_cumprod.clone()


def load_base(cfg: TrainConfig) -> dict:
    """The frozen image model and its companions: unet2d, vae, text_encoder, tokenizer, alphas_cumprod,
    prediction_type, and (micro with keep_temporal) the base's own motion adapter."""
    adapter = None
    if cfg.base == "tiny":
        from ..testing import tiny_components

        c = tiny_components(seed=cfg.seed)
        unet2d, vae, text, tok = c["unet"], c["vae"], c["text_encoder"], c["tokenizer"]
        pred = "epsilon"
    elif cfg.base == "micro":
        from diffusers import AutoencoderKL, DDIMScheduler, UNetMotionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        from ..micro import MICRO_DIR, check_micro_dir

        folder = check_micro_dir(cfg.base_folder or MICRO_DIR)
        video = UNetMotionModel.from_pretrained(str(folder / "unet"))
        unet2d = image_unet_from_video(video)
        if cfg.keep_temporal:
            import tempfile

            from diffusers import MotionAdapter

            with tempfile.TemporaryDirectory() as d:
                video.save_motion_modules(d)
                adapter = MotionAdapter.from_pretrained(d)
        vae = AutoencoderKL.from_pretrained(str(folder / "vae"))
        text = CLIPTextModel.from_pretrained(str(folder / "text_encoder"))
        tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
        pred = DDIMScheduler.from_pretrained(str(folder / "scheduler")).config.prediction_type
        if cfg.motion_heads is None:
            cfg.motion_heads = video.config.motion_num_attention_heads
    else:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        try:
            unet2d = UNet2DConditionModel.from_pretrained(cfg.base, subfolder="unet")
            vae = AutoencoderKL.from_pretrained(cfg.base, subfolder="vae")
            text = CLIPTextModel.from_pretrained(cfg.base, subfolder="text_encoder")
            tok = CLIPTokenizer.from_pretrained(cfg.base, subfolder="tokenizer")
            pred = DDIMScheduler.from_pretrained(cfg.base, subfolder="scheduler").config.prediction_type
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"base image model {cfg.base!r} could not be loaded (a diffusers Stable Diffusion folder "
                             f"or hub id with unet/vae/text_encoder/tokenizer/scheduler): {e}") from e
    if cfg.motion_adapter:
        from diffusers import MotionAdapter

        adapter = MotionAdapter.from_pretrained(cfg.motion_adapter)
    for m in (unet2d, vae, text):
        m.requires_grad_(False).eval()
    return {"unet2d": unet2d, "vae": vae, "text_encoder": text, "tokenizer": tok,
            "alphas_cumprod": _scheduler_alphas(cfg.beta_schedule, pred), "prediction_type": pred,
            "motion_adapter": adapter}


def latent_size(cfg: TrainConfig, vae) -> int:
    return cfg.resolution // (2 ** (len(vae.config.block_out_channels) - 1))


def build_objective(cfg: TrainConfig, base: dict) -> HarivoObjective:
    torch.manual_seed(cfg.seed)  # identical initial trained parts on every process
    unet2d, text, tok = base["unet2d"], base["text_encoder"], base["tokenizer"]
    kw = {"motion_num_attention_heads": cfg.motion_heads} if cfg.motion_heads else {}
    unet = build_video_unet(unet2d, base["motion_adapter"], zero_init=base["motion_adapter"] is None, **kw)
    unet.train()
    if not cfg.train_temporal:
        unet.requires_grad_(False)
    mapping = MappingNetwork(channels=unet2d.config.in_channels, hidden=cfg.mapping_hidden) if cfg.mapping else None
    tokens = None
    if cfg.frame_tokens == "paper":
        tokens = HarivoFrameTokens(dim=text.config.hidden_size, text_length=tok.model_max_length,
                                   num_tokens=cfg.num_frame_tokens, max_frames=cfg.max_frames)
    projection = None
    if cfg.w_dc > 0:
        bottleneck = latent_size(cfg, base["vae"]) // (2 ** (len(unet2d.config.block_out_channels) - 1))
        projection = ContrastiveProjection(unet2d.config.block_out_channels[-1], bottleneck)
    return HarivoObjective(unet, base["alphas_cumprod"], base["prediction_type"], mapping=mapping,
                           frame_tokens=tokens, projection=projection,
                           weights=LossWeights(cfg.w_trs, cfg.w_reg, cfg.w_dc), tau=cfg.tau,
                           queue_size=cfg.queue_size, trs_max_tokens=cfg.trs_max_tokens)


class TextCache:
    def __init__(self, text_encoder, tokenizer, device):
        self.text, self.tok, self.device, self.cache = text_encoder, tokenizer, device, {}

    @torch.no_grad()
    def __call__(self, caps: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(caps) if c not in self.cache]
        if missing:
            ids = self.tok(missing, padding="max_length", max_length=self.tok.model_max_length, truncation=True,
                           return_tensors="pt").input_ids.to(self.device)
            for c, h in zip(missing, self.text(ids)[0]):
                self.cache[c] = h
            if len(self.cache) > 50_000:  # real captions rarely repeat: keep the cache bounded
                self.cache = {c: self.cache[c] for c in caps}
        return torch.stack([self.cache[c] for c in caps])


def sample_randomness(cfg: TrainConfig, positions: list[int], num_frames: int, num_train_timesteps: int):
    """Per sample, from (seed, stream position): timestep, noise seed, caption drop, the L_DC frame pair."""
    ts, seeds, drop, pairs = [], [], [], []
    for g in positions:
        rng = np.random.default_rng([cfg.seed, 7, g])
        ts.append(int(rng.integers(num_train_timesteps)))
        seeds.append(int(rng.integers(2**62)))
        drop.append(bool(rng.random() < cfg.p_uncond))
        pairs.append(rng.choice(num_frames, size=2, replace=False))
    return torch.tensor(ts), seeds, drop, torch.as_tensor(np.stack(pairs))


def make_noise(seeds: list[int], shape: tuple) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])


# ------------------------------------------------------------------------------------------- checkpoints
QUEUE_BUFFERS = ("queue", "queue_len", "queue_ptr")  # HarivoObjective's contrastive queue (checkpointed)


def _trained_state(model) -> dict:
    own = dict(model.named_parameters())
    state = {k: v.detach().cpu().clone() for k, v in own.items() if v.requires_grad}
    for k in QUEUE_BUFFERS:
        if hasattr(model, k):
            state[k] = getattr(model, k).detach().cpu().clone()
    return state


def save_checkpoint(path: Path, step: int, model, opt, cfg: TrainConfig | dict) -> None:
    """`step_N.pt`: `{"step", "trained" (every trainable parameter, and HARIVO's queue), "opt"}`, tensors and numbers
    only, so it loads with `torch.load(weights_only=True)`; `step_N.json` beside it: `{"step", "config"}`. `cfg` is a
    `TrainConfig` (HARIVO) or a plain dict (a micro-model stage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = cfg if isinstance(cfg, dict) else json.loads(cfg.to_json())
    side = checkpoint_sidecar(path)
    tmp, side_tmp = path.with_suffix(".tmp"), side.with_suffix(".json.tmp")
    torch.save({"step": int(step), "trained": _trained_state(model), "opt": opt.state_dict()}, tmp)
    side_tmp.write_text(json.dumps({"step": int(step), "config": config}, indent=2) + "\n")
    side_tmp.replace(side)
    tmp.replace(path)


def checkpoint_sidecar(path: Path) -> Path:
    """The JSON beside a checkpoint (`step_N.pt` -> `step_N.json`): its step and training configuration."""
    return Path(path).with_suffix(".json")


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's tensors and step, read with `weights_only=True` (no code in the file is ever run), plus its
    sidecar's `config` when there is one. A file that needs arbitrary unpickling (written by something else) is
    refused with a `ValueError` that says so."""
    import pickle

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as e:
        raise ValueError(f"checkpoint {path} cannot be read safely (torch.load with weights_only=True refused it: "
                         f"{str(e).splitlines()[0][:200]}); only checkpoints of tensors and numbers are loaded, "
                         "as save_checkpoint writes them") from None
    if not isinstance(ck, dict):
        raise ValueError(f"checkpoint {path} is not a checkpoint dict")
    side = checkpoint_sidecar(path)
    if "config" not in ck and side.is_file():
        ck["config"] = json.loads(side.read_text()).get("config")
    return ck


def load_checkpoint(path: Path, model, opt=None) -> int:
    ck = read_checkpoint(path)
    trained = ck["trained"] if "trained" in ck else ck["model"]  # "model": the micro trainer's former format
    missing = [k for k, p in model.named_parameters() if p.requires_grad and k not in trained]
    if missing:
        raise ValueError(f"checkpoint {path} does not match this configuration: no weights for {missing[0]}")
    model.load_state_dict(trained, strict=False)
    if opt is not None:
        opt.load_state_dict(ck["opt"])
    return int(ck["step"])


def _checkpoints(out: Path) -> list[Path]:
    return sorted((Path(out) / "checkpoints").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))


def latest_checkpoint(out: Path) -> Path | None:
    cks = _checkpoints(out)
    return cks[-1] if cks else None


def export(model, folder: Path, cfg: TrainConfig) -> Path:
    """The trained video parts: `motion_adapter/`, `mapping/`, `frame_tokens/` (diffusers layout), `harivo.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    model.unet.save_motion_modules(str(folder / "motion_adapter"))
    for name in ("mapping", "frame_tokens"):
        m = getattr(model, name)
        if m is not None:
            m.save_pretrained(str(folder / name))
    (folder / "harivo.json").write_text(cfg.to_json() + "\n")
    return folder


def _place(module, like):
    """`module` on `like`'s device and dtype; a cast only when the dtype differs (diffusers warns on every `.to(dtype)`)."""
    module = module.to(like.device)
    return module.to(dtype=like.dtype) if module.dtype != like.dtype else module


def load_video_parts(pipe, folder: str | Path, frame_tokens: bool = True):
    """Put trained HARIVO parts under a pipeline's image model (any `AnimateDiffPipeline` whose `unet` is a
    `UNetMotionModel` or a `UNet2DConditionModel` of the same family): its image weights are kept, the motion
    modules come from `folder/motion_adapter`, the mapping network is attached before the UNet, and the frame-token
    generator becomes `pipe.frame_tokens` (used by `GuidedAnimateDiffPipeline`). Returns the pipeline."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    from .modules import attach_mapping

    folder = Path(folder)
    if not (folder / "motion_adapter" / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no trained temporal layers (motion_adapter/config.json)")
    unet = pipe.unet
    image = unet if isinstance(unet, UNet2DConditionModel) else image_unet_from_video(unet)
    adapter = MotionAdapter.from_pretrained(str(folder / "motion_adapter"))
    try:
        video = UNetMotionModel.from_unet2d(image, adapter)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"the trained temporal layers in {folder} do not fit this image model: {e}") from e
    video = _place(video, image).eval()
    pipe.register_modules(unet=video)
    if (folder / "mapping" / "config.json").is_file():
        mapping = _place(MappingNetwork.from_pretrained(str(folder / "mapping")), image)
        attach_mapping(video, mapping.eval())
        video._harivo_mapping = mapping
    if hasattr(pipe, "frame_tokens"):
        from ..frame_tokens import load_frame_tokens

        tokens = None
        if frame_tokens and (folder / "frame_tokens" / "config.json").is_file():
            tokens = _place(load_frame_tokens(folder / "frame_tokens"), image).eval()
            tokens.check_fits(pipe.text_encoder, pipe.tokenizer)
        # the pipeline's own generator (if any) was trained with other temporal layers: replaced, or dropped
        pipe.register_modules(frame_tokens=tokens)
    return pipe


# -------------------------------------------------------------------------------- the shared step loop
def make_accelerator(cpu: bool | None = None, mixed_precision: str = "no", grad_accum: int = 1, fsdp: bool = False,
                     device_placement: bool = True):
    """The `Accelerator` of every training run here (HARIVO, micro-model stages). `cpu=None`: CPU where there is no
    GPU; then with several processes (torchrun / `accelerate launch --multi_gpu`) accelerate sets up gloo DDP across
    CPU processes instead of running each process alone."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    kwargs = {}
    if fsdp:
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin()
    return Accelerator(cpu=not torch.cuda.is_available() if cpu is None else cpu, mixed_precision=mixed_precision,
                       gradient_accumulation_steps=grad_accum, device_placement=device_placement,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)], **kwargs)


def start_run(acc, out: Path, start: int, config_json: str) -> Path:
    """A run folder: `out/config.json` written, `out/log.jsonl` emptied unless resuming (`start > 0`); the log path."""
    log_path = Path(out) / "log.jsonl"
    if acc.is_main_process:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "config.json").write_text(config_json + "\n")
        if start == 0 and log_path.exists():
            log_path.unlink()
    return log_path


def run_steps(acc, model, opt, *, out: Path, start: int, end: int, total: int, lr: float,
              lr_factor: Callable[[int], float], batch_fn: Callable, loss_fn: Callable, params: list,
              max_grad_norm: float | None = None, grad_accum: int = 1, log_every: int = 10,
              ckpt_every: int | None = None, config: TrainConfig | dict | None = None, keep_last: int | None = None,
              desc: str = "train", quiet: bool = False) -> list[dict]:
    """The one training loop: steps `start .. end-1` of a `total`-step run, for HARIVO (`train`), the micro-model
    stages (`micro_stages`), the personalised base's LoRA (`personalise.train_lora`) and the frame-token refit
    (`scripts/convert_micro_frame_tokens.py`).

    Per step: every param group's LR = `lr · lr_factor(step) · group.get("lr_scale", 1)`; per accumulation micro-step
    `batch = batch_fn(step, micro)` (outside autocast), then inside `acc.accumulate` / `acc.autocast`
    `loss, terms = loss_fn(batch)`, `acc.backward(loss)`, gradient clipping to `max_grad_norm` (None/0: none), the
    optimiser step. `terms` (tensors: averaged over micro-steps and processes; numbers: over micro-steps) make the
    step's row `{"step": step + 1, **terms, "lr", "wall_s"}`, written to `out/log.jsonl` every `log_every` steps (and
    at the first and last step). With `ckpt_every`, `save_checkpoint` writes `out/checkpoints/step_N.pt` every
    `ckpt_every` steps and at `end` (`keep_last`: older ones removed). Returns every step's row."""
    from tqdm.auto import tqdm

    out = Path(out)
    log_path = out / "log.jsonl"
    raw = acc.unwrap_model(model)
    bar = tqdm(total=total, initial=start, desc=desc, disable=quiet or not acc.is_local_main_process,
               mininterval=2.0, file=sys.stderr)
    history = []
    t0 = time.time()
    model.train()
    for step in range(start, end):
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step) * g.get("lr_scale", 1.0)
        sums: dict = {}
        for micro in range(grad_accum):
            batch = batch_fn(step, micro)
            with acc.accumulate(model):
                with acc.autocast():
                    loss, terms = loss_fn(batch)
                acc.backward(loss)
                if acc.sync_gradients and max_grad_norm:
                    acc.clip_grad_norm_(params, max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            for k, v in terms.items():
                if torch.is_tensor(v):
                    v = v.detach().float()
                    sums.setdefault(k, torch.zeros((), device=v.device))
                else:
                    sums.setdefault(k, 0.0)
                sums[k] = sums[k] + v / grad_accum
        tensors = [k for k, v in sums.items() if torch.is_tensor(v)]
        reduced = dict(zip(tensors, acc.reduce(torch.stack([sums[k] for k in tensors]), reduction="mean"))) \
            if tensors else {}
        row = {"step": step + 1, **{k: float(reduced[k]) if k in reduced else v for k, v in sums.items()},
               "lr": opt.param_groups[0]["lr"], "wall_s": round(time.time() - t0, 3)}
        history.append(row)
        bar.update(1)
        if step % 5 == 0:
            bar.set_postfix({k: f"{row[k]:.4f}" for k in sums if k != "total"})
        if acc.is_main_process and ((step + 1) % log_every == 0 or step == start or step + 1 == end):
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if ckpt_every and ((step + 1) % ckpt_every == 0 or step + 1 == end):
            acc.wait_for_everyone()
            if acc.is_main_process:
                save_checkpoint(out / "checkpoints" / f"step_{step + 1}.pt", step + 1, raw, opt, config)
                if keep_last:
                    for old in _checkpoints(out)[:-keep_last]:
                        old.unlink()
                        checkpoint_sidecar(old).unlink(missing_ok=True)
    bar.close()
    return history


# ------------------------------------------------------------------------------------------------ the loop
def train(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None, quiet: bool = False) -> dict:
    """Run (or resume) training; returns {"steps", "log" (list of dicts), "final", "seconds", "processes"}."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = make_accelerator(mixed_precision=cfg.mixed_precision, grad_accum=cfg.grad_accum, fsdp=cfg.fsdp)
    out = Path(cfg.out)
    base = load_base(cfg)
    device = acc.device
    vae, text = base["vae"].to(device), base["text_encoder"].to(device)
    embed = TextCache(text, base["tokenizer"], device)
    model = build_objective(cfg, base).to(device)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    ck = latest_checkpoint(out) if resume else None
    if ck is not None:
        start = load_checkpoint(ck, model, opt)
    model, opt = acc.prepare(model, opt)
    raw = acc.unwrap_model(model)
    data = open_dataset(cfg.data, cfg.data_path, cfg.num_frames, cfg.resolution, cfg.frame_stride, cfg.seed,
                        cfg.video_root, cfg.micro_backgrounds, fps=cfg.fps, random_window=cfg.random_window,
                        micro_world=cfg.micro_world)
    batches = StepBatches(len(data), cfg.batch_size, cfg.grad_accum, acc.process_index, acc.num_processes, cfg.seed)
    loader = _Prefetch(data, batches, start, stop_at or cfg.steps, cfg.grad_accum, cfg.num_workers)
    T = len(base["alphas_cumprod"])
    start_run(acc, out, start, cfg.to_json())
    from .schedule import config_factor

    t0 = time.time()
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps

    def batch_fn(step: int, micro: int):
        positions, frames, caps = loader.get(step, micro)
        ts, seeds, drop, pairs = sample_randomness(cfg, positions, cfg.num_frames, T)
        with torch.no_grad():
            x = frames.to(device).flatten(0, 1)
            z0 = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
            z0 = z0.unflatten(0, frames.shape[:2]).permute(0, 2, 1, 3, 4).contiguous()
        noise = make_noise(seeds, tuple(z0.shape[1:])).to(device)
        caps = ["" if d else c for c, d in zip(caps, drop)]
        return z0, caps, noise, ts.to(device), pairs.to(device)

    def loss_fn(batch):
        z0, caps, noise, ts, pairs = batch
        losses = model(z0, embed(caps), noise, ts, pairs)
        return losses["total"], {k: losses[k] for k in (*TERMS, "total") if k in losses}

    # the LR: diffusers' get_scheduler multiplier, a pure function of the step (resume-exact)
    history = run_steps(acc, model, opt, out=out, start=start, end=end, total=cfg.steps, lr=cfg.lr,
                        lr_factor=config_factor(cfg), batch_fn=batch_fn, loss_fn=loss_fn,
                        params=list(raw.trainable_parameters()), max_grad_norm=cfg.max_grad_norm,
                        grad_accum=cfg.grad_accum, log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, config=cfg,
                        desc="harivo", quiet=quiet)
    acc.wait_for_everyone()
    final = None
    if end == cfg.steps and acc.is_main_process:
        final = export(raw, out / "final", cfg)
    acc.wait_for_everyone()
    seconds = time.time() - t0
    return {"steps": end - start, "log": history, "final": str(final) if final else None, "seconds": seconds,
            "processes": acc.num_processes, "model": raw}


class _Prefetch:
    """This process's micro-batches in order, read by `num_workers` DataLoader workers (0: in the main process)."""

    def __init__(self, data, batches: StepBatches, start: int, end: int, accum: int, workers: int):
        self.data, self.batches = data, batches
        order = [(s, m) for s in range(start, end) for m in range(accum)]
        self.keys = order
        # (dataset index, stream position): the position seeds a real video's random temporal window
        sampler = [[(i, g) for g, i in batches.indices(s, m)] for s, m in order]
        self.positions = {(s, m): [g for g, _ in batches.indices(s, m)] for s, m in order}
        self.it = iter(torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=workers,
                                                   collate_fn=collate)) if order else iter(())
        self.next_key = 0

    def get(self, step: int, micro: int):
        key = self.keys[self.next_key]
        if key != (step, micro):
            raise RuntimeError(f"data order broken: expected {key}, asked {(step, micro)}")
        self.next_key += 1
        frames, caps = next(self.it)
        return self.positions[key], frames, caps


def loss_drop(history: list[dict], term: str = "total", k: int | None = None) -> tuple[float, float]:
    """Mean of `term` over the first and last k logged steps."""
    vals = [h[term] for h in history if term in h]
    k = k or max(1, len(vals) // 4)
    return float(np.mean(vals[:k])), float(np.mean(vals[-k:]))


__all__ = ["train", "run_steps", "make_accelerator", "start_run", "load_base", "build_objective", "export",
           "load_video_parts", "load_checkpoint", "latest_checkpoint", "save_checkpoint", "read_checkpoint",
           "checkpoint_sidecar", "sample_randomness", "loss_drop"]
