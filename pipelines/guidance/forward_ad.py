"""What forward-mode AD (`torch.func.jvp`) needs from the models, applied only while a jvp runs.

- Attention without the fused SDPA kernels (flash / memory-efficient SDPA have no forward-mode rule). The kernel is
  chosen per call by `ForwardADAttnProcessor` (see `choose_attention`):
  * `flash`: the fused Triton kernel of the optional package `jvp-flash-attention` (`pip install
    guided-video-studio[jvp-flash]`), which computes the attention and its tangent in one pass without N×N matrices.
    Used only on CUDA, for self-attention without a mask (the UNet's spatial attention, where N = h·w latents is
    large); head dims are zero-padded to the kernel's sizes (16/32/64/128/256) with the softmax scale kept.
  * `chunked` (the fallback, and always on CPU): plain math attention computed over chunks of the batch×heads and
    query axes so that no more than `chunk_elements` scores (and their tangents) exist at once. When everything
    fits in one chunk it is the math attention itself.
  * `math`: the whole N×N matrix at once (`SDPBackend.MATH`), as before.
  `auto` (the default) picks `flash` on CUDA when the package imports, else `chunked`. The environment variable
  `GVS_JVP_ATTENTION` (auto | flash | chunked | math) overrides it for a process.
- Wan's transformer (`WanAttention` modules: rotary embeddings on q and k, RMS norm across heads, optional image
  keys/values) gets `WanForwardADAttnProcessor`: the same steps with the rotation written without in-place writes
  and its attention core that of `ForwardADAttnProcessor` (flash on CUDA, chunked math on CPU).
- GroupNorm inputs made contiguous: the VAE and UNet hand GroupNorm channel-last views, which forward AD rejects.
- Optionally (`attention_slices > 0`) diffusers' `SlicedAttnProcessor` (N heads at a time), as before.
Unguided sampling keeps its fast kernels: all of it is undone when the context exits.

One forward-AD region at a time per process: PyTorch's forward-AD levels are process-wide state, so two threads
inside `torch.func.jvp` at once break each other ("Trying to access a forward AD level with an invalid index", issue
#32: an example cached beside a request, or a pool of several GPU slots). `forward_ad_safe` holds `FORWARD_AD_LOCK`
(re-entrant) for its whole block, which is where every jvp of the engine runs; a jvp outside it should use
`forward_ad_region()`.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ATTENTION_MODES = ("auto", "flash", "chunked", "math")
#: Scores held at once by the chunked path (2^26 fp32 scores = 256 MiB, plus as much again for their tangents).
DEFAULT_CHUNK_ELEMENTS = 1 << 26
FLASH_HEAD_DIMS = (16, 32, 64, 128, 256)
FLASH_MIN_TOKENS = 32
#: Held around every forward-AD region of the process (see the module docstring).
FORWARD_AD_LOCK = threading.RLock()


@contextlib.contextmanager
def forward_ad_region():
    """The process's one forward-AD region: blocks while another thread is inside one."""
    with FORWARD_AD_LOCK:
        yield


def _contiguous_input(module, args):
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(),) + tuple(args[1:])
    return None


@functools.lru_cache(maxsize=1)
def _flash_module():
    """The optional `jvp_flash_attention.jvp_attention` module, or None (not installed, or no Triton)."""
    try:
        from jvp_flash_attention import jvp_attention  # type: ignore

        return jvp_attention
    except Exception:  # ImportError, or Triton failing to initialise without a GPU
        return None


def flash_available(device) -> tuple[bool, str]:
    """(usable, why): the fused jvp kernel runs only on CUDA with `jvp-flash-attention` installed."""
    device = torch.device(device)
    if device.type != "cuda":
        return False, f"the fused jvp attention kernel needs CUDA (device is {device.type})"
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    if _flash_module() is None:
        return False, "jvp-flash-attention is not installed (pip install 'guided-video-studio[jvp-flash]')"
    return True, "jvp-flash-attention (Triton)"


