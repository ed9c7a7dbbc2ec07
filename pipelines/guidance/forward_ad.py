"""What forward-mode AD (`torch.func.jvp`) needs from the models, applied only while a jvp runs.

- Attention in the "math" form: fused flash / memory-efficient SDPA kernels have no forward-mode rule.
- GroupNorm inputs made contiguous: the VAE and UNet hand GroupNorm channel-last views, which forward AD rejects.
- Optionally (`attention_slices > 0`) sliced math attention (diffusers' `SlicedAttnProcessor`), which computes the
  attention over slices of the batch×heads axis so the N×N attention matrix (and its tangent) is transient.
Unguided sampling keeps its fast kernels: all of it is undone when the context exits.
"""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def _contiguous_input(module, args):
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(),) + tuple(args[1:])
    return None


@contextlib.contextmanager
def forward_ad_safe(modules: Iterable[torch.nn.Module], attention_slices: int = 0):
    handles, saved = [], []
    modules = [m for m in modules if m is not None]
    try:
        for root in modules:
            for m in root.modules():
                if isinstance(m, torch.nn.GroupNorm):
                    handles.append(m.register_forward_pre_hook(_contiguous_input))
        if attention_slices > 0:
            from diffusers.models.attention_processor import SlicedAttnProcessor

            for root in modules:
                if hasattr(root, "set_attn_processor") and getattr(root, "attn_processors", None):
                    saved.append((root, dict(root.attn_processors)))
                    root.set_attn_processor(SlicedAttnProcessor(attention_slices))
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        for h in handles:
            h.remove()
        for root, procs in saved:
            root.set_attn_processor(procs)
