"""Media rules of pipelines/media.py: one test per rule (see the module docstring)."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipelines import media
from pipelines.media import Audio, MediaError


# ------------------------------------------------------------------------------------------------------------ images
def test_corrupt_image_rejected(tmp_path):
    p = tmp_path / "broken.png"
    good = tmp_path / "good.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(good)
    p.write_bytes(good.read_bytes()[:40])  # header survives, pixel data truncated
    with pytest.raises(MediaError) as e:
        media.load_image(p, "style_image")
    assert e.value.field == "style_image"
    t = tmp_path / "notes.png"
    t.write_text("this is not an image")
    with pytest.raises(MediaError, match="not a readable image"):
        media.load_image(t, "style_image")


def test_missing_image_file(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        media.load_image(tmp_path / "nope.png", "first_frame")


def test_grayscale_to_rgb(tmp_path):
    p = tmp_path / "g.png"
    Image.new("L", (8, 6), 128).save(p)
    img = media.load_image(p, "style_image")
    assert img.mode == "RGB" and img.size == (8, 6)
    assert img.getpixel((0, 0)) == (128, 128, 128)


def test_16bit_scaled_not_clipped(tmp_path):
    p = tmp_path / "g16.png"
    arr = np.full((4, 4), 65535 // 2, dtype=np.uint16)
    Image.frombytes("I;16", (4, 4), arr.tobytes()).save(p)
    img = media.load_image(p, "style_image")
    assert img.mode == "RGB"
    assert abs(img.getpixel((1, 1))[0] - 128) <= 1  # half scale stays half scale, not saturated at 255


def test_alpha_composited_on_white(tmp_path):
    p = tmp_path / "a.png"
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    im.putpixel((0, 0), (0, 0, 255, 255))
    im.save(p)
    img = media.load_image(p, "style_image")
    assert img.mode == "RGB"
    assert img.getpixel((1, 1)) == media.ALPHA_BACKGROUND  # fully transparent -> background
    assert img.getpixel((0, 0)) == (0, 0, 255)
    la = tmp_path / "la.png"
    Image.new("LA", (2, 2), (0, 128)).save(la)
    px = media.load_image(la, "style_image").getpixel((0, 0))
    assert 120 <= px[0] <= 135  # half-transparent black on white


def test_huge_image_rejected_before_decoding(tmp_path, monkeypatch):
    p = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000), 0).save(p)  # bilevel: 12.5 MB in memory, tiny on disk
    decoded = []
    orig_load = Image.Image.load

    def spy(self):
        decoded.append(self.size)
        return orig_load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    with pytest.raises(MediaError, match=r"10000x10000.*above the limit") as e:
        media.load_image(p, "style_image")
    assert e.value.field == "style_image"
    assert (10_000, 10_000) not in decoded


def test_fit_square_keeps_the_centre():
    # 40x20: red bands 10 px wide on both sides, a blue 20x20 centre -> the centre crop is all blue
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (10, 0, 30, 20))
    out = media.fit_square(img, 32)
    assert out.size == (32, 32)
    px = np.asarray(out).reshape(-1, 3)
    assert px[:, 2].min() > 240 and px[:, 0].max() < 15, "a side band survived: the crop is not centred"
    # portrait too: the top and bottom bands go
    tall = img.transpose(Image.Transpose.ROTATE_90)
    assert np.asarray(media.fit_square(tall, 16))[..., 0].max() < 15
    same = Image.new("RGB", (32, 32))
    assert media.fit_square(same, 32) is same  # already the size: untouched


# ------------------------------------------------------------------------------------------------------------- audio
def _tone(seconds=1.0, sr=22050, freq=440.0, amp=0.5, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_soundfile_formats_resampled_to_16k(tmp_path, fmt):
    p = tmp_path / f"tone.{fmt}"
    sf.write(p, _tone(1.0, 22050, channels=2), 22050)
    a = media.load_audio(p)
    assert a.sample_rate == 16_000
    assert a.wave.dtype == np.float32 and a.wave.ndim == 1
    assert abs(len(a.wave) - 16_000) <= 16
    assert 0.3 < np.abs(a.wave).max() <= 1.0


def _ffmpeg_encode(src, dst, *args):
    subprocess.run([media._ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)


@pytest.mark.parametrize("fmt,args", [("mp3", ["-c:a", "libmp3lame"]), ("m4a", ["-c:a", "aac"])])
def test_ffmpeg_formats(tmp_path, fmt, args):
    wav = tmp_path / "src.wav"
    sf.write(wav, _tone(1.5, 44100), 44100)
    out = tmp_path / f"tone.{fmt}"
    try:
        _ffmpeg_encode(wav, out, *args)
    except subprocess.CalledProcessError:
        if fmt == "mp3":  # the shipped ffmpeg may lack the lame encoder; fall back to its own mp3 encoder name
            _ffmpeg_encode(wav, out, "-f", "mp3")
        else:
            raise
    a = media.load_audio(out)
    assert a.sample_rate == 16_000
    assert 1.3 < a.seconds < 1.7
    assert np.abs(a.wave).max() > 0.2


def test_ffmpeg_fallback_used_for_m4a(tmp_path, monkeypatch):
    wav = tmp_path / "src.wav"
    sf.write(wav, _tone(0.5, 16000), 16000)
    out = tmp_path / "t.m4a"
    _ffmpeg_encode(wav, out, "-c:a", "aac")
    calls = []
    orig = media._decode_with_ffmpeg
    monkeypatch.setattr(media, "_decode_with_ffmpeg", lambda p, sr: calls.append(p) or orig(p, sr))
    media.load_audio(out)
    assert calls == [out]


def test_text_file_as_audio_rejected(tmp_path):
    p = tmp_path / "lyrics.wav"
    p.write_text("la la la, this is not audio\n" * 20)
    with pytest.raises(MediaError, match="not a readable audio file") as e:
        media.load_audio(p, "audio")
    assert e.value.field == "audio"


def test_empty_audio_file_rejected(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        media.load_audio(p)


def test_silent_audio_rejected(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(16000, np.float32), 16000)
    a = media.load_audio(p)
    with pytest.raises(MediaError, match="silent"):
        media.check_not_silent(a)
    media.check_not_silent(media.load_audio((_tone(0.2, 16000), 16000)))  # a real signal passes


def test_long_audio_cropped_with_notice():
    a = Audio(_tone(30.0, 16000), 16000)
    out, notices = media.fit_audio(a, 2.0)
    assert len(out.wave) == 32000
    assert notices and "longer" in notices[0] and "30.00 s" in notices[0]
    short, notices = media.fit_audio(Audio(_tone(0.5, 16000), 16000), 2.0)
    assert len(short.wave) == 32000 and "padded" in notices[0]


def test_gradio_numpy_audio_tuple():
    x = (np.iinfo(np.int16).max * 0.5 * np.ones((8000, 2))).astype(np.int16)
    a = media.load_audio((8000, x))
    assert a.sample_rate == 16000 and abs(len(a.wave) - 16000) <= 16
    assert 0.45 < float(np.median(a.wave)) < 0.55


def test_resample_soxr():
    x = _tone(1.0, 48000)
    y = media.resample(x, 48000, 16000)
    assert len(y) == 16000 and y.dtype == np.float32


# ------------------------------------------------------------------------------------------------------------- video
def test_write_mp4_with_audio(tmp_path):
    frames = np.random.default_rng(0).random((8, 3, 32, 32)).astype(np.float32)
    out = tmp_path / "v.mp4"
    media.write_mp4(out, frames, fps=4, audio=Audio(_tone(2.0, 16000), 16000), min_side=64)
    info = media.probe(out)
    assert "h264" in info and "yuv420p" in info and "Audio: aac" in info
    assert "64x64" in info
    assert media.count_frames(out) == 8


def test_write_mp4_without_audio_odd_size(tmp_path):
    frames = np.zeros((5, 33, 31, 3), np.uint8)
    out = tmp_path / "v.mp4"
    media.write_mp4(out, frames, fps=4)
    info = media.probe(out)
    assert "Audio:" not in info and "32x34" in info
    assert media.count_frames(out) == 5


def test_frame_strip():
    img = media.frame_strip(np.zeros((16, 3, 32, 32), np.float32), scale_to=64, max_per_row=8)
    assert img.size == (8 * 64 + 7 * 2, 2 * 64 + 2)


def _index_frames(n, size=16):
    """n frames whose index is written as 8 black/white blocks (4 wide x 8 high): bit b of k is block b of frame k."""
    out = np.zeros((n, size, size, 3), np.uint8)
    bw, bh = size // 4, size // 2
    for k in range(n):
        for b in range(8):
            if (k >> b) & 1:
                r, c = divmod(b, 4)
                out[k, r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255
    return out


def _read_indices(path, size=16, max_frames=None):
    """The frame indices `_index_frames` drew, read back through the one video reader (`media.read_frames`)."""
    meta, frames = media.read_frames(path, max_frames)
    assert tuple(meta["size"]) == (size, size)
    bw, bh = size // 4, size // 2
    got = []
    for fr in frames:
        f = fr.astype(np.float32).mean(axis=2)
        got.append(sum(1 << b for b in range(8)
                       if f[(b // 4) * bh:(b // 4 + 1) * bh, (b % 4) * bw:(b % 4 + 1) * bw].mean() > 127.5))
    return got


# 60 frames at 12 fps came back as 59 (frame 48 twice, the last one lost); short clips at 4 or 8 fps were exact
@pytest.mark.parametrize("fps,counts", [(4, [1, 37]), (6, [50, 121]), (8, [16, 65]), (12, [60, 200]),
                                        (24, [120, 143]), (25, [100, 167]), (30, [2, 199])])
def test_write_mp4_keeps_every_frame_in_order(tmp_path, fps, counts):
    for n in counts:
        out = tmp_path / f"v{n}.mp4"
        media.write_mp4(out, _index_frames(n), fps=fps)
        assert media.count_frames(out) == n, (n, fps)
        assert _read_indices(out) == list(range(n)), (n, fps)
        assert f"{fps} fps" in media.probe(out)


def test_read_frames_stops_at_max_frames_and_reads_the_metadata_alone(tmp_path):
    out = tmp_path / "v.mp4"
    media.write_mp4(out, _index_frames(20), fps=8)
    assert _read_indices(out, max_frames=5) == [0, 1, 2, 3, 4]
    meta, frames = media.read_frames(out, max_frames=0)
    assert frames == [] and meta["fps"] == 8 and tuple(meta["size"]) == (16, 16)
    _, window = media.read_frames(out, output_params=["-vf", "select=eq(n\\,3)+eq(n\\,7)", "-fps_mode", "passthrough"])
    assert len(window) == 2


@pytest.mark.parametrize("preset", ["veryfast", "ultrafast"])
def test_write_mp4_faster_x264_presets_keep_every_frame(tmp_path, preset):
    """The app writes its display copies with a faster x264 preset: still every frame, in order."""
    out = tmp_path / "v.mp4"
    media.write_mp4(out, _index_frames(37), fps=8, x264_preset=preset)
    assert _read_indices(out) == list(range(37))


def test_write_mp4_refuses_an_unknown_x264_preset(tmp_path):
    with pytest.raises(ValueError, match="x264_preset: 'quick'"):
        media.write_mp4(tmp_path / "v.mp4", _index_frames(4), fps=4, x264_preset="quick")
    assert not (tmp_path / "v.mp4").exists()
