"""Memory-aware `auto` (faked GPU memory figures) and the UNet checkpointing switch for backprop methods."""
from __future__ import annotations

import pytest
import torch

GiB = 2**30


@pytest.mark.parametrize("free,name,offload", [
    (70 * GiB, "animatediff", False), (20 * GiB, "animatediff", False), (15 * GiB, "animatediff-lean", False),
    (11 * GiB, "animatediff-lean", False), (8 * GiB, "animatediff-lean", True), (3 * GiB, "micro", False),
])
def test_choose_auto_by_free_memory(free, name, offload):
    from pipelines.presets import choose_auto

    got, off, why = choose_auto(free, 80 * GiB)
    assert (got, off) == (name, offload)
    assert f"{free / GiB:.1f} GiB free of 80.0 GiB" in why


def test_auto_loads_the_choice_and_says_why(monkeypatch):
    """`load_preset("auto")` on a (faked) CUDA machine with a (faked) free-memory figure builds the preset that fits."""
    from pipelines import presets

    built = []

    def fake(kind):
        def build(device, reason, **kw):
            built.append((kind, kw))
            return presets.Preset(name=kind, reason=reason, pipe=None, device=device, fps=8, frame_choices=[16],
                                  size_choices=[512], default_frames=16, default_size=512, default_steps=25)
        return build

    monkeypatch.setattr(presets, "_animatediff_available", lambda: (True, "CUDA GPU found"))
    monkeypatch.setattr(presets, "_animatediff", fake("animatediff"))
    monkeypatch.setattr(presets, "_animatediff_lean", fake("animatediff-lean"))
    monkeypatch.setattr(presets, "_micro", fake("micro"))
    for i, (free, want, kw) in enumerate([(40, "animatediff", {}), (12, "animatediff-lean", {"cpu_offload": False}),
                                          (7, "animatediff-lean", {"cpu_offload": True}), (2, "micro", {})]):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None, f=free: (f * GiB, 24 * GiB))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        preset = presets.load_preset("auto", device=f"cuda:{7 + i}")  # a fresh cache key per case
        assert preset.name == want and built[-1] == (want, kw)
        assert f"{free:.1f} GiB free of 24.0 GiB" in preset.reason, preset.reason
        presets._CACHE.pop(("auto", f"cuda:{7 + i}"), None)
    assert "offloaded" in choose_reason(7)
    assert "too little" in choose_reason(2)


def choose_reason(free_gib):
    from pipelines.presets import choose_auto

    return choose_auto(free_gib * GiB)[2]


def test_want_unet_checkpointing(monkeypatch):
    from pipelines.memory import want_unet_checkpointing

    monkeypatch.delenv("GVS_UNET_CHECKPOINT", raising=False)
    assert want_unet_checkpointing((1, 4, 16, 64, 64)) and want_unet_checkpointing((1, 4, 2, 32, 32))
    assert not want_unet_checkpointing((1, 4, 8, 8, 8))  # micro / tiny sizes: recomputation is pure cost
    assert not want_unet_checkpointing((1, 4, 16, 64, 64), option=False)
    assert want_unet_checkpointing((1, 4, 8, 8, 8), option=True)
    monkeypatch.setenv("GVS_UNET_CHECKPOINT", "0")
    assert not want_unet_checkpointing((1, 4, 16, 64, 64))
    monkeypatch.setenv("GVS_UNET_CHECKPOINT", "1")
    assert want_unet_checkpointing((1, 4, 8, 8, 8))


def test_unet_checkpointing_same_gradient_recomputes_and_restores():
    """Inside the context the UNet's blocks are recomputed in the backward (their forwards run twice), the
    gradient equals the plain one, and the switch is restored afterwards (a UNet already checkpointing stays so)."""
    from pipelines.memory import unet_checkpointing
    from tests.engine_helpers import make_denoiser, tiny_pipe

    pipe = tiny_pipe()
    with torch.no_grad():  # prompt embeddings without a graph of their own
        ctx = make_denoiser(pipe, num_frames=2, steps=4)
    t = ctx.timesteps[1]
    x0 = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    resnet = next(m for n, m in pipe.unet.named_modules() if n.endswith("resnets.0"))
    runs = []
    # a pre-hook: the recomputation stops early once it has what the backward needs (no forward hook fires)
    hook = resnet.register_forward_pre_hook(lambda *a: runs.append(1))

    def grad():
        x = x0.clone().requires_grad_(True)
        runs.clear()
        (ctx.eps(x, t) ** 2).sum().backward()
        return x.grad, len(runs)

    try:
        g_plain, n_plain = grad()
        assert not pipe.unet.is_gradient_checkpointing
        with unet_checkpointing(pipe.unet, True):
            assert pipe.unet.is_gradient_checkpointing
            g_ckpt, n_ckpt = grad()
            with torch.no_grad():  # no-grad passes are unchanged (diffusers checks is_grad_enabled)
                runs.clear()
                ctx.eps(x0, t)
                assert len(runs) == n_plain
        assert not pipe.unet.is_gradient_checkpointing
        with unet_checkpointing(pipe.unet, False):
            assert not pipe.unet.is_gradient_checkpointing
    finally:
        hook.remove()
    assert n_ckpt == 2 * n_plain  # recomputed in the backward
    assert torch.allclose(g_plain, g_ckpt, atol=1e-6, rtol=1e-5)
    pipe.unet.enable_gradient_checkpointing()
    try:
        with unet_checkpointing(pipe.unet, True):
            pass
        assert pipe.unet.is_gradient_checkpointing  # left as it was
    finally:
        pipe.unet.disable_gradient_checkpointing()


@pytest.mark.parametrize("method", ["freedom", "tfg"])
def test_backprop_methods_checkpoint_the_unet_in_their_gradient_pass(method):
    """`unet_checkpoint=on`: the UNet checkpoints while the method backpropagates through it (and only then), the
    guided step is the same as without, and the switch is restored; `off` never checkpoints."""
    from pipelines.guidance import make_guidance
    from tests.engine_helpers import TargetReward, make_denoiser, tiny_pipe

    pipe = tiny_pipe()
    target = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))

    def step(option):
        ctx = make_denoiser(pipe, num_frames=4, steps=6, reward=TargetReward(target))
        ctx.eta = 0.0
        seen = []
        eps = ctx.eps

        def spy(z, t, **kw):
            if torch.is_grad_enabled() and z.requires_grad:
                seen.append(pipe.unet.is_gradient_checkpointing)
            return eps(z, t, **kw)

        ctx.eps = spy
        g = make_guidance(method, unet_checkpoint=option)
        g.start(ctx)
        out = g.step(ctx, x, ctx.timesteps[2], 2)
        return out, seen

    on, seen_on = step("on")
    off, seen_off = step("off")
    assert seen_on and all(seen_on) and seen_off and not any(seen_off)
    assert not pipe.unet.is_gradient_checkpointing
    assert torch.allclose(on, off, atol=1e-5)
    with pytest.raises(ValueError, match=f"{method}.unet_checkpoint"):
        make_guidance(method, unet_checkpoint="sometimes")
