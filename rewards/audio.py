"""Audio rewards: Kaldi-compatible filterbank, ImageBind audio–video similarity, weight-free AV-sync.

No torchaudio: `kaldi_fbank` re-implements `torchaudio.compliance.kaldi.fbank` with the settings ImageBind uses
(25 ms frames, 10 ms hop, `snip_edges`, per-frame DC removal, pre-emphasis 0.97, Kaldi 'hanning' window = symmetric
Hann, FFT padded to a power of two, power spectrum, Kaldi/HTK mel scale `1127 ln(1 + f/700)` with triangles built in
the mel domain from 20 Hz to Nyquist, natural log floored at float32 eps, no dither, no energy term).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import Reward, RewardError, broadcast_video_reward, check_frames
from .clip import CLIP_MEAN, CLIP_STD

IMAGEBIND_AUDIO_MEAN = -4.268
IMAGEBIND_AUDIO_STD = 9.138
SAMPLE_RATE = 16000


# ---------------------------------------------------------------------------------------------------------------
# Waveform helpers
# ---------------------------------------------------------------------------------------------------------------
def as_mono_waveform(waveform, sr: int, target_sr: int = SAMPLE_RATE, who: str = "audio") -> torch.Tensor:
    """Array / tensor (n,), (channels, n) or (n, channels) at `sr` -> float32 mono tensor at `target_sr`.

    Channels are averaged (ImageBind's loader takes channel 0; identical for mono input). Resampling uses soxr.
    A string is read as a file path with soundfile.
    """
    if isinstance(waveform, (str, bytes)) or hasattr(waveform, "__fspath__"):
        import soundfile as sf

        try:
            data, sr = sf.read(str(waveform), dtype="float32", always_2d=True)
        except Exception as exc:
            raise RewardError(f"{who}: cannot read audio file {str(waveform)!r}: {exc}") from exc
        waveform = data.T
    if sr is None or not isinstance(sr, (int, np.integer, float)) or sr <= 0:
        raise RewardError(f"{who}: sample rate must be a positive number, got {sr!r}")
    if isinstance(waveform, torch.Tensor):
        arr = waveform.detach().to("cpu", torch.float32).numpy()
    else:
        try:
            arr = np.asarray(waveform, dtype=np.float32)
        except Exception as exc:
            raise RewardError(f"{who}: waveform must be an array or tensor, got {type(waveform).__name__}") from exc
    if arr.ndim == 2:
        # (channels, n) when channels is the short axis
        arr = arr.mean(axis=0) if arr.shape[0] <= arr.shape[1] else arr.mean(axis=1)
    if arr.ndim != 1:
        raise RewardError(f"{who}: waveform must be 1-D (samples) or 2-D (channels, samples), got shape {arr.shape}")
    if arr.size == 0:
        raise RewardError(f"{who}: empty waveform")
    if not np.all(np.isfinite(arr)):
        raise RewardError(f"{who}: waveform contains NaN or inf")
    if int(sr) != target_sr:
        import soxr

        arr = soxr.resample(arr, int(sr), target_sr).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


# ---------------------------------------------------------------------------------------------------------------
# Kaldi filterbank
# ---------------------------------------------------------------------------------------------------------------
def _mel(f):
    return 1127.0 * torch.log(1.0 + f / 700.0)


def kaldi_mel_banks(num_bins: int, padded_window_size: int, sample_frequency: float, low_freq: float = 20.0,
                    high_freq: float = 0.0, dtype=torch.float64) -> torch.Tensor:
    """Kaldi mel triangles (num_bins, padded_window_size // 2 + 1); the Nyquist column is zero, as in Kaldi."""
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise RewardError(f"kaldi_fbank: need 0 <= low_freq < high_freq <= Nyquist, got {low_freq}, {high_freq}")
    num_fft_bins = padded_window_size // 2
    fft_bin_width = sample_frequency / padded_window_size
    mel_low = _mel(torch.tensor(low_freq, dtype=dtype))
    mel_high = _mel(torch.tensor(high_freq, dtype=dtype))
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=dtype).unsqueeze(1)
    left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    mel = _mel(fft_bin_width * torch.arange(num_fft_bins, dtype=dtype)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


def _window(kind: str, n: int, dtype) -> torch.Tensor:
    if kind in ("hanning", "hann"):
        return torch.hann_window(n, periodic=False, dtype=dtype)
    if kind == "hamming":
        return torch.hamming_window(n, periodic=False, alpha=0.54, beta=0.46, dtype=dtype)
    if kind == "povey":
        return torch.hann_window(n, periodic=False, dtype=dtype).pow(0.85)
    if kind == "rectangular":
        return torch.ones(n, dtype=dtype)
    raise RewardError(f"kaldi_fbank: unknown window_type {kind!r}")


def kaldi_fbank(
    waveform: torch.Tensor,
    num_mel_bins: int = 128,
    sample_frequency: float = 16000.0,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    window_type: str = "hanning",
    use_log_fbank: bool = True,
    use_power: bool = True,
) -> torch.Tensor:
    """Log-mel filterbank (num_frames, num_mel_bins) of a 1-D waveform, like `torchaudio.compliance.kaldi.fbank`
    with `dither=0, snip_edges=True, use_energy=False` (ImageBind / AST settings). Differentiable in torch."""
    if not isinstance(waveform, torch.Tensor):
        waveform = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    if waveform.ndim == 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.ndim != 1:
        raise RewardError(f"kaldi_fbank: waveform must be 1-D, got shape {tuple(waveform.shape)}")
    if not waveform.is_floating_point():
        waveform = waveform.float()
    win = int(sample_frequency * frame_length * 0.001)
    shift = int(sample_frequency * frame_shift * 0.001)
    if waveform.shape[0] < win:
        raise RewardError(f"kaldi_fbank: waveform has {waveform.shape[0]} samples, fewer than one {frame_length} ms frame ({win})")
    padded = 1 << (win - 1).bit_length() if round_to_power_of_two else win
    frames = waveform.unfold(0, win, shift)  # (num_frames, win); snip_edges=True
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    if preemphasis_coefficient != 0.0:
        prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # replicate the first sample
        frames = frames - preemphasis_coefficient * prev
    frames = frames * _window(window_type, win, frames.dtype).to(frames.device)
    if padded != win:
        frames = F.pad(frames, (0, padded - win))
    spec = torch.fft.rfft(frames).abs()
    if use_power:
        spec = spec.pow(2.0)
    banks = kaldi_mel_banks(num_mel_bins, padded, sample_frequency, low_freq, high_freq).to(spec.device, spec.dtype)
    mel = spec @ banks.T
    if use_log_fbank:
        mel = torch.clamp(mel, min=torch.finfo(torch.float32).eps).log()
    return mel


# ---------------------------------------------------------------------------------------------------------------
# ImageBind
# ---------------------------------------------------------------------------------------------------------------
def clip_timepoints(duration: Fraction, clip_duration: Fraction, clips_per_video: int) -> list:
    """Evenly spaced clips (pytorchvideo ConstantClipsPerVideoSampler): starts `i * max(D − d, 0) / (n − 1)`."""
    max_start = max(duration - clip_duration, Fraction(0))
    step = max_start / max(clips_per_video - 1, 1)
    return [(step * i, step * i + clip_duration) for i in range(clips_per_video)]


def imagebind_audio_clips(
    waveform,
    sr: int,
    clip_duration: float = 2.0,
    clips_per_video: int = 3,
    num_mel_bins: int = 128,
    target_length: int = 204,
    mean: float = IMAGEBIND_AUDIO_MEAN,
    std: float = IMAGEBIND_AUDIO_STD,
) -> torch.Tensor:
    """ImageBind audio input (clips, 1, num_mel_bins, target_length): 16 kHz mono, evenly spaced clips, each
    mean-removed, Kaldi fbank, zero-padded / cropped to `target_length` frames, then `(x − mean) / std`."""
    wav = as_mono_waveform(waveform, sr, SAMPLE_RATE, who="imagebind audio")
    duration = Fraction(wav.shape[0], SAMPLE_RATE)
    out = []
    for start, end in clip_timepoints(duration, Fraction(clip_duration).limit_denominator(1000), clips_per_video):
        seg = wav[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)]
        if seg.shape[0] < 400:
            raise RewardError(f"imagebind audio: clip of {seg.shape[0]} samples is shorter than one 25 ms frame")
        seg = seg - seg.mean()
        fb = kaldi_fbank(seg, num_mel_bins=num_mel_bins, sample_frequency=SAMPLE_RATE).T  # (bins, frames)
        p = target_length - fb.shape[1]
        fb = F.pad(fb, (0, p)) if p > 0 else fb[:, :target_length]
        out.append((fb[None] - mean) / std)
    return torch.stack(out)


def imagebind_vision_preprocess(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Frames (f, 3, H, W) in [0, 1] -> shorter side resized to `size` (bicubic), centre crop, CLIP mean/std."""
    h, w = frames.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        frames = F.interpolate(frames, size=(nh, nw), mode="bicubic", align_corners=False, antialias=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        frames = frames[..., top: top + size, left: left + size]
    m = torch.tensor(CLIP_MEAN, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    s = torch.tensor(CLIP_STD, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (frames - m) / s


class ImageBindReward(Reward):
    """`cos(mean over clips of audio embeddings, mean over frames of image embeddings)`, on every frame.

    Frames are images for ImageBind's vision tower (each repeated to the 2-frame temporal patch, as in the source).
    `model`: an `ImageBindModel` (tests pass a tiny one); else weights from `checkpoint` / env `IMAGEBIND_CKPT`,
    or with `download=True` the official checkpoint, downloaded once into the Hugging Face cache folder
    (`rewards.imagebind.resolve_checkpoint`) and loaded once per (device, dtype).
    """

    name = "imagebind"
    differentiable = True
    frame_local = False

    def __init__(self, waveform, sr: int, model=None, checkpoint=None, download: bool = False, device=None, dtype=None):
        from .imagebind import cached_imagebind

        self.model = model if model is not None else cached_imagebind(checkpoint, download=download, device=device,
                                                                       dtype=dtype)
        self.model.eval().requires_grad_(False)
        if model is not None and (device is not None or dtype is not None):
            self.model.to(device=device, dtype=dtype)
        p = next(self.model.parameters())
        clips = imagebind_audio_clips(
            waveform, sr, num_mel_bins=self.model.audio_num_mel_bins, target_length=self.model.audio_target_len
        )
        with torch.no_grad():
            acc = torch.promote_types(p.dtype, torch.float32)
            emb = self.model.encode("audio", clips.to(p.device, p.dtype)).to(acc).mean(0)
        self.audio_embedding = F.normalize(emb, dim=-1)

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "imagebind")
        p = next(self.model.parameters())
        px = imagebind_vision_preprocess(frames.to(p.device, p.dtype), self.model.image_size)
        v = self.model.encode("vision", px).to(self.audio_embedding.dtype).mean(0)
        cos = F.normalize(v, dim=-1) @ self.audio_embedding.to(v.device)
        return broadcast_video_reward(cos.to(frames.dtype), frames.shape[0])

    def to(self, device=None, dtype=None):
        self.model.to(device=device, dtype=dtype)
        # the audio embedding in the accumulation dtype (fp32 beside an fp16 model, fp64 beside an fp64 one)
        acc = None if dtype is None else torch.promote_types(dtype, torch.float32)
        self.audio_embedding = self.audio_embedding.to(device=device, dtype=acc)
        return self


# ---------------------------------------------------------------------------------------------------------------
# AV-sync (weight-free)
# ---------------------------------------------------------------------------------------------------------------
ENVELOPE_RATE = 100.0  # Hz (10 ms hop)


def onset_envelope(waveform, sr: int, num_mel_bins: int = 64) -> np.ndarray:
    """Onset strength at 100 Hz: half-wave rectified spectral flux of the log-mel filterbank, summed over bins.
    Value `j` belongs to the frame centred at `(j·160 + 200) / 16000` s; the first value is 0."""
    wav = as_mono_waveform(waveform, sr, SAMPLE_RATE, who="av-sync audio")
    if wav.shape[0] < 400:
        raise RewardError(f"av-sync audio: {wav.shape[0]} samples is shorter than one 25 ms frame")
    fb = kaldi_fbank(wav.double(), num_mel_bins=num_mel_bins, sample_frequency=SAMPLE_RATE)
    flux = torch.relu(fb[1:] - fb[:-1]).sum(1)
    return torch.cat([flux.new_zeros(1), flux]).numpy()


def envelope_on_intervals(env: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean onset strength over each time interval [start, end) (seconds), from the envelope's running integral
    (linear interpolation, so any video frame rate works); audio past its end counts as 0."""
    t = (np.arange(env.shape[0]) * 160 + 200) / SAMPLE_RATE
    dt = 1.0 / ENVELOPE_RATE
    cum = np.concatenate([[0.0], np.cumsum(env) * dt])
    tc = np.concatenate([[t[0] - dt / 2], t + dt / 2])  # cumulative integral at sample boundaries
    c0 = np.interp(starts, tc, cum)
    c1 = np.interp(ends, tc, cum)
    return (c1 - c0) / np.maximum(ends - starts, 1e-9)


def motion_energy(frames: torch.Tensor) -> torch.Tensor:
    """Per frame transition `mean |frame_{k+1} − frame_k|` (f − 1,)."""
    return (frames[1:] - frames[:-1]).abs().flatten(1).mean(1)


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pearson correlation of two 1-D tensors; 0 when either is constant (eps in the denominator)."""
    a = a - a.mean()
    b = b - b.mean()
    # sums kept 1-D: torch promotes the forward-AD tangent of `0-dim + python float` to float64
    num = (a * b).sum(0, keepdim=True)
    den = torch.sqrt((a * a).sum(0, keepdim=True) + eps) * torch.sqrt((b * b).sum(0, keepdim=True) + eps)
    return (num / den)[0]


class AVSyncReward(Reward):
    """Pearson correlation of audio onset strength and video motion energy per frame transition, on every frame.

    Transition between frames `i < j` (consecutive in `frame_indices`, default all frames) spans
    `[i/fps, j/fps)`; its audio value is the mean onset strength over that span. Range [−1, 1].
    Defined values / errors: silent or constant audio -> `RewardError` at construction (nothing to sync to);
    fewer than 3 frames -> `RewardError`; onsets constant over the video's span (e.g. the audio ended) or a
    perfectly static video -> 0 (the epsilon in the denominator; no NaN).
    """

    name = "av_sync"
    differentiable = True
    frame_local = False

    def __init__(self, waveform, sr: int, fps: float, num_mel_bins: int = 64):
        if not isinstance(fps, (int, float)) or fps <= 0 or not math.isfinite(fps):
            raise RewardError(f"av-sync: fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        wav = as_mono_waveform(waveform, sr, SAMPLE_RATE, who="av-sync audio")
        if float(wav.abs().max()) < 1e-6:
            raise RewardError("av-sync audio: the waveform is silent, so there are no onsets to synchronise with")
        self.envelope = onset_envelope(wav, SAMPLE_RATE, num_mel_bins)
        if float(self.envelope.max()) <= 0.0:
            raise RewardError("av-sync audio: the waveform has no onsets (constant spectrum)")
        self.duration = wav.shape[0] / SAMPLE_RATE

    def audio_curve(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.float64)
        return envelope_on_intervals(self.envelope, idx[:-1] / self.fps, idx[1:] / self.fps)

    def required_frames(self, num_frames: int) -> Optional[list[int]]:
        return list(range(num_frames))

    def __call__(self, frames, frame_indices: Optional[Sequence[int]] = None, num_frames: Optional[int] = None):
        check_frames(frames, "av-sync")
        f = frames.shape[0]
        if f < 3:
            raise RewardError(f"av-sync: needs at least 3 frames to correlate, got {f}")
        idx = list(range(f)) if frame_indices is None else [int(i) for i in frame_indices]
        if len(idx) != f:
            raise RewardError(f"av-sync: frame_indices has {len(idx)} entries for {f} frames")
        if any(b <= a for a, b in zip(idx, idx[1:])):
            raise RewardError("av-sync: frame_indices must be strictly increasing")
        key = (tuple(idx), frames.device)
        if getattr(self, "_curve_key", None) != key:  # built once per frame set and device, not at every step
            self._curve = torch.as_tensor(self.audio_curve(idx), dtype=torch.float32, device=frames.device)
            self._curve_key = key
        audio = self._curve
        motion = motion_energy(frames.float())
        r = pearson(motion, audio)
        return broadcast_video_reward(r.to(frames.dtype), f)

    def __repr__(self):
        return f"AVSyncReward(fps={self.fps}, duration={self.duration:.2f}s)"
