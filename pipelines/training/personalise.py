"""HARIVO's personalised base in miniature: a "striped" image model under the micro model's temporal parts.

HARIVO trains only video parts on a frozen text-to-image model, so the same parts should work on a personalised
image model of that family (a LoRA or a fine-tuned checkpoint). Here:
1. the image part of the shipped micro UNet (`image_unet_from_video`) gets a LoRA on its attention projections,
   trained on single frames whose background is always striped, captioned with a background drawn from all four
   (a "style" model: it draws stripes whatever the prompt's background says);
2. the LoRA is saved in diffusers' format (`StableDiffusionPipeline.save_lora_weights`) and loaded into the video
   pipeline with `pipe.load_lora_weights`, under the shipped temporal layers, which it does not touch;
3. both pipelines (with and without the LoRA) sample the same prompts and seeds; the exact detector reads the
   background (the personalisation) and the direction, colour and shape (what the video parts and the prompt carry).

    python -m pipelines.training.personalise --steps 300 --out runs/striped-lora
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _frames_batch(rng: np.random.Generator, n: int, background: str):
    """n single frames with the given background, captioned with a background drawn from all four."""
    from ..micro import world

    frames, captions = [], []
    for _ in range(n):
        a = world.sample_attributes(rng, "train")
        clip, _ = world.render_clip(a["colour"], a["shape"], a["motion"], background, rng=rng)
        frames.append(clip[int(rng.integers(clip.shape[0]))])
        captions.append(world.caption(a["colour"], a["shape"], a["motion"], a["background"]))
    return torch.stack(frames), captions


def lora_image_unet(pipe, rank: int = 8):
    """The image part of `pipe.unet` (`image_unet_from_video`, frozen) with a LoRA of `rank` on its attention
    projections (`LORA_TARGETS`), in train mode; returns (model, the LoRA's parameters)."""
    import peft

    from .modules import image_unet_from_video

    image = image_unet_from_video(pipe.unet).train()
    image.requires_grad_(False)
    image.add_adapter(peft.LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                      target_modules=LORA_TARGETS))
    return image, [p for p in image.parameters() if p.requires_grad]


