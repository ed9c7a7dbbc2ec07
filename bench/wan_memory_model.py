"""A memory MODEL (not a measurement) of Wan 2.1 T2V 1.3B on one GPU at 832x480: unguided, TITAN (one forward-mode
jvp through the transformer and the VAE decode; with its `direct` guess also a backward through the whole decode for
the guess, with `score` / `random` none) and FreeDoM (backprop through both), at 33 and 81 frames.

    python bench/wan_memory_model.py            # prints the table (about a minute on one CPU thread)
    python bench/wan_memory_model.py --no-calibrate   # transformer and weights only, no VAE count (instant)

Where each figure comes from:
- Weights: parameter counts of the real architectures, built on the `meta` device from their configs (no download,
  no memory): `WanTransformer3DModel` (Wan 2.1 1.3B: 30 layers, 12 heads × 128, FFN 8960, text 4096) in bf16, the
  umT5-XXL encoder (`UMT5EncoderModel`, d 4096, 24 layers) in bf16, `AutoencoderKLWan` (Wan 2.1's default config)
  in fp32. `wan` keeps all three on the GPU; `wan-lean` offloads the text encoder (on the GPU only to encode).
- Tokens: N = (1 + (frames − 1)/4) latent frames × (480/16) × (832/16) patches (VAE 8× in space, patch 2×2).
- Transformer activations, per token, counted from the block's structure (d = hidden, f = FFN):
  unguided live set of one block (the residual stream and its sums in fp32, as Wan computes them; the FFN phase,
  the larger one: norm + hidden + GELU in bf16) = 2·4d + 2(d + 2f) bytes. The jvp (TITAN) holds a primal and a
  tangent of that live set (×2). Attention's N × N term: flash (SDPA on CUDA unguided, the jvp-flash kernel under
  TITAN) has none; math attention holds scores and probabilities, heads × N² × 2 × 2 bytes (bf16); TITAN's chunked
  path holds at most 2^26 fp32 scores, their probabilities and the tangents of both (4 × 2^26 × 4 bytes = 1 GiB)
  whatever N is. FreeDoM keeps every block's saved tensors for the backward: 12d + 2f bf16 values per token (norm
  outputs, q, k, v, RoPE'd q and k, attention and projection outputs, FFN hidden and GELU) plus 3 fp32 residuals,
  × 30 blocks, with flash attention (no N² term saved).
- VAE decode (Wan's decoder runs one latent frame at a time with a causal cache), COUNTED on CPU with the real
  decoder (random weights) at three small sizes (latents 6×10, 9×15, 12×20) and extrapolated linearly in the latent
  pixels P to 60×104, the mid block's one-head spatial attention (P² fp32 scores and probabilities) added
  analytically: (a) the bytes autograd saves for a backward (`saved_tensors_hooks`, once per storage; weights
  excluded), for the first latent frame and each further one: FreeDoM keeps every latent frame's; (b) a forward's
  live set: the causal cache plus the largest input + output of any one layer: the unguided final decode holds it,
  TITAN's jvp holds it in primal and tangent (×2). TITAN's "2 guessed frames" still run the whole decode (the VAE is
  causal): its jvp's memory is one latent frame's at a time, but its `direct` guess (`pipelines/guidance/titan.py`,
  `direct_guess` on a whole-video decode) backpropagates the reward through the whole decode first, keeping every
  latent frame's saved activations (as FreeDoM's decode does); the `score` and `random` guesses need no backward.
Not modelled: the allocator's fragmentation and workspace, CUDA context (~0.5 GiB), cuDNN workspaces, the reward
model (CLIP ViT-B/16 ≈ 0.6 GiB fp32). Check it against `bench/gpu_quick.sh` on a GPU.
"""
from __future__ import annotations

import argparse
import sys

import torch

GIB = 2**30
HEIGHT, WIDTH = 480, 832
#: Wan 2.1 T2V 1.3B's transformer config (its repo's transformer/config.json values)
WAN13B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
              text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6)
#: umT5-XXL encoder (Wan's text encoder)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
CHUNK_SCORES = 2**26  # pipelines/guidance/forward_ad.py DEFAULT_CHUNK_ELEMENTS


def param_count(build) -> int:
    with torch.device("meta"):
        m = build()
    return sum(p.numel() for p in m.parameters())


def weights() -> dict:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    return {"transformer": param_count(lambda: WanTransformer3DModel(**WAN13B)) * 2,
            "text_encoder": param_count(lambda: UMT5EncoderModel(UMT5Config(**UMT5_XXL))) * 2,
            "vae": param_count(lambda: AutoencoderKLWan()) * 4}


