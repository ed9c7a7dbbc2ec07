"""Media in and out: image and audio loading with validation, previews, and mp4 writing with an audio track.

Every loader raises `MediaError(field, message)` with a message a user can act on; the request layer turns it
into `RequestError` (CLI: one line on stderr, exit 2; app: `gr.Error`). Rules (each has a test in
tests/test_media.py):

Images
- anything PIL cannot identify (corrupt, truncated, a text file) is rejected;
- the pixel count is checked from the header (`Image.open` is lazy) *before* any decoding: above
  `MAX_IMAGE_PIXELS` (4096 x 4096) the image is rejected; PIL's own decompression-bomb guard is kept as a backstop;
- grayscale (`L`, `1`), 16/32-bit (`I;16`, `I`, `F`), palette and CMYK images are converted to RGB; 16-bit values are
  scaled down to 8 bits (not clipped); transparency (`RGBA`, `LA`, `P` with a transparent index) is composited on a
  white background (`ALPHA_BACKGROUND`).

Audio
- wav, flac and ogg are read with soundfile; anything soundfile cannot read (mp3, m4a/aac, webm, ...) is decoded by
  the ffmpeg binary shipped with imageio-ffmpeg (`-f f32le -ac 1 -ar 16000` on a pipe); a file neither can decode
  (e.g. a text file) is rejected;
- channels are averaged to mono and resampled to 16 kHz with soxr;
- silent audio (peak below `SILENCE_PEAK`) is rejected: audio alignment needs a signal to align to;
- audio longer than the video is cropped to the video length, shorter audio is padded with silence; both with a
  notice.

Video in
- `read_frames`: the one video reader (the imageio-ffmpeg binary; ffmpeg's own input/output options for a seek or a
  frame selection), used by the real suites' FVD, the training data's ffmpeg backend and the loader bench.

Video out
- h264 in mp4 with `yuv420p` (raw frames piped to the imageio-ffmpeg binary at a constant frame rate, so every
  frame is written once, in order), AAC audio when there is audio; odd sizes are padded to even; frames can be
  upscaled with nearest-neighbour for display (micro clips are 32 x 32).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest accepted image, in pixels (checked from the header before decoding).
MAX_IMAGE_PIXELS = 4096 * 4096
#: Background used when an image with transparency is flattened to RGB.
ALPHA_BACKGROUND = (255, 255, 255)
#: Sample rate every audio input is converted to (the micro world and the audio rewards use 16 kHz).
AUDIO_SAMPLE_RATE = 16_000
#: An audio clip whose absolute peak is below this is treated as silent.
SILENCE_PEAK = 1e-3
#: Longest audio accepted for decoding, in seconds (the input is cropped to the video length anyway).
MAX_AUDIO_SECONDS = 600.0

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


class MediaError(ValueError):
    """A media input cannot be used; `field` names the input (e.g. `style_image`, `audio`)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ----------------------------------------------------------------------------------------------------------- images
