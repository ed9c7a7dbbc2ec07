"""`GuidedAnimateDiffPipeline`: diffusers' AnimateDiff with a guided, streaming DDIM loop (public contract 1)."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    MotionAdapter,
    PNDMScheduler,
    UNet2DConditionModel,
    UNetMotionModel,
)
from diffusers.image_processor import PipelineImageInput
from diffusers.pipelines.animatediff.pipeline_output import AnimateDiffPipelineOutput

from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from .frame_tokens import FrameTokens
from .guidance.base import Guidance
from .preview import latent_rgb_for, resolve_preview
from .sampler import Denoiser, StepEvent, StepHook, sample


def _check_frame_tokens(frame_tokens, text_encoder, tokenizer) -> None:
    if not isinstance(frame_tokens, FrameTokens):
        raise TypeError(f"frame_tokens must be a pipelines.frame_tokens.FrameTokens (HarivoFrameTokens), "
                        f"got {type(frame_tokens).__name__}")
    frame_tokens.check_fits(text_encoder, tokenizer)


class GuidedAnimateDiffPipeline(AnimateDiffPipeline):
    """AnimateDiff with training-free guidance.

    Built like `AnimateDiffPipeline` (`from_pretrained(...)` or from components). `stream(...)` yields a
    `StepEvent` per step (index, timestep, x̂0 preview, reward, seconds, peak memory) and a final event
    with the video (decoded once, in chunks of `decode_chunk_size` frames). Previews (`preview=`, see
    `pipelines.preview`): `auto` (default) maps latents to RGB without the VAE at ≥ 128 px frames and decodes
    below; `decode` always decodes; `fast` never does except every `decode_every` steps; `__call__` runs the same loop and returns `AnimateDiffPipelineOutput`. With `guidance=None`,
    `mg_scale=0` and no hooks the result equals `AnimateDiffPipeline.__call__` for the same components, seed and
    arguments, with any scheduler (the loop steps through `scheduler.step`; see `pipelines.sampler`), FreeInit
    (`enable_free_init`), FreeNoise and prompt travel (`enable_free_noise`, dict prompts), IP-Adapter images or
    embeddings, `callback_on_step_end` and `output_type="latent"`. `eta` defaults to 0.0 (diffusers' default) without
    guidance and to 1.0 with it (as in the papers).

    Optional component `frame_tokens` (a `FrameTokens`: HARIVO's frame-wise tokens, the paper's `HarivoFrameTokens`,
    as the micro models ship and `pipelines/training/` trains): when present, every frame's text tokens get that
    frame's generated tokens appended.
    """

    _optional_components = AnimateDiffPipeline._optional_components + ["frame_tokens"]
    #: latent→RGB map for fast previews (a `pipelines.preview.LatentRGB`; None: the SD 1.x approximation)
    latent_rgb = None

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: Union[UNet2DConditionModel, UNetMotionModel],
        motion_adapter: MotionAdapter,
        scheduler: Union[DDIMScheduler, PNDMScheduler, LMSDiscreteScheduler, EulerDiscreteScheduler,
                         EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler],
        feature_extractor: CLIPImageProcessor = None,
        image_encoder: CLIPVisionModelWithProjection = None,
        frame_tokens: Optional[FrameTokens] = None,
    ):
        # the parent's type hints: `from_pipe` switches a component over only when its type matches them
        super().__init__(vae, text_encoder, tokenizer, unet, motion_adapter, scheduler,
                         feature_extractor=feature_extractor, image_encoder=image_encoder)
        if frame_tokens is not None:
            _check_frame_tokens(frame_tokens, text_encoder, tokenizer)
        self.register_modules(frame_tokens=frame_tokens)

    @property
    def components(self) -> dict:
        """The parent's components, plus `frame_tokens` only when the pipeline has one."""
        comps = super().components
        if comps.get("frame_tokens") is None:
            comps.pop("frame_tokens", None)
        return comps

    def per_frame_embeds(self, embeds: torch.Tensor, num_frames: int, per_frame: bool = False) -> torch.Tensor:
        """`(B, M, D)` prompt embeddings → the UNet's per-frame `(B·F, M(+K), D)` encoder states. `per_frame`: the
        embeddings are already one row per frame (FreeNoise prompt travel); frame tokens are then appended from each
        frame's own row."""
        gen = getattr(self, "frame_tokens", None)
        if per_frame:
            if gen is None:
                return embeds
            rows = [gen.expand(embeds[j : j + 1], num_frames)[j % num_frames] for j in range(embeds.shape[0])]
            return torch.stack(rows)
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
        reason = needs_ddim(guidance)
        if reason and not scheduler_is_ddim(self.scheduler):
            raise ValueError(f"{reason} needs DDIMScheduler; the pipeline's scheduler is "
                             f"{type(self.scheduler).__name__} (set pipe.scheduler = DDIMScheduler.from_config(...))")

    def stream(
        self,
        prompt: Union[str, Sequence[str], dict, None] = None,
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
        ip_adapter_image: Optional[PipelineImageInput] = None,
        ip_adapter_image_embeds: Optional[list[torch.Tensor]] = None,
        clip_skip: Optional[int] = None,
        callback_on_step_end: Optional[Callable] = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        output_type: str = "pt",
        _video_sink: Optional[list] = None,
    ) -> Iterator[StepEvent]:
        """Generate, yielding a `StepEvent` per step and a final one with the video (arguments as `__call__`)."""
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        tensor_inputs = list(callback_on_step_end_tensor_inputs or [])
        self.check_inputs(prompt, height, width, None, negative_prompt, prompt_embeds, negative_prompt_embeds,
                          ip_adapter_image, ip_adapter_image_embeds, tensor_inputs)
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
        if isinstance(prompt, (str, dict)):
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
        self._clip_skip = clip_skip
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False
        device = self._execution_device
        cfg = self.do_classifier_free_guidance
        lora_scale = cross_attention_kwargs.get("scale", None) if cross_attention_kwargs is not None else None

        free_noise = self.free_noise_enabled
        if free_noise:  # per-frame embeddings (prompt travel), [negative; positive] with CFG, as the parent's
            both, neg_out = self._encode_prompt_free_noise(
                prompt=prompt, num_frames=num_frames, device=device, num_videos_per_prompt=num_videos_per_prompt,
                do_classifier_free_guidance=cfg, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds, lora_scale=lora_scale, clip_skip=clip_skip,
            )
            rows = both.shape[0] // 2 if cfg else both.shape[0]
            cond, uncond = both[rows:] if cfg else both, both[:rows] if cfg else None
        else:
            cond, uncond = self.encode_prompt(
                prompt, device, num_videos_per_prompt, cfg, negative_prompt, prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds, lora_scale=lora_scale, clip_skip=clip_skip,
            )
            neg_out = uncond
        with torch.no_grad():
            # the UNet's dtype (a lean preset keeps the text encoder in fp16 and the UNet in fp32; a no-op otherwise)
            cond = self.per_frame_embeds(cond, num_frames, free_noise).to(self.unet.dtype)
            uncond = self.per_frame_embeds(uncond, num_frames, free_noise).to(self.unet.dtype) if cfg else None

        image_embeds = None
        if ip_adapter_image is not None or ip_adapter_image_embeds is not None:
            image_embeds = self.prepare_ip_adapter_image_embeds(
                ip_adapter_image, ip_adapter_image_embeds, device, batch * num_videos_per_prompt, cfg)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        x = self.prepare_latents(
            batch * num_videos_per_prompt, self.unet.config.in_channels, num_frames, height, width,
            cond.dtype, device, generator, latents,
        )

        def finish(z: torch.Tensor):
            if output_type == "latent":
                if _video_sink is not None:
                    _video_sink.append(z)
                return None
            with torch.no_grad():
                video = self.decode_latents(z, decode_chunk_size)  # (b, c, f, H, W) in [-1, 1]
            if _video_sink is not None:
                _video_sink.append(video)
            return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)  # (b, f, 3, H, W)

        iterations = self._free_init_num_iters if self.free_init_enabled else 1
        for it in range(iterations):
            if self.free_init_enabled:  # FreeInit: re-noise the last pass's result with fresh high frequencies
                x, timesteps = self._apply_free_init(x, it, num_inference_steps, device, x.dtype, generator)
            self._num_timesteps = len(timesteps)
            ctx = Denoiser(
                self, cond, uncond, num_frames, guidance_scale, eta, generator, timesteps,
                mg_scale=mg_scale, cfg_schedule=cfg_schedule, reward=reward, decode_chunk_size=decode_chunk_size,
                cross_attention_kwargs=cross_attention_kwargs, image_embeds=image_embeds,
            )
            on_step_end = None
            if callback_on_step_end is not None:
                on_step_end = self._step_end_callback(ctx, callback_on_step_end, tensor_inputs, neg_out)
            last = it == iterations - 1
            yield from sample(
                ctx, x, guidance, hooks=hooks, preview_every=preview_every, track_reward=track_reward,
                should_stop=should_stop, on_finish=finish, preview_mode=preview_mode, decode_every=decode_every,
                latent_rgb=latent_rgb, preview_size=(height, width), on_step_end=on_step_end, final=last,
                phase="sample" if last else "free_init",
            )
            x = ctx.final_latents
        self.maybe_free_model_hooks()

    def _step_end_callback(self, ctx: Denoiser, callback, tensor_inputs, negative_prompt_embeds):
        """diffusers' `callback_on_step_end(pipe, i, t, callback_kwargs)`: `latents` (the scheduler's), `prompt_embeds`
        (per frame, [negative; positive] with CFG, as the parent passes them) and `negative_prompt_embeds`; returned
        tensors replace them."""
        state = {"negative_prompt_embeds": negative_prompt_embeds}

        def on_step_end(i: int, t, latents: torch.Tensor) -> torch.Tensor:
            prompt_embeds = torch.cat([ctx.uncond, ctx.cond]) if ctx.do_cfg else ctx.cond
            values = {"latents": latents, "prompt_embeds": prompt_embeds,
                      "negative_prompt_embeds": state["negative_prompt_embeds"]}
            outputs = callback(self, i, t, {k: values[k] for k in tensor_inputs}) or {}
            new_embeds = outputs.pop("prompt_embeds", None)
            if new_embeds is not None:
                if ctx.do_cfg:
                    ctx.uncond, ctx.cond = new_embeds.chunk(2)
                else:
                    ctx.cond = new_embeds
            state["negative_prompt_embeds"] = outputs.pop("negative_prompt_embeds", state["negative_prompt_embeds"])
            return outputs.pop("latents", latents)

        return on_step_end

    def __call__(
        self,
        prompt: Union[str, list[str], dict, None] = None,
        num_frames: Optional[int] = 16,
        height: Optional[int] = None,
        width: Optional[int] = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: Union[str, list[str], None] = None,
        num_videos_per_prompt: Optional[int] = 1,
        eta: Optional[float] = None,
        generator: Union[torch.Generator, list[torch.Generator], None] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        ip_adapter_image: Optional[PipelineImageInput] = None,
        ip_adapter_image_embeds: Optional[list[torch.Tensor]] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: Optional[dict[str, Any]] = None,
        clip_skip: Optional[int] = None,
        callback_on_step_end: Optional[Callable[[Any, int, int, dict], dict]] = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        decode_chunk_size: int = 16,
        *,
        guidance: Optional[Guidance] = None,
        reward=None,
        mg_scale: float = 0.0,
        cfg_schedule: Optional[str] = None,
        hooks: Sequence[StepHook] = (),
        preview_every: int = 0,
        preview: str = "auto",
        decode_every: int = 0,
        track_reward: bool = True,
        should_stop: Optional[Callable[[], bool]] = None,
    ):
        """`AnimateDiffPipeline.__call__` (same arguments, same result without guidance), plus the guidance
        arguments of `stream`. Returns `AnimateDiffPipelineOutput` (with `final_reward`) or `(frames,)`.

        As in the parent, `num_videos_per_prompt` is taken as 1 (diffusers' AnimateDiffPipeline ignores it) and
        `output_type="latent"` returns the final latents. The deprecated `callback` / `callback_steps` are not
        accepted (use `callback_on_step_end`)."""
        num_videos_per_prompt = 1  # what AnimateDiffPipeline.__call__ does with it
        sink: list = []
        final = None
        for event in self.stream(
            prompt=prompt, num_frames=num_frames, height=height, width=width,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
            num_videos_per_prompt=num_videos_per_prompt, eta=eta, generator=generator, latents=latents,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, guidance=guidance,
            reward=reward, mg_scale=mg_scale, cfg_schedule=cfg_schedule, hooks=hooks, preview_every=preview_every,
            preview=preview, decode_every=decode_every, track_reward=track_reward, should_stop=should_stop,
            decode_chunk_size=decode_chunk_size, cross_attention_kwargs=cross_attention_kwargs,
            ip_adapter_image=ip_adapter_image, ip_adapter_image_embeds=ip_adapter_image_embeds, clip_skip=clip_skip,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs, output_type=output_type,
            _video_sink=sink,
        ):
            final = event
        if output_type == "latent":
            video = sink[0]
        else:
            video = self.video_processor.postprocess_video(video=sink[0], output_type=output_type)
        if not return_dict:
            return (video,)
        out = AnimateDiffPipelineOutput(frames=video)
        out.final_reward = final.reward if final is not None else None
        return out


def scheduler_is_ddim(scheduler) -> bool:
    """The scheduler whose step is the η-DDIM formula the methods' own chains use (no thresholding)."""
    from diffusers import DDIMScheduler

    return isinstance(scheduler, DDIMScheduler) and not scheduler.config.get("thresholding", False)


def needs_ddim(guidance) -> Optional[str]:
    """Why a method needs DDIM (it runs a deterministic DDIM chain of its own), or None."""
    if guidance is None:
        return None
    if guidance.name == "doodl":
        return "doodl (it optimises x_T through its own deterministic DDIM chain)"
    if guidance.name == "titan" and getattr(guidance, "depth", 0) != 0:
        return f"titan with depth={guidance.depth} (its objective runs DDIM steps ahead of the sampler)"
    return None