def tokens(frames: int) -> int:
    return (1 + (frames - 1) // 4) * (HEIGHT // 16) * (WIDTH // 16)


def transformer_bytes(frames: int, mode: str, attention: str) -> int:
    """Activation bytes of one transformer pass: mode none (unguided), titan (one jvp), freedom (backprop)."""
    d = WAN13B["num_attention_heads"] * WAN13B["attention_head_dim"]
    f, heads, layers = WAN13B["ffn_dim"], WAN13B["num_attention_heads"], WAN13B["num_layers"]
    n = tokens(frames)
    live = n * (2 * 4 * d + 2 * (d + 2 * f))
    if mode == "none":
        act = live
    elif mode == "titan":
        act = 2 * live
    else:
        act = layers * n * (2 * (12 * d + 2 * f) + 3 * 4 * d)
    if attention == "math":
        act += heads * n * n * 2 * 2 * (2 if mode == "titan" else 1) * (layers if mode == "freedom" else 1)
    elif attention == "chunked":
        act += 4 * CHUNK_SCORES * 4
    return act


def vae_saved_bytes(h: int, w: int, latent_frames: int) -> int:
    """Bytes autograd saves for a backward through the real-size Wan decoder at latents (1, 16, f, h, w), fp32."""
    from diffusers import AutoencoderKLWan

    if not hasattr(vae_saved_bytes, "vae"):
        torch.manual_seed(0)
        vae_saved_bytes.vae = AutoencoderKLWan().eval()
    vae = vae_saved_bytes.vae
    seen, total = {p.untyped_storage().data_ptr() for p in vae.parameters()}, [0]  # weights are counted apart

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t  # kept (by the graph) until the decode's output is dropped, so no address is reused and recounted

    z = torch.randn(1, 16, latent_frames, h, w, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = vae.decode(z, return_dict=False)
    del out
    return total[0]


@torch.no_grad()
def vae_live_bytes(h: int, w: int) -> int:
    """A forward's live set through the decoder at latents (1, 16, 2, h, w): the causal cache after the decode
    (what persists from one latent frame to the next) plus the largest input + output of any one layer."""
    vae_saved_bytes(1, 1, 1) if not hasattr(vae_saved_bytes, "vae") else None
    vae = vae_saved_bytes.vae
    peak = [0]

    def size(x):
        if torch.is_tensor(x):
            return x.numel() * x.element_size()
        if isinstance(x, (list, tuple)):
            return sum(size(v) for v in x)
        return 0

    def hook(mod, inp, out):
        peak[0] = max(peak[0], size(inp) + size(out))

    leaves = [m.register_forward_hook(hook) for m in vae.decoder.modules() if not list(m.children())]
    try:
        vae.clear_cache()
        x = vae.post_quant_conv(torch.randn(1, 16, 2, h, w))
        cache = 0
        for i in range(2):
            vae._conv_idx = [0]
            vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0)
        cache = sum(size(c) for c in vae._feat_map if torch.is_tensor(c))
        vae.clear_cache()
    finally:
        for r in leaves:
            r.remove()
    return cache + peak[0]


def vae_model(calibrate: bool = True):
    """At 60×104 latents (480×832 frames): (first latent frame's saved bytes, each further latent frame's saved
    bytes, a forward's live bytes), each fitted linearly in the latent pixels P from three small sizes; the mid
    block's spatial attention adds its P² scores and probabilities (fp32, one head) to the saved and live sets."""
    if not calibrate:
        return None
    import numpy as np

    sizes = [(6, 10), (9, 15), (12, 20)]
    rows = []
    for h, w in sizes:
        one = vae_saved_bytes(h, w, 1)
        two = vae_saved_bytes(h, w, 2)
        rows.append((h * w, one, two - one, vae_live_bytes(h, w)))
    p = np.array([r[0] for r in rows], dtype=float)
    design = np.stack([np.ones_like(p), p], axis=1)
    full = (HEIGHT // 8) * (WIDTH // 8)
    attn = 2 * full * full * 4.0
    out = []
    for col in (1, 2, 3):
        y = np.array([r[col] for r in rows], dtype=float) - 2 * p * p * 4.0  # the P² part, counted analytically
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        out.append(float(coef @ np.array([1.0, full])) + attn)
    return tuple(out)


def table(calibrate: bool = True) -> list[dict]:
    w = weights()
    vae = vae_model(calibrate)
    rows = []
    for frames in (33, 81):
        lat = 1 + (frames - 1) // 4
        for method, attention in (("none", "flash"), ("none", "math"), ("titan", "flash"), ("titan", "chunked"),
                                  ("titan-direct", "flash"), ("freedom", "flash")):
            act = transformer_bytes(frames, "titan" if method == "titan-direct" else method, attention)
            if vae is None:
                dec = None
            elif method == "none":
                dec = vae[2]
            elif method == "titan":
                dec = 2 * vae[2]  # primal + tangent of the live set, one latent frame at a time
            elif method == "titan-direct":  # the guess's backward through the whole decode dominates the jvp's
                dec = max(2 * vae[2], vae[0] + (lat - 1) * vae[1])
            else:
                dec = vae[0] + (lat - 1) * vae[1]
            resident = w["transformer"] + w["vae"]
            # unguided and TITAN: the transformer pass and the decode do not overlap (x̂0 and its tangent are all
            # that is kept); FreeDoM: the transformer's graph is alive while the decode's is built (one backward)
            peak_act = act + (dec or 0) if method == "freedom" else max(act, dec or 0)
            rows.append({"frames": frames, "tokens": tokens(frames), "method": method, "attention": attention,
                         "weights_lean": resident, "weights_full": resident + w["text_encoder"],
                         "transformer_act": act, "decode": dec,
                         "peak_lean": resident + peak_act, "peak_full": resident + w["text_encoder"] + peak_act})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-calibrate", action="store_true", help="skip the VAE count (no decode column)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = table(calibrate=not a.no_calibrate)
    g = lambda b: "-" if b is None else f"{b / GIB:.1f}"  # noqa: E731
    print("MODEL, not a measurement: Wan 2.1 T2V 1.3B, 832x480, bf16 transformer and text encoder, fp32 VAE; GiB")
    print("titan: the score or random guess (forward mode only); titan-direct: the direct guess (+ a backward through "
          "the whole decode)")
    print("| frames | tokens | method | attention | transformer act. | VAE decode | peak wan-lean | peak wan |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['frames']} | {r['tokens']} | {r['method']} | {r['attention']} | {g(r['transformer_act'])} | "
              f"{g(r['decode'])} | {g(r['peak_lean'])} | {g(r['peak_full'])} |")
    w = rows[0]
    print(f"weights: wan-lean (transformer + VAE) {g(w['weights_lean'])}, wan (+ umT5 encoder) {g(w['weights_full'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