def train_lora(pipe, out: Path, steps: int = 300, batch: int = 16, rank: int = 8, lr: float = 1e-3,
               background: str = "striped", seed: int = 0, log=print, quiet: bool = False) -> dict:
    """Train a LoRA on the image part of `pipe.unet` (frames with `background` only) on the training package's one
    loop (`loop.run_steps`: constant LR, no clipping, the step log in `out/train/log.jsonl`); save it in `out`."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from .losses import noised, simple_loss
    from .loop import TextCache, make_accelerator, run_steps, start_run

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    image, params = lora_image_unet(pipe, rank)
    opt = torch.optim.AdamW(params, lr=lr)
    vae, sched = pipe.vae, pipe.scheduler
    alphas = sched.alphas_cumprod.float()
    encode = TextCache(pipe.text_encoder, pipe.tokenizer, pipe.device)

    def loss_fn(batch_):
        frames, captions = batch_
        with torch.no_grad():
            z0 = vae.encode(frames * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        t = torch.randint(0, len(alphas), (batch,))
        zt, target = noised(z0, torch.randn_like(z0), alphas[t], sched.config.prediction_type)
        loss = simple_loss(model(zt, t, encoder_hidden_states=encode(captions)).sample, target)
        return loss, {"loss": loss}

    acc = make_accelerator(cpu=pipe.device.type == "cpu", device_placement=False)
    model, opt = acc.prepare(image, opt)
    config = {"steps": steps, "batch": batch, "rank": rank, "lr": lr, "background": background, "seed": seed}
    start_run(acc, out / "train", 0, json.dumps(config, indent=2))
    t0 = time.perf_counter()
    rows = run_steps(acc, model, opt, out=out / "train", start=0, end=steps, total=steps, lr=lr,
                     lr_factor=lambda step: 1.0, batch_fn=lambda step, micro: _frames_batch(rng, batch, background),
                     loss_fn=loss_fn, params=params, log_every=50, desc="lora", quiet=quiet)
    losses = [r["loss"] for r in rows]
    seconds = round(time.perf_counter() - t0, 1)
    log(f"lora: {steps} steps, loss {np.mean(losses[:25]):.4f} -> {np.mean(losses[-25:]):.4f} ({seconds:.0f} s)")
    StableDiffusionPipeline.save_lora_weights(
        str(out), unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(acc.unwrap_model(model))))
    return {"steps": steps, "batch": batch, "rank": rank, "lr": lr, "seconds": seconds,
            "loss_first": float(np.mean(losses[:25])), "loss_last": float(np.mean(losses[-25:]))}


def prompts() -> list[dict]:
    """Train-split (colour, shape, motion) combinations, one per motion and colour pair, on black or gray."""
    from ..micro import world

    out = []
    combos = [c for c in world.TRAIN_COMBOS]
    for i, motion in enumerate(world.MOTIONS):
        picks = [c for c in combos if c[2] == motion][:2]
        for j, (c, s, m) in enumerate(picks):
            bg = ("black", "gray")[(i + j) % 2]
            out.append(dict(prompt=world.caption(c, s, m, bg), colour=c, shape=s, motion=m, background=bg))
    return out


def score(pipe, seeds: int, steps: int = 20) -> dict:
    """Share of videos with a striped background, and of those showing the prompt's background, direction, colour
    and shape (the evaluation package's readers: `detect`, `content_kept`)."""
    from ..evaluation.readers import content_kept, detect

    keys = {"background_kept": "background", "direction": "motion", "colour": "colour", "shape": "shape"}
    rows = []
    for pi, p in enumerate(prompts()):
        for k in range(seeds):
            g = torch.Generator().manual_seed(1000 * pi + k)
            v = pipe(p["prompt"], num_frames=8, num_inference_steps=steps, guidance_scale=7.5, generator=g,
                     output_type="pt").frames[0]
            d = detect(v)
            ok = content_kept(d, p, tuple(keys.values()))
            rows.append({"striped": d["background"] == "striped",
                         **{name: ok[f"{k}_ok"] == 1.0 for name, k in keys.items()}})
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["videos"] = len(rows)
    return out


def run(steps: int, seeds: int, out: Path, log=print) -> dict:
    from ..micro.loading import load_micro_pipeline

    torch.set_num_threads(1)
    pipe = load_micro_pipeline()
    pipe.set_progress_bar_config(disable=True)
    temporal = {n: p.detach().clone() for n, p in pipe.unet.named_parameters() if "motion_modules" in n}
    res = {"lora": train_lora(pipe, out / "lora", steps=steps, log=log)}
    res["base"] = score(pipe, seeds)
    pipe.load_lora_weights(str(out / "lora"))
    state = pipe.unet.state_dict()
    res["temporal_untouched"] = all(torch.equal(state[n], p) for n, p in temporal.items())
    res["striped_base"] = score(pipe, seeds)
    (out / "result.json").write_text(json.dumps(res, indent=1))
    return res


def table(res: dict) -> str:
    lines = ["| image model under the shipped temporal layers | striped background | prompt's background | "
             "direction | colour | shape |", "|---|---|---|---|---|---|"]
    for key, name in (("base", "shipped image part"), ("striped_base", "+ striped LoRA (personalised base)")):
        m = res[key]
        lines.append(f"| {name} | {m['striped']:.0%} | {m['background_kept']:.0%} | {m['direction']:.0%} | "
                     f"{m['colour']:.0%} | {m['shape']:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.training.personalise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="LoRA training steps")
    p.add_argument("--seeds", type=int, default=2, help="videos per prompt (10 prompts)")
    p.add_argument("--out", default="runs/striped-lora")
    a = p.parse_args(argv)
    if a.steps < 1 or a.seeds < 1:
        print("error: --steps and --seeds must be at least 1", file=sys.stderr)
        return 2
    res = run(a.steps, a.seeds, Path(a.out), log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(res))
    print(f"\nLoRA: {res['lora']}; temporal layers untouched by the LoRA: {res['temporal_untouched']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
