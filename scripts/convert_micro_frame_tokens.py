"""Refit the old micro model's `FrameTokenGenerator` into the paper's `HarivoFrameTokens` (issue #18): the starting
point of micro's frame-token training (2026-12-07), which then trains the result alone for the frozen UNet (`bench/MICRO.md`, Recipe step 10).

`assets/micro/frame_tokens` held a `FrameTokenGenerator` until 2026-12-07 (eb03cc1), the project's own architecture: standardised
text tokens projected in order, features of the frame's time, and an MLP. This script trains a `HarivoFrameTokens`
with the same `dim`, `text_length` and `num_tokens` by regression, using Adam and MSE on the `(B, F, K, D)` tokens, to
reproduce the old generator's outputs. The inputs are the micro text encoder's encodings of:
- every world caption (360);
- the empty prompt (CFG's unconditional branch);
- convex mixes of two captions.
They are taken at every frame count the `micro` preset offers (8, 12, 16), and at 32 frames for the frames past 16.

What the regression alone reaches (2026-12-07, `bench/MICRO.md`):
- `HarivoFrameTokens` ends in a SiLU, which never goes below −0.278. 29 % of the old tokens' values lie below it, so
  the relative error stays at 0.49.
- Unguided videos keep every detection.
- Guided ones lose quality: conflicting-key interpolation 6/8 against 8/8, audio Free²Guide joint 0.29 against 0.48.

So it is only the initialisation: the frame-token stage trains it further with the diffusion loss, the UNet frozen.

The script reads the old weights with its own copy of the old forward pass (the class is gone from `pipelines/`).
From git history:

    git show 9f70733:assets/micro/frame_tokens/diffusion_pytorch_model.safetensors > /tmp/old.st
    git show 9f70733:assets/micro/frame_tokens/config.json > /tmp/old.json
    python scripts/convert_micro_frame_tokens.py --old-weights /tmp/old.st --old-config /tmp/old.json \\
        --out /tmp/ft --steps 4000 --threads 1 --report /tmp/fit.json

(`--old-folder DIR` reads both from a folder instead; `--micro DIR` names the micro weights whose text encoder makes
the inputs.) It prints the fit (relative error per frame count; `--report PATH` also writes it as JSON).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class _OldFrameTokenGenerator(nn.Module):
    """Reader of the old `FrameTokenGenerator` weights (forward only; the architecture shipped until issue #18)."""

    def __init__(self, dim=768, num_tokens=3, hidden=256, time_freqs=6, max_frames=32, text_length=77,
                 token_features=16, **_):
        super().__init__()
        self.cfg = dict(dim=dim, num_tokens=num_tokens, time_freqs=time_freqs, max_frames=max_frames,
                        text_length=text_length)
        self.register_buffer("text_mean", torch.zeros(text_length, dim))
        self.register_buffer("text_scale", torch.ones(text_length, dim))
        self.token_proj = nn.Linear(dim, token_features)
        self.net = nn.Sequential(
            nn.Linear(text_length * token_features + 4 * time_freqs + 2, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, num_tokens * dim),
        )

    def forward(self, text_tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        c = self.cfg
        b = text_tokens.shape[0]
        z = (text_tokens.float() - self.text_mean) / self.text_scale
        pooled = self.token_proj(z).flatten(1)
        k = torch.arange(num_frames, dtype=torch.float32)
        u = k / max(num_frames - 1, 1)
        j = torch.arange(1, c["time_freqs"] + 1, dtype=torch.float32)
        a = math.pi * u[:, None] * j
        bb = math.pi * (k[:, None] / c["max_frames"]) * j
        tf = torch.cat([a.sin(), a.cos(), bb.sin(), bb.cos(), u[:, None], (k / c["max_frames"])[:, None]], dim=1)
        x = torch.cat([pooled[:, None].expand(b, num_frames, -1), tf[None].expand(b, -1, -1)], dim=-1)
        return self.net(x).view(b, num_frames, c["num_tokens"], c["dim"])


def load_old(weights: Path, config: Path) -> _OldFrameTokenGenerator:
    from safetensors.torch import load_file

    cfg = json.loads(Path(config).read_text())
    if cfg.get("_class_name") != "FrameTokenGenerator":
        raise ValueError(f"{config}: expected an old FrameTokenGenerator config, got {cfg.get('_class_name')!r}")
    old = _OldFrameTokenGenerator(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    old.load_state_dict(load_file(str(weights)), strict=True)
    return old.eval()


def encodings(pipe, n_mix: int, seed: int) -> tuple[torch.Tensor, dict]:
    """Text-encoder outputs of every world caption, the empty prompt and `n_mix` convex mixes of two captions."""
    from pipelines.micro import world

    caps = [world.caption(c, s, m, b) for c, s, m, b in
            itertools.product(world.COLOURS, world.SHAPES, world.MOTIONS, world.BACKGROUNDS)]
    with torch.no_grad():
        enc = torch.cat([pipe.encode_prompt(caps[i:i + 120], "cpu", 1, False)[0] for i in range(0, len(caps), 120)])
        empty = pipe.encode_prompt([""], "cpu", 1, False)[0]
    g = torch.Generator().manual_seed(seed)
    i, j = torch.randint(len(caps), (n_mix,), generator=g), torch.randint(len(caps), (n_mix,), generator=g)
    w = torch.rand(n_mix, 1, 1, generator=g)
    mixes = w * enc[i] + (1 - w) * enc[j]
    return torch.cat([enc, empty, mixes]), {"captions": len(caps), "empty": 1, "mixes": n_mix}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-folder", help="folder with the old config.json and diffusion_pytorch_model.safetensors")
    ap.add_argument("--old-weights", help="the old safetensors file (e.g. from git show)")
    ap.add_argument("--old-config", help="the old config.json (e.g. from git show)")
    ap.add_argument("--micro", default=str(REPO / "assets" / "micro"), help="the micro weights (text encoder)")
    ap.add_argument("--out", required=True, help="where to save the HarivoFrameTokens (save_pretrained)")
    ap.add_argument("--frames", default="8,12,16", help="frame counts to fit (the micro preset's choices)")
    ap.add_argument("--max-frames", type=int, default=32, help="max_frames of the new generator")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=64, help="encodings per Adam step")
    ap.add_argument("--mixes", type=int, default=360, help="convex mixes of two captions added to the data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="dtype of the saved weights")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", help="also write the fit (JSON) here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pipelines.frame_tokens import HarivoFrameTokens
    from pipelines.micro.loading import load_micro_pipeline
    from pipelines.training.loop import make_accelerator, run_steps

    if args.old_folder:
        folder = Path(args.old_folder)
        old = load_old(folder / "diffusion_pytorch_model.safetensors", folder / "config.json")
    elif args.old_weights and args.old_config:
        old = load_old(Path(args.old_weights), Path(args.old_config))
    else:
        ap.error("give --old-folder, or --old-weights and --old-config")
    frames = sorted(int(f) for f in args.frames.split(","))
    if max(frames) > args.max_frames:
        ap.error(f"--max-frames {args.max_frames} < the largest frame count {max(frames)}")

    pipe = load_micro_pipeline(args.micro)
    pipe.frame_tokens = None  # only the text encoder is used here
    x, counts = encodings(pipe, args.mixes, args.seed)
    with torch.no_grad():
        targets = {f: old(x, f) for f in frames}
        if args.max_frames > max(frames):  # frames past the preset's choices: the old tokens at max_frames
            targets[args.max_frames] = old(x, args.max_frames)
    # Frame k's target is the same for every F in the new architecture (it cannot see F): fit the mean of the old
    # tokens over the fitted frame counts that include frame k (least squares does the same, this is cheaper).
    mf = args.max_frames
    k_tokens = old.cfg["num_tokens"]
    target = torch.zeros(x.shape[0], mf, k_tokens, x.shape[-1])
    count = torch.zeros(mf)
    for f in frames:
        target[:, :f] += targets[f]
        count[:f] += 1
    if mf > max(frames):
        target[:, max(frames):] += targets[mf][:, max(frames):]
        count[max(frames):] += 1
    target /= count[:, None, None]

    torch.manual_seed(args.seed)
    new = HarivoFrameTokens(dim=old.cfg["dim"], text_length=old.cfg["text_length"], num_tokens=k_tokens, max_frames=mf)
    opt = torch.optim.Adam(new.parameters(), lr=args.lr)
    pick = torch.Generator().manual_seed(args.seed + 1)
    t0 = time.time()

    def cosine(step: int) -> float:  # cosine annealing from lr to lr/20 over the steps
        return 1 / 20 + (1 - 1 / 20) * (1 + math.cos(math.pi * step / args.steps)) / 2

    def mse(idx):
        loss = (model(x[idx], mf) - target[idx]).pow(2).mean()
        return loss, {"mse": loss}

    # the training package's one loop (a throwaway run folder: the log is printed below, not shipped with --out)
    acc = make_accelerator(cpu=True, device_placement=False)
    model, opt = acc.prepare(new, opt)
    with tempfile.TemporaryDirectory() as run:
        rows = run_steps(acc, model, opt, out=Path(run), start=0, end=args.steps, total=args.steps, lr=args.lr,
                         lr_factor=cosine, batch_fn=lambda step, micro: torch.randint(x.shape[0], (args.batch,),
                                                                                      generator=pick),
                         loss_fn=mse, params=list(new.parameters()), log_every=500, desc="fit", quiet=True)
    new = acc.unwrap_model(model)
    for r in rows:
        if r["step"] % 500 == 0 or r["step"] == 1:
            print(f"step {r['step']:5d} mse {r['mse']:.5f} ({r['wall_s']:.0f} s)", flush=True)

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    new.eval()
    if args.dtype == "fp16":
        new = new.half()
    report = {"steps": args.steps, "lr": args.lr, "batch": args.batch, "data": counts, "frames": frames,
              "max_frames": mf,
              "dtype": args.dtype, "seconds": round(time.time() - t0, 1), "relative_error": {}}
    n_cap = counts["captions"]
    with torch.no_grad():
        for f in frames:
            got = new(x, f).float()
            report["relative_error"][str(f)] = {
                "captions": round(rel(got[:n_cap], targets[f][:n_cap]), 4),
                "empty": round(rel(got[n_cap:n_cap + 1], targets[f][n_cap:n_cap + 1]), 4),
                "mixes": round(rel(got[n_cap + 1:], targets[f][n_cap + 1:]), 4),
            }
        # the floor for a generator that cannot see F: the mean target itself
        report["relative_error_of_the_F_free_target"] = {
            str(f): round(rel(target[:n_cap, :f], targets[f][:n_cap]), 4) for f in frames}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    new.save_pretrained(args.out, safe_serialization=True)
    print(json.dumps(report, indent=2))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
