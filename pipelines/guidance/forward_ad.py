"""What forward-mode AD (`torch.func.jvp`) needs from the models, applied only while a jvp runs.

- Attention in the "math" form: fused flash / memory-efficient SDPA kernels have no forward-mode rule.
- GroupNorm inputs made contiguous: the VAE and UNet hand GroupNorm channel-last views, which forward AD rejects.
Unguided sampling keeps its fast kernels: both are undone when the context exits.
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
def forward_ad_safe(modules: Iterable[torch.nn.Module]):
    handles = []
    try:
        for root in modules:
            if root is None:
                continue
            for m in root.modules():
                if isinstance(m, torch.nn.GroupNorm):
                    handles.append(m.register_forward_pre_hook(_contiguous_input))
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        for h in handles:
            h.remove()