def _to_rgb(img: Image.Image, background=ALPHA_BACKGROUND) -> Image.Image:
    """Convert any PIL mode to RGB: alpha composited on `background`, high bit depths scaled to 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0
        else:
            hi = float(arr.max()) if arr.size else 1.0
            lo = float(arr.min()) if arr.size else 0.0
            if mode == "F" and 0.0 <= lo and hi <= 1.0:
                pass  # already a [0, 1] float image
            elif hi > 255.0:
                arr = arr / (65535.0 if hi <= 65535.0 else hi)
            else:
                arr = arr / 255.0
        gray = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB")


def load_image(source: ImageInput, field: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image (path, PIL image or uint8 array) as a validated RGB `PIL.Image`.

    For paths, the size is read from the header and checked against `max_pixels` before the pixels are decoded.
    """
    if source is None:
        raise MediaError(field, "no image given")
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise MediaError(field, f"expected an image array (H, W[, 1|3|4]), got shape {arr.shape}")
        if arr.shape[0] * arr.shape[1] > max_pixels:
            raise MediaError(field, _too_big(arr.shape[1], arr.shape[0], max_pixels))
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return _to_rgb(Image.fromarray(arr))
    if isinstance(source, Image.Image):
        w, h = source.size
        if w * h > max_pixels:
            raise MediaError(field, _too_big(w, h, max_pixels))
        return _to_rgb(source).copy()
    path = Path(os.fspath(source))
    if not path.is_file():
        raise MediaError(field, f"file not found: {path}")
    try:
        with warnings.catch_warnings():
            # our own limit (below PIL's) is checked from the header; PIL's bomb *error* (2x its limit) stays a backstop
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # lazy: reads the header only
                w, h = img.size
                if w <= 0 or h <= 0:
                    raise MediaError(field, f"image has an empty size {w}x{h}")
                if w * h > max_pixels:
                    raise MediaError(field, _too_big(w, h, max_pixels))
                img.load()
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                img = ImageOps.exif_transpose(img) or img
                return _to_rgb(img).copy()
    except MediaError:
        raise
    except Image.DecompressionBombError as e:
        raise MediaError(field, f"image is too large to decode safely, above the limit of {max_pixels:,} pixels "
                                f"({e})") from None
    except UnidentifiedImageError:
        raise MediaError(field, f"not a readable image file: {path.name} (corrupt or unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(field, f"could not decode image {path.name}: {e} (corrupt or truncated file?)") from None


def _too_big(w: int, h: int, max_pixels: int) -> str:
    side = int(max_pixels ** 0.5)
    return (f"image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} (about {side}x{side}); "
            "downscale it and try again")


def fit_size(img: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop to the aspect ratio width:height and resize to `width` x `height` (Lanczos)."""
    w, h = img.size
    if (w, h) == (width, height):
        return img
    if w * height > h * width:  # too wide: crop the sides
        cw, ch = max(1, round(h * width / height)), h
    else:
        cw, ch = w, max(1, round(w * height / width))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch)).resize((width, height), Image.Resampling.LANCZOS)


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize to `size` x `size` (Lanczos)."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.LANCZOS)


# ------------------------------------------------------------------------------------------------------------ audio
@dataclass
class Audio:
    """Mono float32 waveform in [-1, 1] at `sample_rate` Hz."""

    wave: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.wave) / float(self.sample_rate)


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _decode_with_soundfile(path: Path) -> Optional[tuple[np.ndarray, int]]:
    import soundfile as sf

    try:
        info = sf.info(str(path))
        if info.frames > MAX_AUDIO_SECONDS * info.samplerate * 1.01:
            frames = int(MAX_AUDIO_SECONDS * info.samplerate)
        else:
            frames = -1
        data, sr = sf.read(str(path), dtype="float32", always_2d=True, frames=frames)
    except Exception:  # soundfile.LibsndfileError, RuntimeError, TypeError: not a format libsndfile reads
        return None
    return data.mean(axis=1).astype(np.float32), int(sr)


def _decode_with_ffmpeg(path: Path, sample_rate: int) -> Optional[np.ndarray]:
    cmd = [_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-t", str(MAX_AUDIO_SECONDS),
           "-vn", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or len(proc.stdout) < 4:
        return None
    return np.frombuffer(proc.stdout[: len(proc.stdout) // 4 * 4], dtype="<f4").astype(np.float32)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out or len(wave) == 0:
        return wave.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(wave.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ").astype(np.float32)


def load_audio(source, field: str = "audio", sample_rate: int = AUDIO_SAMPLE_RATE) -> Audio:
    """Load audio as mono float32 at `sample_rate`.

    `source` is a path (wav/flac/ogg through soundfile; mp3/m4a/... through ffmpeg), an `Audio`, or a
    `(sample_rate, array)` / `(array, sample_rate)` tuple (Gradio's numpy audio is `(sr, int16 array)`).
    """
    if source is None:
        raise MediaError(field, "no audio given")
    if isinstance(source, Audio):
        wave, sr = source.wave, source.sample_rate
    elif isinstance(source, tuple) and len(source) == 2:
        a, b = source
        if isinstance(a, (int, np.integer)) and isinstance(b, np.ndarray):
            sr, wave = int(a), b
        elif isinstance(b, (int, np.integer)) and isinstance(a, np.ndarray):
            wave, sr = a, int(b)
        else:
            raise MediaError(field, "expected (sample_rate, waveform) or (waveform, sample_rate)")
        wave = _to_float_mono(np.asarray(wave))
    else:
        path = Path(os.fspath(source))
        if not path.is_file():
            raise MediaError(field, f"file not found: {path}")
        if path.stat().st_size == 0:
            raise MediaError(field, f"{path.name} is empty")
        got = _decode_with_soundfile(path)
        if got is not None:
            wave, sr = got
        else:
            wave = _decode_with_ffmpeg(path, sample_rate)
            sr = sample_rate
            if wave is None:
                raise MediaError(field, f"not a readable audio file: {path.name} "
                                        "(supported: wav, flac, ogg, mp3, m4a and other formats ffmpeg decodes)")
    if not isinstance(sr, int) or sr <= 0:
        raise MediaError(field, f"invalid sample rate {sr!r}")
    wave = np.nan_to_num(np.asarray(wave, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if wave.size == 0:
        raise MediaError(field, "the audio has no samples")
    wave = resample(wave, sr, sample_rate)
    return Audio(np.clip(wave, -1.0, 1.0).astype(np.float32), sample_rate)


def _to_float_mono(arr: np.ndarray) -> np.ndarray:
    if arr.ndim not in (1, 2):
        raise MediaError("audio", f"expected a 1-D or 2-D waveform, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / (float(np.iinfo(arr.dtype).max) + 1.0)
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        # (n, channels) as Gradio and soundfile give it; (channels, n) when the first axis is tiny
        arr = arr.mean(axis=1) if arr.shape[1] <= 8 else arr.mean(axis=0)
    return arr.astype(np.float32)


def check_not_silent(audio: Audio, field: str = "audio") -> None:
    peak = float(np.max(np.abs(audio.wave))) if audio.wave.size else 0.0
    if peak < SILENCE_PEAK:
        raise MediaError(field, f"the audio is silent (peak {peak:.1e}); audio alignment needs sound to align the "
                                "video to: upload or record a clip with audible events")


def fit_audio(audio: Audio, seconds: float, field: str = "audio") -> tuple[Audio, list[str]]:
    """Crop (or pad with silence) to exactly `seconds`; returns the audio and notices."""
    n = int(round(seconds * audio.sample_rate))
    notices: list[str] = []
    if len(audio.wave) > n:
        notices.append(f"{field}: the audio is {audio.seconds:.2f} s, longer than the {seconds:.2f} s video; "
                       f"only its first {seconds:.2f} s are used and muxed")
        wave = audio.wave[:n]
    elif len(audio.wave) < n:
        notices.append(f"{field}: the audio is {audio.seconds:.2f} s, shorter than the {seconds:.2f} s video; "
                       "padded with silence")
        wave = np.concatenate([audio.wave, np.zeros(n - len(audio.wave), np.float32)])
    else:
        wave = audio.wave
    return Audio(wave.astype(np.float32), audio.sample_rate), notices


def write_wav(path, audio: Audio) -> None:
    import soundfile as sf

    sf.write(str(path), audio.wave, audio.sample_rate, subtype="PCM_16")


# ----------------------------------------------------------------------------------------------------- frames/video
def frames_to_uint8(frames) -> np.ndarray:
    """(f, 3, H, W) float tensor/array in [0, 1] (or (f, H, W, 3) uint8) -> (f, H, W, 3) uint8."""
    try:
        import torch

        if isinstance(frames, torch.Tensor):
            frames = frames.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(frames)
    if arr.ndim != 4:
        raise ValueError(f"frames must be 4-D, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr if arr.shape[-1] == 3 else np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
    if arr.shape[1] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(0, 2, 3, 1)
    return np.clip(np.round(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)


def upscale_nearest(frames: np.ndarray, min_side: int) -> np.ndarray:
    """Integer nearest-neighbour upscale so the shorter side is at least `min_side` (keeps pixel art crisp)."""
    h, w = frames.shape[1:3]
    k = max(1, -(-min_side // max(1, min(h, w))))
    if k == 1:
        return frames
    return frames.repeat(k, axis=1).repeat(k, axis=2)


def _even(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return frames


def frame_strip(frames, scale_to: int = 96, max_per_row: int = 8, gap: int = 2) -> Image.Image:
    """A grid image of the frames (used as the live preview of x̂0)."""
    return _grid(upscale_nearest(frames_to_uint8(frames), scale_to), max_per_row, gap)


def preview_grid(frames, tile: int = 128, cols: int = 4, gap: int = 4) -> Image.Image:
    """The frames as a grid of `cols` columns, each frame about `tile` px on its longer side.

    Small frames (the micro preset's 32 x 32) are upscaled by an integer factor with nearest-neighbour (pixels stay
    crisp); large ones (512 x 512) are downscaled with a box filter, so the grid stays readable at any model size.
    """
    arr = frames_to_uint8(frames)
    f, h, w, _ = arr.shape
    if max(h, w) <= tile:
        arr = upscale_nearest(arr, max(1, tile * min(h, w) // max(h, w)))
    else:
        k = tile / max(h, w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        arr = np.stack([np.asarray(Image.fromarray(a).resize(size, Image.BOX)) for a in arr])
    return _grid(arr, cols, gap)


def _grid(arr: np.ndarray, cols: int, gap: int) -> Image.Image:
    f, h, w, _ = arr.shape
    cols = max(1, min(f, cols))
    rows = -(-f // cols)
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i in range(f):
        r, c = divmod(i, cols)
        canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = arr[i]
    return Image.fromarray(canvas)


#: x264's presets, fastest first
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def write_mp4(path, frames, fps: int, audio: Optional[Audio] = None, min_side: int = 0,
              keyframe_every: Optional[int] = None, x264_preset: str = "medium") -> None:
    """Write h264/yuv420p mp4 (AAC audio muxed when given, cropped/padded to the video length by the caller).
    `keyframe_every`: a key frame every N frames (x264's GOP; default x264's 250), so a reader can seek.
    `x264_preset`: x264's speed/size trade-off (`X264_PRESETS`; quality is set by x264's default CRF either way).

    The frames are piped to ffmpeg as raw video at a constant `fps`, so frame k of the input is frame k of the
    file, with no time-based resampling: moviepy's `ImageSequenceClip` picked frames by float time (its frame
    starts are float32 under numpy 2, its duration a float sum of 1/fps), which dropped the last frame and showed
    some frames twice in long clips (60 frames at 12 fps came back as 59)."""
    if x264_preset not in X264_PRESETS:
        raise ValueError(f"x264_preset: {x264_preset!r} is not one of {X264_PRESETS}")
    arr = frames_to_uint8(frames)
    if min_side:
        arr = upscale_nearest(arr, min_side)
    arr = np.ascontiguousarray(_even(arr))
    n, h, w, _ = arr.shape
    if n == 0:
        raise ValueError("no frames to write")
    fps = int(fps) if float(fps).is_integer() else float(fps)
    path = Path(path)
    tmpdir = tempfile.mkdtemp(prefix="gvs-mux-")
    try:
        cmd = [_ffmpeg_exe(), "-nostdin", "-y", "-v", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "-"]
        if audio is not None:
            wav = Path(tmpdir) / "audio.wav"
            write_wav(wav, audio)
            cmd += ["-i", str(wav)]
        # the raw input's timestamps are exactly k / fps: ffmpeg's constant-rate output keeps one frame per input
        # frame (no -fps_mode, which ffmpeg before 5.1 lacks)
        cmd += ["-map", "0:v:0", "-c:v", "libx264", "-preset", x264_preset, "-pix_fmt", "yuv420p"]
        if keyframe_every:
            cmd += ["-g", str(int(keyframe_every))]
        if audio is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac"]
        cmd += ["-f", "mp4", str(path)]
        log = Path(tmpdir) / "ffmpeg.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for frame in arr:
                    proc.stdin.write(frame.tobytes())
            except BrokenPipeError:
                pass  # ffmpeg stopped early; its log says why
            finally:
                proc.stdin.close()
                rc = proc.wait()
        if rc != 0:
            msg = log.read_text(errors="replace").strip()
            raise RuntimeError(f"ffmpeg could not write {path.name} (exit {rc}): {msg[-2000:]}")
    finally:
        for p in Path(tmpdir).glob("*"):
            p.unlink(missing_ok=True)
        os.rmdir(tmpdir)


def probe(path) -> str:
    """ffmpeg's stream description of a media file (stderr of `ffmpeg -i`); there is no ffprobe."""
    proc = subprocess.run([_ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return proc.stderr


def read_frames(path, max_frames: Optional[int] = None, input_params: Optional[list] = None,
                output_params: Optional[list] = None) -> tuple[dict, list[np.ndarray]]:
    """A video file's metadata (`size`, `fps`, `duration`, ...) and frames as (H, W, 3) uint8 arrays, decoded by the
    imageio-ffmpeg binary with ffmpeg's `input_params` / `output_params`; at most `max_frames` (0: the metadata
    alone)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), input_params=input_params, output_params=output_params)
    frames: list[np.ndarray] = []
    try:
        meta = next(gen)
        w, h = meta["size"]
        if max_frames != 0:
            for buf in gen:
                frames.append(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
                if max_frames and len(frames) >= max_frames:
                    break
    finally:
        gen.close()
    return meta, frames


def count_frames(path) -> int:
    import imageio_ffmpeg

    n, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return int(n)


def atomic_targets(paths: Sequence[Path]) -> list[Path]:
    """Temporary sibling paths (same directory, same suffix) for atomic writes via `os.replace`."""
    out = []
    for p in paths:
        p = Path(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".part{p.suffix}", dir=str(p.parent))
        os.close(fd)
        out.append(Path(tmp))
    return out
