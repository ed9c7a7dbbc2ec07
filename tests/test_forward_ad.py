"""Forward-mode attention: the chunked path equals math attention (values and tangents), the kernel choice falls
back cleanly without CUDA, and (GPU only) the fused jvp-flash kernel matches the math path to 1e-4."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipelines.guidance import forward_ad
from pipelines.guidance.forward_ad import (
    ForwardADAttnProcessor, choose_attention, chunked_attention, flash_available, forward_ad_safe,
)
from tests.engine_helpers import TargetReward, make_denoiser, tiny_pipe


def _qkv(b=2, h=3, nq=40, nk=40, d=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=dtype) for n in (nq, nk, nk)]


def _math(q, k, v, mask=None):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("chunk", [10**9, 40 * 40, 7 * 40, 1])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_attention_matches_math_values_and_tangents(chunk, masked):
    q, k, v = _qkv(nk=24)
    tq, tk, tv = _qkv(nk=24, seed=1)
    mask = torch.randn(2, 1, 1, 24, dtype=torch.float64) if masked else None
    scale = q.shape[-1] ** -0.5
    out_m, tan_m = jvp(lambda a, b, c: _math(a, b, c, mask), (q, k, v), (tq, tk, tv))
    out_c, tan_c = jvp(lambda a, b, c: chunked_attention(a, b, c, scale, mask, chunk), (q, k, v), (tq, tk, tv))
    torch.testing.assert_close(out_c, out_m, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(tan_c, tan_m, rtol=1e-10, atol=1e-12)


def test_kernel_choice_falls_back_cleanly_without_cuda(monkeypatch):
    monkeypatch.delenv("GVS_JVP_ATTENTION", raising=False)
    ok, why = flash_available("cpu")
    assert not ok and "CUDA" in why
    assert choose_attention("cpu") == "chunked"
    assert choose_attention("cpu", "math") == "math"
    with pytest.warns(UserWarning, match="flash requested but unavailable"):
        assert choose_attention("cpu", "flash") == "chunked"
    monkeypatch.setenv("GVS_JVP_ATTENTION", "math")
    assert choose_attention("cpu") == "math"
    with pytest.raises(ValueError, match="jvp attention must be one of"):
        choose_attention("cpu", "fast")


def test_kernel_choice_picks_flash_where_cuda_and_the_package_are_present(monkeypatch):
    monkeypatch.delenv("GVS_JVP_ATTENTION", raising=False)
    monkeypatch.setattr(forward_ad, "_flash_module", lambda: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_attention("cuda:0") == "flash"
    assert choose_attention("cuda:0", "chunked") == "chunked"
    assert choose_attention("cpu") == "chunked"  # never on CPU, even with the package
    monkeypatch.setattr(forward_ad, "_flash_module", lambda: None)
    ok, why = flash_available("cuda:0")
    assert not ok and "jvp-flash-attention is not installed" in why
    assert choose_attention("cuda:0") == "chunked"


def test_flash_mode_on_cpu_tensors_runs_the_chunked_path():
    proc = ForwardADAttnProcessor("flash")
    q, k, v = _qkv(nq=64, nk=64)
    out = proc.core(q, k, v, q.shape[-1] ** -0.5)
    torch.testing.assert_close(out, _math(q, k, v))
    assert proc.calls == {"flash": 0, "chunked": 1, "math": 0}


def test_forward_ad_safe_installs_and_restores_the_processor_and_small_chunks_keep_the_jvp():
    pipe = tiny_pipe("float64")
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    num_frames = 4
    target = torch.rand(num_frames, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ctx = make_denoiser(pipe, num_frames=num_frames, steps=10, reward=TargetReward(target))
    t = ctx.timesteps[3]
    x = torch.randn(1, 4, num_frames, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def J(z):
        eps = ctx.eps(z, t, cfg=False)
        return ctx.reward(ctx.decode(ctx.x0(z, eps, t))).sum()

    with torch.no_grad(), forward_ad_safe([pipe.unet, pipe.vae], attention="math") as proc:
        _, d_math = jvp(J, (x,), (v,))
        assert proc.calls["math"] > 0
    with torch.no_grad(), forward_ad_safe([pipe.unet, pipe.vae], chunk_elements=16) as proc:
        assert all(isinstance(p, ForwardADAttnProcessor) for p in pipe.unet.attn_processors.values())
        assert proc.mode == "chunked"
        _, d_chunk = jvp(J, (x,), (v,))
        assert proc.calls["chunked"] > 0 and proc.calls["flash"] == 0
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before
    assert float(d_chunk) == pytest.approx(float(d_math), rel=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused jvp attention kernel needs a CUDA GPU")
def test_flash_jvp_matches_the_math_path_on_gpu():
    if not flash_available("cuda")[0]:
        pytest.skip("jvp-flash-attention is not installed (pip install 'guided-video-studio[jvp-flash]')")
    torch.backends.cuda.matmul.allow_tf32 = False
    for d in (40, 64, 80):  # SD 1.5's head dims are 40/80/160: padded to 64/128/256
        q, k, v = (t.cuda() for t in _qkv(b=2, h=8, nq=256, nk=256, d=d, dtype=torch.float32))
        tq, tk, tv = (t.cuda() for t in _qkv(b=2, h=8, nq=256, nk=256, d=d, dtype=torch.float32, seed=1))
        proc = ForwardADAttnProcessor("flash")
        out_f, tan_f = jvp(lambda a, b, c: proc.core(a, b, c, d**-0.5), (q, k, v), (tq, tk, tv))
        assert proc.calls["flash"] == 1
        out_m, tan_m = jvp(_math, (q, k, v), (tq, tk, tv))
        torch.testing.assert_close(out_f, out_m, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(tan_f, tan_m, rtol=1e-4, atol=1e-4)
