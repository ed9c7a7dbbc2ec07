"""Fit a latent→RGB preview map for Wan 2.1's 16-channel latents against the real VAE, on your own images.

    python bench/fit_wan_latent_rgb.py PHOTOS_DIR --out wan_latent_rgb.json [--model Wan-AI/Wan2.1-T2V-1.3B-Diffusers]
    GVS_WAN_LATENT_RGB=wan_latent_rgb.json python app.py --preset wan     # previews from the map, no VAE per step

Every .png/.jpg/.jpeg/.webp under PHOTOS_DIR (a few hundred varied photos are plenty) is centre-cropped to 832×480
and encoded as a one-frame video; `pipelines.preview.fit_wan_latent_rgb` fits rgb ≈ z·W + b by least squares
against the VAE's own decode pooled over each latent pixel. Needs the
Wan VAE (downloaded once, ~0.5 GB; `hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --include "vae/*"`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from PIL import Image

    from pipelines import media
    from pipelines.presets import WAN_MODEL
    from pipelines.preview import fit_wan_latent_rgb, save_latent_rgb

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", help="a folder of photos")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--model", default=WAN_MODEL, help="hub id or folder holding vae/ (diffusers layout)")
    ap.add_argument("--size", default="832x480", help="WxH the photos are cropped to (multiples of 16)")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    files = sorted(p for p in Path(a.images).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        print(f"error: no images under {a.images}", file=sys.stderr)
        return 2
    files = files[: a.limit]
    imgs = torch.stack([torch.from_numpy(np.array(media.fit_size(Image.open(p).convert("RGB"), w, h))).permute(2, 0, 1)
                        for p in files]).float() / 255
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(a.model, subfolder="vae", torch_dtype=torch.float32).to(a.device).eval()
    m = fit_wan_latent_rgb(vae, imgs)
    save_latent_rgb(m, a.out)
    print(f"fitted on {len(files)} images at {w}x{h}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
