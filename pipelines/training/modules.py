"""HARIVO's trainable parts around a frozen text-to-image UNet (seed 002, Sections 3.1–3.5 and Appendix).

- temporal layers: AnimateDiff motion modules inside `diffusers.UNetMotionModel`, output projections zeroed so that
  an untrained video model is the image model applied to every frame (`zero_temporal_layers`);
- `MappingNetwork`: 3D convolution + temporal attention + zero-initialised linear, residual, applied to the noisy
  latents before the frozen UNet (`attach_mapping` runs it inside `unet.forward`, so pipelines need no change);
- `HarivoFrameTokens` (defined in `pipelines.frame_tokens`, the type the pipeline accepts): the paper's frame-wise
  token generator (Linear+SiLU → 1-D convolution over the M token
  positions to F·K outputs → 3 × (Linear+SiLU)), K = 3 tokens appended to every frame's text tokens;
- `ContrastiveProjection`: the projection g_θ of the h-space contrastive loss (discarded after training);
- `AttentionMapRecorder` / `BottleneckRecorder`: the decoder self-attention maps (L_TRS) and the bottleneck
  features (L_DC) of one forward pass; `bypass_temporal` runs the same UNet as the image model (L_reg).
- personalised bases: `image_unet_from_video` (the frozen image part as a `UNet2DConditionModel`) and
  `swap_image_unet` (the trained temporal parts under another image UNet of the same family).

Deliberate differences from the paper's listing: the mapping network's whole branch (convolution and attention)
passes through the zero-initialised linear, so it starts as the exact identity (the listing adds the convolution's
residual output to the input as well, which doubles the input at initialisation); its temporal attention gets
sinusoidal frame positions (the listing's attention has none and cannot tell frame order).
"""
from __future__ import annotations

import contextlib
import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..frame_tokens import HarivoFrameTokens  # noqa: F401 - the paper's generator lives beside the pipeline's type


