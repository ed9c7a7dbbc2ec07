"""Generate the example inputs in assets/examples/ (all rendered or synthesised here: no third-party media).

    python scripts/make_examples.py [--out assets/examples]

- style_stripes.png, style_checker.png, style_gradient.png: rendered style references (128 x 128);
- style_world_striped.png, style_world_checkered.png: the micro world's own background patterns in gray (32 x 32, the
  style suite's references), so the style tab's example is a case of the style suite;
- style_look_stripes.png: a look of micro world 2 (teal and beige wide rising diagonal stripes, 256 x 256), the style
  tab's reference on a world-2 preset (micro2);
- impacts.wav: 2 s of impact thumps at the micro world's bounce times (16 kHz), for the audio tab;
- impacts_long.wav: 12 s of thumps (longer than any video: shows the crop notice);
- first_frame.png / last_frame.png: first and last frames of a rendered micro clip
  ("a blue triangle moving left to right on a gray background"), 32 x 32.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)).save(path, optimize=True)


def style_images(out: Path, size: int = 128) -> None:
    y, x = np.mgrid[0:size, 0:size] / size
    stripes = np.zeros((size, size, 3), np.float32)
    band = (np.floor((x + y) * 8) % 2).astype(bool)
    stripes[band] = (1.0, 0.55, 0.0)
    stripes[~band] = (0.1, 0.1, 0.45)
    _save(stripes, out / "style_stripes.png")
    cells = ((np.floor(x * 8) + np.floor(y * 8)) % 2).astype(bool)
    checker = np.where(cells[..., None], np.array([0.95, 0.95, 0.9]), np.array([0.15, 0.5, 0.2]))
    _save(checker, out / "style_checker.png")
    grad = np.stack([x, 0.5 * (1 - y), 1 - x * y], axis=-1)
    _save(grad, out / "style_gradient.png")


def world_patterns(out: Path) -> None:
    from pipelines.evaluation.micro import reference_image

    for pattern in ("striped", "checkered"):
        reference_image(pattern).save(out / f"style_world_{pattern}.png", optimize=True)


def world2_look(out: Path) -> None:
    from pipelines.evaluation.micro import look_reference
    from pipelines.micro.looks import Look

    look_reference(Look.make("stripes", ("teal", "beige"), 45, "wide")).save(out / "style_look_stripes.png",
                                                                              optimize=True)


def audio_clips(out: Path) -> None:
    from pipelines.micro.world import SAMPLE_RATE, synth_impacts_audio
    from pipelines.studio.examples import EXAMPLE_IMPACT_TIMES

    short = synth_impacts_audio(list(EXAMPLE_IMPACT_TIMES), 2.0, SAMPLE_RATE)
    sf.write(out / "impacts.wav", short, SAMPLE_RATE, subtype="PCM_16")
    long = synth_impacts_audio([0.5 * k + 0.25 for k in range(24)], 12.0, SAMPLE_RATE)
    sf.write(out / "impacts_long.wav", long, SAMPLE_RATE, subtype="PCM_16")


def key_frames(out: Path) -> None:
    from pipelines.micro.world import render_clip

    frames, _ = render_clip("blue", "triangle", "moving left to right", "gray", seed=0)
    arr = frames.numpy().transpose(0, 2, 3, 1)
    _save(arr[0], out / "first_frame.png")
    _save(arr[-1], out / "last_frame.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "assets" / "examples"))
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    style_images(out)
    world_patterns(out)
    world2_look(out)
    audio_clips(out)
    key_frames(out)
    for f in sorted(out.iterdir()):
        print(f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}  {f.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
