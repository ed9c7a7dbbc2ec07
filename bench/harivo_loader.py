"""Throughput of the HARIVO training data loader on real-sized videos (bench/HARIVO_TRAINING.md).

Writes `--videos` synthetic mp4s (moving gradients, `--seconds` long, `--width`×`--height` at `--src-fps`, a key
frame every 2 s, as WebVid-like files) with `pipelines.media.write_mp4`, then reads `--clips` random windows of the
`sd15` config (24 frames at 6 fps, 256²) through `VideoCSV` with each backend, and the old whole-file decode for
reference. Prints one JSON line per (backend, workers).

    python bench/harivo_loader.py --videos 4 --seconds 20 --clips 24
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import media  # noqa: E402
from pipelines.training.data import VideoCSV, collate, video_backend  # noqa: E402


def make_videos(folder: Path, n: int, seconds: float, w: int, h: int, fps: int) -> Path:
    rows = []
    for i in range(n):
        t = np.arange(int(seconds * fps))[:, None, None]
        x = np.arange(w)[None, None, :]
        y = np.arange(h)[None, :, None]
        r = ((x + 3 * t) % 256).astype(np.uint8).repeat(h, 1)
        g = ((y + 2 * t + 40 * i) % 256).astype(np.uint8).repeat(w, 2)
        b = np.full_like(r, 60 * i % 256)
        frames = np.stack([r, g, b], -1)
        path = folder / f"v{i}.mp4"
        media.write_mp4(path, frames, fps=fps, keyframe_every=2 * fps)
        rows.append((path.name, f"synthetic clip {i}"))
    with (folder / "data.csv").open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["path", "caption"])
        wr.writerows(rows)
    return folder / "data.csv"


class WholeFile(torch.utils.data.Dataset):
    """The loader before issue #18: every frame of the file decoded, then the window taken."""

    def __init__(self, ds: VideoCSV):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        path, cap = self.ds.items[i]
        _, frames = media.read_frames(path)
        src = 25.0
        step = max(1, int(round(src / 6)))
        need = 23 * step + 1
        s = (len(frames) - need) // 2
        x = torch.from_numpy(np.stack(frames[s:s + need:step])).permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear", antialias=True)
        return x * 2 - 1, cap


def measure(ds, clips: int, workers: int) -> float:
    keys = [[(i % len(ds), i)] for i in range(clips)]
    loader = torch.utils.data.DataLoader(ds, batch_sampler=keys, num_workers=workers, collate_fn=collate)
    t0 = time.perf_counter()
    n = 0
    for frames, _ in loader:
        assert frames.shape[1:] == (24, 3, 256, 256)
        n += frames.shape[0]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--width", type=int, default=596)
    p.add_argument("--height", type=int, default=336)
    p.add_argument("--src-fps", type=int, default=25)
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--whole-file", action="store_true", help="also time the old whole-file decode")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        data = make_videos(Path(d), a.videos, a.seconds, a.width, a.height, a.src_fps)
        print(f"# wrote {a.videos} videos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        backends = ["pyav", "ffmpeg"] if video_backend() == "pyav" else ["ffmpeg"]
        for workers in [int(x) for x in a.workers.split(",")]:
            for backend in backends:
                ds = VideoCSV(data, num_frames=24, size=256, fps=6)
                ds.backend = backend
                rate = measure(ds, a.clips, workers)
                print(json.dumps({"loader": f"seek ({backend})", "workers": workers, "clips": a.clips,
                                  "clips_per_s": round(rate, 2), "cores": len(os.sched_getaffinity(0)),
                                  "video": f"{a.width}x{a.height} {a.src_fps} fps {a.seconds:g} s"}), flush=True)
            if a.whole_file:
                rate = measure(WholeFile(VideoCSV(data, num_frames=24, size=256, fps=6)), a.clips, workers)
                print(json.dumps({"loader": "whole file (before)", "workers": workers, "clips": a.clips,
                                  "clips_per_s": round(rate, 2), "cores": len(os.sched_getaffinity(0)),
                                  "video": f"{a.width}x{a.height} {a.src_fps} fps {a.seconds:g} s"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
