"""`GuidedAnimateDiffPipeline`: diffusers' AnimateDiff with a guided, streaming DDIM loop (public contract 1)."""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from diffusers import AnimateDiffPipeline
from diffusers.pipelines.animatediff.pipeline_output import AnimateDiffPipelineOutput

from .frame_tokens import FrameTokenGenerator
from .guidance.base import Guidance
from .preview import latent_rgb_for, resolve_preview
from .sampler import Denoiser, StepEvent, StepHook, sample


def _check_frame_tokens(frame_tokens, text_encoder, tokenizer) -> None:
    if not isinstance(frame_tokens, FrameTokenGenerator):
        raise TypeError(f"frame_tokens must be a FrameTokenGenerator, got {type(frame_tokens).__name__}")
    cfg = frame_tokens.config
    if cfg.dim != text_encoder.config.hidden_size:
        raise ValueError(f"frame_tokens dim {cfg.dim} != text encoder hidden size {text_encoder.config.hidden_size}")
    length = getattr(tokenizer, "model_max_length", None)
    if length != cfg.text_length:
        raise ValueError(f"frame_tokens was built for prompts of {cfg.text_length} tokens, the tokenizer pads to {length}")


class GuidedAnimateDiffPipeline(AnimateDiffPipeline):
    """AnimateDiff with training-free guidance.

    Built like `AnimateDiffPipeline` (`from_pretrained(...)` or from components). `stream(...)` yields a
    `StepEvent` per step (index, timestep, x̂0 preview, reward, seconds, peak memory) and a final event
    with the video (decoded once, in chunks of `decode_chunk_size` frames). Previews (`preview=`, see
    `pipelines.preview`): `auto` (default) maps latents to RGB without the VAE at ≥ 128 px frames and decodes
    below; `decode` always decodes; `fast` never does except every `decode_every` steps; `__call__` runs the same loop and returns `AnimateDiffPipelineOutput`. With `guidance=None`,
    `mg_scale=0` and no hooks the result equals `AnimateDiffPipeline.__call__` for the same components, seed and
    arguments. `eta` defaults to 0.0 (diffusers' default) without guidance and to 1.0 with it (as in the papers).

    Optional component `frame_tokens` (a `FrameTokenGenerator`, HARIVO's frame-wise tokens, shipped by the micro
    preset): when present, every frame's text tokens get that frame's generated tokens appended.
    """

    _optional_components = AnimateDiffPipeline._optional_components + ["frame_tokens"]
    #: latent→RGB map for fast previews (a `pipelines.preview.LatentRGB`; None: the SD 1.x approximation)
    latent_rgb = None

    def __init__(self, vae, text_encoder, tokenizer, unet, motion_adapter, scheduler,
                 feature_extractor=None, image_encoder=None, frame_tokens: Optional[FrameTokenGenerator] = None):
        super().__init__(vae, text_encoder, tokenizer, unet, motion_adapter, scheduler,
                         feature_extractor=feature_extractor, image_encoder=image_encoder)
        if frame_tokens is not None:
            _check_frame_tokens(frame_tokens, text_encoder, tokenizer)
        self.register_modules(frame_tokens=frame_tokens)

    def per_frame_embeds(self, embeds: torch.Tensor, num_frames: int) -> torch.Tensor:
        """`(B, M, D)` prompt embeddings → the UNet's per-frame `(B·F, M(+K), D)` encoder states."""
        gen = getattr(self, "frame_tokens", None)
        if gen is None:
            return embeds.repeat_interleave(repeats=num_frames, dim=0)
        return gen.expand(embeds, num_frames)

    def _check_guided_args(self, guidance, reward, batch: int) -> None:
        if guidance is not None and not isinstance(guidance, Guidance):
            raise TypeError(f"guidance must be a pipelines.guidance.Guidance (or None), got {type(guidance).__name__}")
        guided = guidance is not None and guidance.name != "none"
        if guided and reward is None:
            raise ValueError(f"guidance method {guidance.name!r} needs a reward")
        if guided and guidance.needs_gradient and not getattr(reward, "differentiable", True):
            raise ValueError(
                f"guidance method {guidance.name!r} needs a differentiable reward; "
                f"{getattr(reward, 'name', type(reward).__name__)!r} is not (use free2guide)"
            )
        if guided and batch != 1:
            raise ValueError("guided sampling generates one video at a time (num_videos_per_prompt=1, one prompt)")

    def stream(
        self,
        prompt: Union[str, Sequence[str], None] = None,
        num_frames: int = 16,
        height: Optional[int] = None,
        width: Optional[int] = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        negative_prompt: Union[str, Sequence[str], None] = None,
        num_videos_per_prompt: int = 1,
        eta: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        guidance: Optional[Guidance] = None,
        reward=None,
        mg_scale: float = 0.0,
        cfg_schedule: Optional[str] = None,
        hooks: Sequence[StepHook] = (),
        preview_every: int = 1,
        preview: str = "auto",
        decode_every: int = 0,
        track_reward: bool = True,
        should_stop: Optional[Callable[[], bool]] = None,
        decode_chunk_size: int = 16,
        cross_attention_kwargs: Optional[dict] = None,
        _video_sink: Optional[list] = None,
    ) -> Iterator[StepEvent]:
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        self.check_inputs(prompt, height, width, None, negative_prompt, prompt_embeds, negative_prompt_embeds)
        if num_frames < 1:
            raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be ≥ 1, got {num_inference_steps}")
        if cfg_schedule not in (None, "harivo"):
            raise ValueError(f"cfg_schedule must be None or 'harivo', got {cfg_schedule!r}")
        if mg_scale < 0:
            raise ValueError(f"mg_scale must be ≥ 0, got {mg_scale}")
        if decode_every < 0:
            raise ValueError(f"decode_every must be ≥ 0, got {decode_every}")
        preview_mode = resolve_preview(preview, height, width)
        latent_rgb = latent_rgb_for(self) if preview_mode == "fast" else None
        if isinstance(prompt, str):
            batch = 1
        elif isinstance(prompt, (list, tuple)):
            batch = len(prompt)
        else:
            batch = prompt_embeds.shape[0]
        self._check_guided_args(guidance, reward, batch * num_videos_per_prompt)
        guided = guidance is not None and guidance.name != "none"
        if eta is None:
            eta = 1.0 if guided else 0.0
        self._guidance_scale = guidance_scale
        self._clip_skip = None
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False
        device = self._execution_device

        cond, uncond = self.encode_prompt(
            prompt, device, num_videos_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
        )
        with torch.no_grad():
            # the UNet's dtype (a lean preset keeps the text encoder in fp16 and the UNet in fp32; a no-op otherwise)
            cond = self.per_frame_embeds(cond, num_frames).to(self.unet.dtype)
            uncond = (self.per_frame_embeds(uncond, num_frames).to(self.unet.dtype)
                      if self.do_classifier_free_guidance else None)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        x = self.prepare_latents(
            batch * num_videos_per_prompt, self.unet.config.in_channels, num_frames, height, width,
            cond.dtype, device, generator, latents,
        )
        ctx = Denoiser(
            self, cond, uncond, num_frames, guidance_scale, eta, generator, timesteps,
            mg_scale=mg_scale, cfg_schedule=cfg_schedule, reward=reward, decode_chunk_size=decode_chunk_size,
            cross_attention_kwargs=cross_attention_kwargs,
        )
        def finish(z: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                video = self.decode_latents(z, decode_chunk_size)  # (b, c, f, H, W) in [-1, 1]
            if _video_sink is not None:
                _video_sink.append(video)
            return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)  # (b, f, 3, H, W)

        yield from sample(
            ctx, x, guidance, hooks=hooks, preview_every=preview_every, track_reward=track_reward,
            should_stop=should_stop, on_finish=finish, preview_mode=preview_mode, decode_every=decode_every,
            latent_rgb=latent_rgb, preview_size=(height, width),
        )
        self.maybe_free_model_hooks()

    def __call__(self, *args, output_type: str = "pil", return_dict: bool = True, **kwargs):
        """Run `stream` to the end and return the video like `AnimateDiffPipeline.__call__`."""
        kwargs.setdefault("preview_every", 0)
        if output_type == "latent":
            raise ValueError("output_type='latent' is not supported by the guided pipeline; use stream()")
        sink: list = []
        final = None
        for event in self.stream(*args, _video_sink=sink, **kwargs):
            final = event
        video = self.video_processor.postprocess_video(video=sink[0], output_type=output_type)
        if not return_dict:
            return (video,)
        out = AnimateDiffPipelineOutput(frames=video)
        out.final_reward = final.reward if final is not None else None
        return out
