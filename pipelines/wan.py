"""`GuidedWanPipeline`: diffusers' Wan 2.1 text-to-video (a flow-matching transformer) with the guided loop.

The loop is `pipelines.sampler.sample` over a `WanDenoiser`: the engine's `Denoiser` in its flow-matching mode
(see `pipelines.sampler`: x_t = (1 − σ)·x0 + σ·ε, the transformer's velocity v̂ turned into x̂0 and ε̂, the scheduler's
own `step`) with Wan's transformer and causal video VAE behind the same small interface the guidance methods use.
Without guidance the frames equal `WanPipeline.__call__`'s for the same components, seed and arguments, with
`FlowMatchEulerDiscreteScheduler` and with `UniPCMultistepScheduler` in flow mode (tests/test_wan.py).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from diffusers import WanPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput
from diffusers.utils import logging

from .guidance.base import Guidance
from .sampler import Denoiser, StepEvent, StepHook, sample

logger = logging.get_logger(__name__)


def valid_frame_counts(num_frames: int, temporal: int = 4) -> tuple[int, int]:
    """The frame counts Wan's causal VAE takes (1 + temporal·k) just below and just above `num_frames`."""
    low = max(1, (num_frames - 1) // temporal * temporal + 1)
    return low, low + temporal


def check_frame_count(num_frames, temporal: int = 4) -> int:
    """`num_frames` when Wan can take it (1 + 4k), else a ValueError naming the nearest valid counts."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a whole number ≥ 1 of the form 1 + {temporal}k, got {num_frames!r}")
    if num_frames % temporal != 1 and temporal > 1:
        low, high = valid_frame_counts(num_frames, temporal)
        raise ValueError(
            f"num_frames={num_frames}: Wan's video VAE packs frames as 1 + {temporal}k (one latent frame for the "
            f"first frame, then one per {temporal}); use {low} or {high}")
    return num_frames


def latent_frame_of(video_frame: int, temporal: int = 4) -> int:
    """The latent frame that holds a video frame: Wan's causal VAE encodes frame 0 alone into latent frame 0, then
    each run of `temporal` frames into one latent frame, so latent frame k ≥ 1 holds video frames
    temporal·k − temporal + 1 .. temporal·k (4k−3 .. 4k): frame f ≥ 1 is in latent frame ⌈f / temporal⌉."""
    if video_frame < 0:
        raise ValueError(f"video frame must be ≥ 0, got {video_frame}")
    return 0 if video_frame == 0 else -(-video_frame // temporal)


def video_frames_of(latent_frame: int, temporal: int = 4) -> list[int]:
    """The video frames a latent frame holds (the inverse of `latent_frame_of`): [0] for latent frame 0, else
    temporal·k − temporal + 1 .. temporal·k."""
    if latent_frame < 0:
        raise ValueError(f"latent frame must be ≥ 0, got {latent_frame}")
    if latent_frame == 0:
        return [0]
    return list(range(temporal * latent_frame - temporal + 1, temporal * latent_frame + 1))


def is_wan_attention(module) -> bool:
    return type(module).__name__ == "WanAttention"


class WanDenoiser(Denoiser):
    """The engine's denoiser over Wan's parts: the transformer predicts the flow velocity; `decode` runs the causal
    video VAE on the whole latent video (its frames cannot be decoded one at a time) and returns the frames asked."""

    #: `decode(z, frames)` decodes the whole video and picks `frames` (video frame indices); a method that wants
    #: the gradient of a few frames differentiates the whole decode (TITAN's direct guess)
    whole_video_decode = True

    def __init__(self, pipe, prompt_embeds, negative_embeds, num_frames, guidance_scale, generator, timesteps,
                 guidance_scale_2=None, boundary_timestep=None, attention_kwargs=None, **kwargs):
        self.guidance_scale_2 = guidance_scale_2
        self.boundary_timestep = boundary_timestep
        self.attention_kwargs = attention_kwargs
        super().__init__(pipe, prompt_embeds, negative_embeds, num_frames, guidance_scale, 0.0, generator, timesteps,
                         **kwargs)
        self.vae = pipe.vae
        self._index = {int(t): k for k, t in enumerate(timesteps)}

    @staticmethod
    def denoiser_model(pipe):
        return pipe.transformer if pipe.transformer is not None else pipe.transformer_2

    def _model_and_scale(self, t: torch.Tensor):
        """Wan 2.2's two stages: `transformer` at t ≥ boundary (or always, Wan 2.1), `transformer_2` below."""
        if self.boundary_timestep is None or float(t) >= self.boundary_timestep:
            return self.pipe.transformer, self.cfg_scale(t)
        return self.pipe.transformer_2, self.guidance_scale_2

    def model_output(self, x: torch.Tensor, t: int, cfg: bool = True):
        """The velocity at (x, t), with CFG as `WanPipeline` does it (two passes: cond, then uncond)."""
        xs = self.to_sched(x, t)
        t_in = self.t_exact.get(int(t), t)
        if not torch.is_tensor(t_in):
            t_in = torch.tensor(float(t_in), device=xs.device)
        model, scale = self._model_and_scale(t_in)
        b = xs.shape[0]
        if self.pipe.config.expand_timesteps:  # Wan 2.2 TI2V: one timestep per latent token (all equal here)
            ones = torch.ones(xs.shape[2], xs.shape[3] // 2, xs.shape[4] // 2, device=xs.device)
            timestep = (ones * t_in).flatten().unsqueeze(0).expand(b, -1)
        else:
            timestep = t_in.expand(b)
        inp = xs.to(model.dtype)
        k = self._index.get(int(t))
        cache_kw = {} if k is None else {"step_index": k, "sigma": float(self.scheduler.sigmas[k]),
                                         "num_inference_steps": len(self.timesteps)}

        def run(name, embeds):
            if embeds.shape[0] != b:  # one prompt's embeddings for a batch of candidates
                embeds = embeds.repeat(b // embeds.shape[0], 1, 1)
            with model.cache_context(name, **cache_kw):
                return model(hidden_states=inp, timestep=timestep, encoder_hidden_states=embeds,
                             attention_kwargs=self.attention_kwargs, return_dict=False)[0]

        cond = run("cond", self.cond)
        if not (cfg and self.do_cfg):
            return cond, cond, None
        uncond = run("uncond", self.uncond)
        return uncond + scale * (cond - uncond), cond, uncond

    def latents_to_vae(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents → the VAE's, as `WanPipeline` does before decoding."""
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(z.device, z.dtype)
        inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(z.device, z.dtype)
        return z / inv_std + mean

    def decode(self, z0: torch.Tensor, frames: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Differentiable decode of latents (1, c, f, h, w) → frames (F, 3, H, W) ≈ [0, 1] (F = 1 + 4(f − 1)),
        or only `frames` of them (the whole video is decoded: Wan's VAE is causal in time)."""
        if z0.shape[0] != 1:
            raise ValueError("guided decoding works on one video at a time")
        z = self.latents_to_vae(z0.to(self.vae.dtype))
        video = self.vae.decode(z, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
        out = video[0].transpose(0, 1).float() / 2 + 0.5
        if frames is not None:
            out = out[list(frames)]
        return out


class GuidedWanPipeline(WanPipeline):
    """Wan text-to-video with training-free guidance.

    Built like `WanPipeline` (`from_pretrained`, from components, or `from_pipe` either way). `__call__` takes the
    parent's arguments and returns `WanPipelineOutput`; `stream(...)` yields a `StepEvent` per step and a final one
    with the video. Guidance arguments (keyword only): `guidance` (a `pipelines.guidance.Guidance`), `reward`,
    `mg_scale` (HARIVO MG on x̂0), `cfg_schedule`, `hooks`, `preview_every`, `track_reward`, `should_stop`.
    Differences from the parent: `num_frames` must be 1 + 4k (here the nearest valid counts are named; the parent
    replaces n by ⌊n/4⌋·4 + 1 with a logged warning); guided sampling makes one video at a time.
    """

    def offload_text_encoder(self, device) -> None:
        """Keep the transformer and VAE on `device` and the text encoder on the CPU but while it encodes (`accelerate`'s
        `cpu_offload_with_hook`; offloaded again right after each `encode_prompt` of `stream`). Unlike diffusers'
        model CPU offload, a guided step's decode does not move the transformer off the GPU and back."""
        from accelerate import cpu_offload_with_hook

        for name in ("transformer", "transformer_2", "vae"):
            module = getattr(self, name, None)
            if module is not None:
                module.to(device)
        _, self._text_encoder_hook = cpu_offload_with_hook(self.text_encoder, execution_device=device)

    def _check_guided_args(self, guidance, reward, batch: int) -> None:
        if guidance is not None and not isinstance(guidance, Guidance):
            raise TypeError(f"guidance must be a pipelines.guidance.Guidance (or None), got {type(guidance).__name__}")
        guided = guidance is not None and guidance.name != "none"
        if not guided:
            return
        if reward is None:
            raise ValueError(f"guidance method {guidance.name!r} needs a reward")
        if guidance.needs_gradient and not getattr(reward, "differentiable", True):
            raise ValueError(f"guidance method {guidance.name!r} needs a differentiable reward; "
                             f"{getattr(reward, 'name', type(reward).__name__)!r} is not (use free2guide)")
        if batch != 1:
            raise ValueError("guided sampling generates one video at a time (num_videos_per_prompt=1, one prompt)")
        from .sampler import is_flow_scheduler

        if guidance.name == "doodl" and type(self.scheduler).__name__ != "FlowMatchEulerDiscreteScheduler":
            raise ValueError(
                f"doodl on GuidedWanPipeline needs FlowMatchEulerDiscreteScheduler (its optimised chain is the flow "
                f"ODE's Euler step, which is that scheduler's own step); the pipeline's scheduler is "
                f"{type(self.scheduler).__name__}: set pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config("
                f"pipe.scheduler.config), or use titan / freedom / mpgd with this scheduler")
        if not is_flow_scheduler(self.scheduler):
            raise ValueError(
                f"{guidance.name} on GuidedWanPipeline needs a flow-matching scheduler (Wan predicts a flow velocity); "
                f"the pipeline's scheduler is {type(self.scheduler).__name__}: use FlowMatchEulerDiscreteScheduler or "
                f"UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type='flow_prediction')")

    def stream(
        self,
        prompt: Union[str, list[str], None] = None,
        negative_prompt: Union[str, list[str], None] = None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        guidance_scale_2: Optional[float] = None,
        num_videos_per_prompt: Optional[int] = 1,
        generator: Union[torch.Generator, list[torch.Generator], None] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        output_type: Optional[str] = "np",
        attention_kwargs: Optional[dict[str, Any]] = None,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        max_sequence_length: int = 512,
        guidance: Optional[Guidance] = None,
        reward=None,
        mg_scale: float = 0.0,
        cfg_schedule: Optional[str] = None,
        hooks: Sequence[StepHook] = (),
        preview_every: int = 0,
        track_reward: bool = True,
        should_stop: Optional[Callable[[], bool]] = None,
        eta: Optional[float] = None,
        _video_sink: Optional[list] = None,
    ) -> Iterator[StepEvent]:
        """Generate, yielding a `StepEvent` per step and a final one with the video (arguments as `__call__`).

        `preview_every=N` (N > 0) decodes the step's x̂0 through the VAE every N steps (and at the last) for the
        event's preview and tracked reward: a whole-video decode each time; `pipe.preview_stride` (the `wan` presets
        set 10) raises N to at least that. With `pipe.latent_rgb` set (a `pipelines.preview.LatentRGB` fitted for
        Wan's 16 channels, `bench/fit_wan_latent_rgb.py`) previews are that map of x̂0's latent frames instead, every
        N steps, and the tracked reward decodes only what it needs. `eta` is accepted for the request layer's one
        call shape and changes nothing: the step is the flow scheduler's own (deterministic); Free²Guide draws its
        candidates with its own η = 1 (docs/wan.md)."""
        if preview_every > 0 and getattr(self, "latent_rgb", None) is None:
            preview_every = max(int(preview_every), int(getattr(self, "preview_stride", 1) or 1))
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        tensor_inputs = list(callback_on_step_end_tensor_inputs or [])
        self.check_inputs(prompt, negative_prompt, height, width, prompt_embeds, negative_prompt_embeds,
                          tensor_inputs, guidance_scale_2)
        num_frames = check_frame_count(num_frames, self.vae_scale_factor_temporal)
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be ≥ 1, got {num_inference_steps}")
        if cfg_schedule not in (None, "harivo"):
            raise ValueError(f"cfg_schedule must be None or 'harivo', got {cfg_schedule!r}")
        if mg_scale < 0:
            raise ValueError(f"mg_scale must be ≥ 0, got {mg_scale}")
        model = self.transformer if self.transformer is not None else self.transformer_2
        patch = model.config.patch_size
        h_mult, w_mult = self.vae_scale_factor_spatial * patch[1], self.vae_scale_factor_spatial * patch[2]
        calc_h, calc_w = height // h_mult * h_mult, width // w_mult * w_mult
        if (calc_h, calc_w) != (height, width):  # as the parent does
            logger.warning(f"`height` and `width` must be multiples of ({h_mult}, {w_mult}) for proper "
                           f"patchification. Adjusting ({height}, {width}) -> ({calc_h}, {calc_w}).")
            height, width = calc_h, calc_w
        if self.config.boundary_ratio is not None and guidance_scale_2 is None:
            guidance_scale_2 = guidance_scale
        if isinstance(prompt, str):
            batch = 1
        elif isinstance(prompt, list):
            batch = len(prompt)
        else:
            batch = prompt_embeds.shape[0]
        self._check_guided_args(guidance, reward, batch * (num_videos_per_prompt or 1))

        self._guidance_scale = guidance_scale
        self._guidance_scale_2 = guidance_scale_2
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device

        with torch.no_grad():
            cond, uncond = self.encode_prompt(
                prompt=prompt, negative_prompt=negative_prompt,
                do_classifier_free_guidance=self.do_classifier_free_guidance,
                num_videos_per_prompt=num_videos_per_prompt, prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds, max_sequence_length=max_sequence_length, device=device,
            )
        hook = getattr(self, "_text_encoder_hook", None)
        if hook is not None:  # offload_text_encoder: back to the CPU until the next prompt
            hook.offload()
        cond = cond.to(model.dtype)
        uncond = uncond.to(model.dtype) if (uncond is not None and self.do_classifier_free_guidance) else None

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        x = self.prepare_latents(batch * num_videos_per_prompt, model.config.in_channels, height, width, num_frames,
                                 torch.float32, device, generator, latents)
        self._num_timesteps = len(timesteps)
        self.scheduler.set_begin_index(0)
        boundary = (self.config.boundary_ratio * self.scheduler.config.num_train_timesteps
                    if self.config.boundary_ratio is not None else None)
        ctx = WanDenoiser(self, cond, uncond, num_frames, guidance_scale, generator, timesteps,
                          guidance_scale_2=guidance_scale_2, boundary_timestep=boundary,
                          attention_kwargs=attention_kwargs, mg_scale=mg_scale, cfg_schedule=cfg_schedule,
                          reward=reward)

        def on_step_end(i: int, t, lat: torch.Tensor) -> torch.Tensor:
            self._current_timestep = None
            if callback_on_step_end is None:
                return lat
            values = {"latents": lat, "prompt_embeds": ctx.cond, "negative_prompt_embeds": ctx.uncond}
            outputs = callback_on_step_end(self, i, t, {k: values[k] for k in tensor_inputs}) or {}
            ctx.cond = outputs.pop("prompt_embeds", ctx.cond)
            ctx.uncond = outputs.pop("negative_prompt_embeds", ctx.uncond)
            return outputs.pop("latents", lat)

        def finish(z: torch.Tensor):
            if output_type == "latent":
                if _video_sink is not None:
                    _video_sink.append(z)
                return None
            with torch.no_grad():
                vae_z = ctx.latents_to_vae(z.to(self.vae.dtype))
                video = self.vae.decode(vae_z, return_dict=False)[0]  # (b, 3, F, H, W) in [-1, 1]
            if _video_sink is not None:
                _video_sink.append(video)
            return (video.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)

        rgb = getattr(self, "latent_rgb", None)  # a fitted map (`GVS_WAN_LATENT_RGB`): previews without the VAE
        fast = dict(preview_mode="fast", latent_rgb=rgb, preview_size=(height, width)) if rgb is not None else {}
        yield from sample(ctx, x, guidance, hooks=hooks, preview_every=preview_every, track_reward=track_reward,
                          should_stop=should_stop, on_finish=finish, on_step_end=on_step_end, **fast)
        self._current_timestep = None
        self.maybe_free_model_hooks()

    def __call__(
        self,
        prompt: Union[str, list[str], None] = None,
        negative_prompt: Union[str, list[str], None] = None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        guidance_scale_2: Optional[float] = None,
        num_videos_per_prompt: Optional[int] = 1,
        generator: Union[torch.Generator, list[torch.Generator], None] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        output_type: Optional[str] = "np",
        return_dict: bool = True,
        attention_kwargs: Optional[dict[str, Any]] = None,
        callback_on_step_end: Union[Callable[[int, int], None], PipelineCallback, MultiPipelineCallbacks, None] = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        max_sequence_length: int = 512,
        *,
        guidance: Optional[Guidance] = None,
        reward=None,
        mg_scale: float = 0.0,
        cfg_schedule: Optional[str] = None,
        hooks: Sequence[StepHook] = (),
        preview_every: int = 0,
        track_reward: bool = True,
        should_stop: Optional[Callable[[], bool]] = None,
    ):
        """`WanPipeline.__call__` (same arguments, same frames without guidance), plus the guidance arguments of
        `stream`. Returns `WanPipelineOutput` (with `final_reward`) or `(frames,)`; `output_type="latent"` returns
        the final latents."""
        sink: list = []
        final = None
        for event in self.stream(
            prompt=prompt, negative_prompt=negative_prompt, height=height, width=width, num_frames=num_frames,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, guidance_scale_2=guidance_scale_2,
            num_videos_per_prompt=num_videos_per_prompt, generator=generator, latents=latents,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds, output_type=output_type,
            attention_kwargs=attention_kwargs, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            max_sequence_length=max_sequence_length, guidance=guidance, reward=reward, mg_scale=mg_scale,
            cfg_schedule=cfg_schedule, hooks=hooks, preview_every=preview_every, track_reward=track_reward,
            should_stop=should_stop, _video_sink=sink,
        ):
            final = event
        video = sink[0]
        if output_type != "latent":
            video = self.video_processor.postprocess_video(video, output_type=output_type)
        if not return_dict:
            return (video,)
        out = WanPipelineOutput(frames=video)
        out.final_reward = final.reward if final is not None else None
        return out