def choose_attention(device, requested: Optional[str] = None) -> str:
    """The attention kernel a jvp on `device` uses: 'flash', 'chunked' or 'math'.

    `requested` (or `GVS_JVP_ATTENTION`, or 'auto'): `auto` → flash where available, else chunked; `flash` where it
    is not available falls back to chunked with a warning saying why; `chunked` and `math` are used as asked.
    """
    mode = (requested or os.environ.get("GVS_JVP_ATTENTION") or "auto").strip().lower()
    if mode not in ATTENTION_MODES:
        raise ValueError(f"jvp attention must be one of {', '.join(ATTENTION_MODES)}, got {mode!r}")
    if mode in ("chunked", "math"):
        return mode
    ok, why = flash_available(device)
    if ok:
        return "flash"
    if mode == "flash":
        warnings.warn(f"jvp attention: flash requested but unavailable ({why}); using chunked math attention",
                      stacklevel=2)
    return "chunked"


def chunked_attention(q, k, v, scale: float, mask=None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
    """softmax(q kᵀ·scale + mask) v over (B, H, N, d) tensors, at most `chunk_elements` scores at a time.

    Plain tensor ops, so forward AD (and autograd) go through it; the N×N scores of one chunk (and their tangent)
    are freed before the next chunk is computed.
    """
    b, h, nq, d = q.shape
    nk = k.shape[2]
    bh = b * h
    q, k, v = q.reshape(bh, nq, d), k.reshape(bh, nk, -1), v.reshape(bh, nk, v.shape[-1])
    if mask is not None:
        mask = mask.expand(b, h, mask.shape[-2], nk).reshape(bh, mask.shape[-2], nk)
    per_row = max(1, nk)
    rows = max(1, chunk_elements // per_row)  # query rows (over all slices) per chunk
    slice_count = max(1, min(bh, rows // max(1, nq)))  # whole slices per chunk when a slice fits
    q_chunk = nq if slice_count > 1 or rows >= nq else max(1, rows)
    outs = []
    for s in range(0, bh, slice_count):
        qs, ks, vs = q[s : s + slice_count], k[s : s + slice_count], v[s : s + slice_count]
        ms = None if mask is None else mask[s : s + slice_count]
        parts = []
        for r in range(0, nq, q_chunk):
            scores = torch.bmm(qs[:, r : r + q_chunk] * scale, ks.transpose(1, 2))
            if ms is not None:
                scores = scores + (ms if ms.shape[1] == 1 else ms[:, r : r + q_chunk]).to(scores.dtype)
            parts.append(torch.bmm(scores.softmax(dim=-1), vs))
        outs.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
    return out.reshape(b, h, nq, -1)


def _flash_head_dim(d: int) -> Optional[int]:
    for size in FLASH_HEAD_DIMS:
        if d <= size:
            return size
    return None


def flash_eligible(q, k, mask) -> bool:
    """The fused kernel's limits: CUDA self-attention, no mask, N even and ≥ 32, head dim ≤ 256, float dtypes."""
    nq, nk, d = q.shape[2], k.shape[2], q.shape[3]
    return (q.is_cuda and mask is None and nq == nk and nq >= FLASH_MIN_TOKENS and nq % 2 == 0
            and _flash_head_dim(d) is not None and q.dtype in (torch.float16, torch.bfloat16, torch.float32))


def flash_attention(q, k, v, scale: float):
    """The fused jvp kernel with the head dim zero-padded to a supported size (the padding adds 0 to every score)."""
    mod = _flash_module()
    d = q.shape[-1]
    size = _flash_head_dim(d)
    if size != d:
        q, k, v = (F.pad(t, (0, size - d)) for t in (q, k, v))
    out = mod.JVPAttn.fwd_dual(q.contiguous(), k.contiguous(), v.contiguous(), sm_scale=scale)
    return out[..., :d]


class ForwardADAttnProcessor:
    """A diffusers attention processor (the same steps as `AttnProcessor2_0`) whose core is forward-AD safe."""

    def __init__(self, mode: str = "chunked", chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
        if mode not in ("flash", "chunked", "math"):
            raise ValueError(f"mode must be flash, chunked or math, got {mode!r}")
        self.mode = mode
        self.chunk_elements = int(chunk_elements)
        self.calls = {"flash": 0, "chunked": 0, "math": 0}  # which kernel ran, for tests and benchmarks

    def core(self, q, k, v, scale: float, mask=None):
        if self.mode == "flash" and flash_eligible(q, k, mask):
            self.calls["flash"] += 1
            return flash_attention(q, k, v, scale)
        if self.mode == "math":
            self.calls["math"] += 1
            with sdpa_kernel(SDPBackend.MATH):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        self.calls["chunked"] += 1
        return chunked_attention(q, k, v, scale, mask, self.chunk_elements)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2).contiguous()).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        scale = head_dim**-0.5  # what AttnProcessor2_0's SDPA call uses (it ignores attn.scale)
        hidden_states = self.core(query, key, value, scale, attention_mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on (B, N, H, D) with interleaved (even, odd) pairs, as one out-of-place expression."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack((even * c - odd * s, even * s + odd * c), dim=-1).flatten(-2).type_as(x)


class WanForwardADAttnProcessor:
    """A processor for diffusers' `WanAttention` (Wan 2.1/2.2 transformers) whose attention core is forward-AD safe
    and bounded in memory: the steps of diffusers' `WanAttnProcessor` (q/k/v projections, RMS norm of q and k, heads,
    rotary embedding, optional image keys/values for I2V, output projection), with the core of
    `ForwardADAttnProcessor` (`flash` / `chunked` / `math`)."""

    def __init__(self, mode: str = "chunked", chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
        self.inner = ForwardADAttnProcessor(mode, chunk_elements)
        self.calls = self.inner.calls

    def _attend(self, q, k, v, mask=None):
        # (B, N, H, D) → the core's (B, H, N, D) and back; SDPA's default scale 1/√D (what Wan's processor uses)
        out = self.inner.core(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), q.shape[-1] ** -0.5, mask)
        return out.transpose(1, 2).flatten(2, 3).type_as(q)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        from diffusers.models.transformers.transformer_wan import _get_added_kv_projections, _get_qkv_projections

        image_states = None
        if attn.add_k_proj is not None:  # I2V: the first tokens are the image's (the text context is 512 long)
            n_img = encoder_hidden_states.shape[1] - 512
            image_states, encoder_hidden_states = encoder_hidden_states[:, :n_img], encoder_hidden_states[:, n_img:]
        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query, key = _rotate(query, *rotary_emb), _rotate(key, *rotary_emb)
        mask = attention_mask
        if mask is not None and mask.dim() == 2:
            mask = mask[:, None, None, :]
        out = self._attend(query, key, value, mask)
        if image_states is not None:
            key_img, value_img = _get_added_kv_projections(attn, image_states)
            key_img = attn.norm_added_k(key_img).unflatten(2, (attn.heads, -1))
            out = out + self._attend(query, key_img, value_img.unflatten(2, (attn.heads, -1)))
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _has_wan_attention(root: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "WanAttention" for m in root.modules())


@contextlib.contextmanager
def forward_ad_safe(modules: Iterable[torch.nn.Module], attention_slices: int = 0, attention: Optional[str] = None,
                    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
    """Make `modules` forward-AD safe for the duration of the block (see the module docstring).

    `attention_slices > 0` uses diffusers' sliced processor (not for Wan, whose processor is always
    `WanForwardADAttnProcessor`, sharing the kernel choice); otherwise `attention` (auto | flash | chunked | math,
    default `GVS_JVP_ATTENTION` or auto) picks the kernel through `choose_attention`. Yields the processor used
    (None for the sliced one).
    """
    with forward_ad_region():  # the processors below are swapped on shared modules too: one region at a time
        with _forward_ad_safe(modules, attention_slices, attention, chunk_elements) as processor:
            yield processor


@contextlib.contextmanager
def _forward_ad_safe(modules, attention_slices, attention, chunk_elements):
    handles, saved = [], []
    modules = [m for m in modules if m is not None]
    processor = None
    try:
        for root in modules:
            for m in root.modules():
                if isinstance(m, torch.nn.GroupNorm):
                    handles.append(m.register_forward_pre_hook(_contiguous_input))
        device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
        mode = choose_attention(device, attention)
        if attention_slices > 0:
            from diffusers.models.attention_processor import SlicedAttnProcessor

            new = SlicedAttnProcessor(attention_slices)
        else:
            new = processor = ForwardADAttnProcessor(mode, chunk_elements)
        for root in modules:
            if hasattr(root, "set_attn_processor") and getattr(root, "attn_processors", None):
                saved.append((root, dict(root.attn_processors)))
                if _has_wan_attention(root):
                    processor = WanForwardADAttnProcessor(mode, chunk_elements)
                    root.set_attn_processor(processor)
                else:
                    root.set_attn_processor(new)
        with sdpa_kernel(SDPBackend.MATH):
            yield processor
    finally:
        for h in handles:
            h.remove()
        for root, procs in saved:
            root.set_attn_processor(procs)
