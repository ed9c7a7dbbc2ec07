"""Lean decoding (`Denoiser.decode` at real sizes): one frame at a time, checkpointed under reverse mode.

Same values, same reverse- and forward-mode derivatives as the plain decode; far fewer activations kept for the
backward pass; the decoder's checkpointing switch is left as it was found.
"""
from __future__ import annotations

import pytest
import torch
from torch.func import jvp

from pipelines.guidance.forward_ad import forward_ad_safe

from .engine_helpers import make_denoiser, tiny_pipe


@pytest.fixture(scope="module")
def ctx():
    return make_denoiser(tiny_pipe(), num_frames=4, cfg=1.0)


def _latents(seed=0, frames=4):
    return torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


def _reward(frames):
    return (frames - 0.3).square().mean(dim=(1, 2, 3)) * torch.arange(1, frames.shape[0] + 1)


def _value_and_grad(ctx, lean: bool, z, frames=None):
    ctx.lean_decode = lean
    try:
        x = z.clone().requires_grad_(True)
        with torch.enable_grad():
            out = ctx.decode(x, frames)
            (g,) = torch.autograd.grad(_reward(out).sum(), x)
        return out.detach(), g
    finally:
        ctx.lean_decode = None


@pytest.mark.parametrize("frames", [None, [3, 1]])
def test_lean_decode_has_the_plain_values_and_gradients(ctx, frames):
    z = _latents()
    out0, g0 = _value_and_grad(ctx, False, z, frames)
    out1, g1 = _value_and_grad(ctx, True, z, frames)
    assert out1.shape == out0.shape == (4 if frames is None else 2, 3, 16, 16)
    torch.testing.assert_close(out1, out0, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g1, g0, atol=1e-7, rtol=1e-4)
    assert g0.abs().sum() > 0


def test_lean_decode_forward_mode_matches(ctx):
    z, v = _latents(1), _latents(2)

    def J(lean):
        def f(x):
            ctx.lean_decode = lean
            return _reward(ctx.decode(x)).sum()
        return f

    try:
        with torch.no_grad(), forward_ad_safe([ctx.vae]):
            (val0, d0), (val1, d1) = jvp(J(False), (z,), (v,)), jvp(J(True), (z,), (v,))
    finally:
        ctx.lean_decode = None
    torch.testing.assert_close(val1, val0, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(d1, d0, atol=1e-7, rtol=1e-4)


def _saved_bytes(ctx, lean: bool) -> int:
    """Bytes of tensors autograd keeps for the backward of decode + reward (seen by a saved-tensors hook)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    ctx.lean_decode = lean
    try:
        x = _latents().requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _reward(ctx.decode(x)).sum()
    finally:
        ctx.lean_decode = None
    return total[0]


def test_lean_decode_keeps_far_fewer_activations(ctx):
    plain, lean = _saved_bytes(ctx, False), _saved_bytes(ctx, True)
    assert plain > 0 and lean < plain / 5, (plain, lean)


def test_lean_decode_restores_the_decoders_switch(ctx):
    dec = ctx.vae.decoder
    before = dec.gradient_checkpointing
    _value_and_grad(ctx, True, _latents())
    assert dec.gradient_checkpointing == before
    assert not hasattr(dec, "_gradient_checkpointing_func") or dec._gradient_checkpointing_func is not None


def test_lean_decode_is_chosen_by_frame_size(ctx, monkeypatch):
    monkeypatch.delenv("GVS_LEAN_DECODE", raising=False)
    factor = ctx.pipe.vae_scale_factor
    small = torch.empty(4, 4, 8, 8)
    large = torch.empty(1, 4, 256 // factor, 256 // factor)
    assert not ctx.lean_decode_on(small) and ctx.lean_decode_on(large)
    monkeypatch.setenv("GVS_LEAN_DECODE", "1")
    assert ctx.lean_decode_on(small)
    monkeypatch.setenv("GVS_LEAN_DECODE", "0")
    assert not ctx.lean_decode_on(large)
    ctx.lean_decode = True  # the argument wins over the variable
    try:
        assert ctx.lean_decode_on(large)
    finally:
        ctx.lean_decode = None