def _frame_positions(f: int, dim: int, device, dtype) -> torch.Tensor:
    pos = torch.arange(f, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    ang = pos / (10000 ** (i / max(dim, 1)))
    pe = torch.zeros(f, dim, device=device)
    pe[:, 0::2] = ang.sin()
    pe[:, 1::2] = ang.cos()[:, : dim // 2]
    return pe.to(dtype)


class MappingNetwork(ModelMixin, ConfigMixin):
    """`(b, c, f, h, w)` noisy latents → the same shape; the identity until trained.

    `y = x + W0 · (u + TemporalAttention(LayerNorm(u)))`, `u = x + Conv3d(SiLU(Conv3d(x)))`, with `W0` a linear map
    over channels initialised to zero; the attention runs over frames at every pixel.
    """

    @register_to_config
    def __init__(self, channels: int = 4, hidden: int = 64, heads: int = 8, head_dim: int = 64):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(channels, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv3d(hidden, channels, 3, padding=1))
        self.norm = nn.LayerNorm(channels)
        inner = heads * head_dim
        self.to_q = nn.Linear(channels, inner, bias=False)
        self.to_k = nn.Linear(channels, inner, bias=False)
        self.to_v = nn.Linear(channels, inner, bias=False)
        self.attn_out = nn.Linear(inner, channels)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.config.channels:
            raise ValueError(f"mapping network expects latents (b, {self.config.channels}, f, h, w), got {tuple(x.shape)}")
        b, c, f, h, w = x.shape
        u = x + self.conv(x)
        s = u.permute(0, 3, 4, 2, 1).reshape(b * h * w, f, c)  # (b h w) f c
        n = self.norm(s) + _frame_positions(f, c, s.device, s.dtype)
        heads = self.config.heads
        q, k, v = (m(n).unflatten(-1, (heads, -1)).transpose(1, 2) for m in (self.to_q, self.to_k, self.to_v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v  # (bhw, heads, f, d)
        s = s + self.attn_out(a.transpose(1, 2).flatten(2))
        delta = self.proj_out(s).reshape(b, h, w, f, c).permute(0, 4, 3, 1, 2)
        return x + delta


class ContrastiveProjection(nn.Module):
    """g_θ: bottleneck features `(n, C, s, s)` → `(n, C)` (a full-size convolution, then a 3-layer MLP)."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        self.spatial = spatial
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=spatial, bias=False), nn.SiLU(), nn.Flatten(),
            nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels), nn.SiLU(),
            nn.Linear(channels, channels),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] != self.spatial or h.shape[-2] != self.spatial:
            raise ValueError(f"contrastive projection built for {self.spatial}×{self.spatial} bottleneck features, "
                             f"got {tuple(h.shape[-2:])}")
        return self.layers(h)


# ------------------------------------------------------------------------------------------ temporal layers
def motion_modules(unet) -> list[nn.Module]:
    out = []
    for name, container in unet.named_modules():
        if name.endswith("motion_modules"):
            out.extend(container)
    return out


def zero_temporal_layers(unet) -> None:
    """Zero the output projection of every motion module: each becomes the identity (AnimateDiff's own init)."""
    mods = motion_modules(unet)
    if not mods:
        raise ValueError(f"{type(unet).__name__} has no motion modules (expected a diffusers UNetMotionModel)")
    with torch.no_grad():
        for m in mods:
            nn.init.zeros_(m.proj_out.weight)
            nn.init.zeros_(m.proj_out.bias)


def build_video_unet(unet2d, motion_adapter=None, zero_init: bool = True, **adapter_kwargs):
    """`UNetMotionModel` from a frozen image UNet and a `MotionAdapter` (a fresh one sized to the UNet if None);
    image parameters frozen, motion modules trainable."""
    from diffusers import MotionAdapter, UNetMotionModel

    if motion_adapter is None:
        c = unet2d.config
        kw = dict(block_out_channels=tuple(c.block_out_channels), motion_layers_per_block=c.layers_per_block,
                  motion_norm_num_groups=c.norm_num_groups, motion_max_seq_length=32, use_motion_mid_block=True)
        kw.update(adapter_kwargs)
        motion_adapter = MotionAdapter(**kw)
    unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter)
    if zero_init:
        zero_temporal_layers(unet)
    unet.freeze_unet2d_params()
    return unet


def _skip_motion(hidden_states, *args, **kwargs):
    return hidden_states


@contextlib.contextmanager
def bypass_temporal(unet):
    """Inside the block the UNet is the frozen image model per frame: every motion module is skipped (its `forward`
    is the identity, so none of its layers run: the image branch of L_reg costs the image model only)."""
    mods = motion_modules(unet)
    for m in mods:
        m.forward = _skip_motion  # an instance attribute: nn.Module.__call__ runs it instead of the class's forward
    try:
        yield unet
    finally:
        for m in mods:
            if m.__dict__.get("forward") is _skip_motion:
                del m.forward


def attach_mapping(unet, mapping: MappingNetwork):
    """Run `mapping` on the latents `(b, c, f, h, w)` at the start of every `unet(...)` call (also inside
    `AnimateDiffPipeline`); returns the hook handle (`.remove()` detaches it)."""
    def pre_hook(module, args, kwargs):
        if args:
            return (mapping(args[0]),) + tuple(args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["sample"] = mapping(kwargs["sample"])
        return args, kwargs

    return unet.register_forward_pre_hook(pre_hook, with_kwargs=True)


# ------------------------------------------------------------------------------------------------ recorders
class _RecordingProcessor:
    """Self-attention with an explicit softmax, so the map can be kept (diffusers' classic processor's maths)."""

    def __init__(self, recorder: "AttentionMapRecorder", original):
        self.recorder, self.original = recorder, original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kw):
        if not self.recorder.active or encoder_hidden_states is not None or hidden_states.ndim != 3:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kw)
        residual = hidden_states
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(hidden_states))
        probs = attn.get_attention_scores(q, k, None)  # (batch·heads, N, N)
        self.recorder.maps.append(probs.unflatten(0, (-1, attn.heads)))
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class AttentionMapRecorder:
    """Records the spatial self-attention maps (`attn1` of the image transformer blocks) of the decoder
    (`up_blocks`), in forward order, while `active`; `max_tokens` skips layers with more query tokens."""

    def __init__(self, unet, max_tokens: int | None = None):
        self.active = False
        self.maps: list[torch.Tensor] = []
        self.names = []
        procs = {}
        for name, proc in unet.attn_processors.items():
            decoder_spatial = name.startswith("up_blocks.") and ".attentions." in name and ".attn1." in name
            procs[name] = _RecordingProcessor(self, proc) if decoder_spatial else proc
            if decoder_spatial:
                self.names.append(name)
        if not self.names:
            raise ValueError("the UNet has no decoder self-attention layers to regularise (L_TRS)")
        unet.set_attn_processor(procs)
        self.max_tokens = max_tokens

    @contextlib.contextmanager
    def record(self):
        self.maps, self.active = [], True
        try:
            yield self
        finally:
            self.active = False

    def layers(self, num_frames: int) -> list[torch.Tensor]:
        """Maps as `(b, f, heads, N, N)` per decoder layer, in forward order."""
        out = []
        for m in self.maps:
            if self.max_tokens is not None and m.shape[-1] > self.max_tokens:
                continue
            out.append(m.unflatten(0, (-1, num_frames)))
        return out


class BottleneckRecorder:
    """Keeps the UNet's mid-block output `(b·f, C, s, s)` (h-space) of the last forward pass."""

    def __init__(self, unet):
        self.h = None
        self.handle = unet.mid_block.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.h = output[0] if isinstance(output, tuple) else output


# ------------------------------------------------------------------------------------------- personal bases
_BLOCK_2D = {"CrossAttnDownBlockMotion": "CrossAttnDownBlock2D", "DownBlockMotion": "DownBlock2D",
             "CrossAttnUpBlockMotion": "CrossAttnUpBlock2D", "UpBlockMotion": "UpBlock2D"}


def image_unet_from_video(unet):
    """The image (2D) part of a `UNetMotionModel` as a `UNet2DConditionModel` with the same weights."""
    from diffusers import UNet2DConditionModel

    c = unet.config
    unet2d = UNet2DConditionModel(
        sample_size=c.sample_size, in_channels=c.in_channels, out_channels=c.out_channels,
        down_block_types=tuple(_BLOCK_2D[t] for t in c.down_block_types),
        up_block_types=tuple(_BLOCK_2D[t] for t in c.up_block_types),
        block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
        norm_num_groups=c.norm_num_groups, norm_eps=c.norm_eps, cross_attention_dim=c.cross_attention_dim,
        attention_head_dim=c.num_attention_heads, use_linear_projection=c.use_linear_projection,
        transformer_layers_per_block=c.transformer_layers_per_block,
    )
    state = {k: v for k, v in unet.state_dict().items() if "motion_modules" not in k}
    missing, unexpected = unet2d.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"image part does not match a UNet2DConditionModel: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return unet2d.to(dtype=unet.dtype, device=unet.device)


def swap_image_unet(unet, unet2d) -> None:
    """Load another image UNet's weights (a personalised base of the same family) under `unet`'s motion modules,
    in place. Raises ValueError naming the first mismatching weight."""
    own = unet.state_dict()
    state = unet2d.state_dict()
    bad = [k for k in state if k not in own or own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"image UNet does not fit the video UNet (not the same family): {bad[0]}")
    missing = [k for k in own if "motion_modules" not in k and k not in state]
    if missing:
        raise ValueError(f"image UNet lacks weights of the video UNet's image part: {missing[0]}")
    unet.load_state_dict(state, strict=False)
