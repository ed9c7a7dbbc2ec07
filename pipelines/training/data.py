"""Video + caption data for HARIVO training: map-style datasets returning `(frames (f, 3, S, S) in [-1, 1], caption)`.

- `MicroClips`: clips of the micro world rendered on the fly; item `i` is always the same clip (seeded by
  `(seed, i)`), held-out combinations never appear.
- `VideoCSV`: a WebVid-style CSV. Either a `path` column (relative to `video_root`, default the CSV's folder) or
  WebVid's own `videoid` + `page_dir` columns (`{video_root}/{page_dir}/{videoid}.mp4`); the caption is the
  `caption` column, or WebVid's `name`.
- `VideoShards`: WebDataset-style `.tar` shards where a sample is files sharing a key: one video
  (`.mp4`/`.webm`/`.avi`/`.mov`/`.mkv`/`.gif`) and a caption (`.txt`/`.caption`, or `.json` with a `caption`).
  Read with the standard library's `tarfile` (an index of member offsets), no extra package.

`StepBatches` yields the indices of each process's share of every optimisation step from `(seed, step)` alone, so
resuming at step `k` sees exactly the batches an uninterrupted run would, for any number of processes.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VIDEO_EXTS = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif")


class MicroClips(torch.utils.data.Dataset):
    def __init__(self, num_frames: int = 8, seed: int = 0, length: int = 1_000_000, backgrounds=None):
        from ..micro import world

        self.world, self.num_frames, self.seed, self.length = world, num_frames, seed, length
        self.backgrounds = list(backgrounds) if backgrounds else None
        bad = [b for b in self.backgrounds or [] if b not in world.BACKGROUNDS]
        if bad:
            raise ValueError(f"unknown micro background(s) {bad}; choose from {world.BACKGROUNDS}")

    def __len__(self):
        return self.length

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, int(i)])
        a = self.world.sample_attributes(rng, "train")
        if self.backgrounds:
            a["background"] = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        v, meta = self.world.render_clip(a["colour"], a["shape"], a["motion"], a["background"],
                                         num_frames=self.num_frames, rng=rng)
        return torch.as_tensor(v).float() * 2 - 1, meta["caption"]


def read_video(src, num_frames: int, size: int, stride: int = 1, start: float | None = 0.5) -> torch.Tensor:
    """`num_frames` frames, every `stride`-th, from a video file path or bytes; short side resized to `size`, centre
    crop; `(f, 3, size, size)` in [-1, 1]. `start` in [0, 1]: where the window starts within the slack."""
    import imageio.v2 as imageio

    tmp = None
    if isinstance(src, (bytes, bytearray)):
        tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)
        tmp.write(src)
        tmp.close()
        path = tmp.name
    else:
        path = str(src)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video file {path} does not exist")
    try:
        reader = imageio.get_reader(path, format="ffmpeg")
        frames = [np.asarray(fr) for fr in reader]
        reader.close()
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"could not decode video {src if tmp is None else '(shard member)'}: {e}") from e
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    need = (num_frames - 1) * stride + 1
    if len(frames) < need:
        raise ValueError(f"video has {len(frames)} frames, {need} needed ({num_frames} at stride {stride})")
    s = int(round((len(frames) - need) * (start if start is not None else 0.5)))
    x = torch.from_numpy(np.stack(frames[s:s + need:stride])[..., :3]).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, :, top:top + size, left:left + size].clamp(0, 1) * 2 - 1


class VideoCSV(torch.utils.data.Dataset):
    def __init__(self, csv_path: str | Path, num_frames: int, size: int, stride: int = 1,
                 video_root: str | Path | None = None):
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise FileNotFoundError(f"data CSV {csv_path} does not exist")
        self.root = Path(video_root) if video_root else csv_path.parent
        with csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"data CSV {csv_path} has no rows")
        cols = set(rows[0])
        cap = "caption" if "caption" in cols else "name" if "name" in cols else None
        if cap is None or not ("path" in cols or {"videoid", "page_dir"} <= cols):
            raise ValueError(f"data CSV {csv_path}: needs a 'caption' (or WebVid 'name') column and a 'path' "
                             f"(or WebVid 'videoid' + 'page_dir') column; has {sorted(cols)}")
        self.items = []
        for r in rows:
            p = r["path"] if "path" in cols else f"{r['page_dir']}/{r['videoid']}.mp4"
            self.items.append((self.root / p, r[cap]))
        self.num_frames, self.size, self.stride = num_frames, size, stride

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i: int):
        path, caption = self.items[i]
        return read_video(path, self.num_frames, self.size, self.stride), caption


class VideoShards(torch.utils.data.Dataset):
    def __init__(self, pattern: str | list[str], num_frames: int, size: int, stride: int = 1):
        files = sorted(glob.glob(pattern)) if isinstance(pattern, str) else list(pattern)
        if not files:
            raise FileNotFoundError(f"no .tar shards match {pattern!r}")
        self.samples = []  # (shard, video (offset, size, ext), caption str)
        for shard in files:
            groups: dict[str, dict] = {}
            with tarfile.open(shard) as tf:
                for m in tf.getmembers():
                    if not m.isfile():
                        continue
                    key, ext = os.path.splitext(m.name)
                    groups.setdefault(key, {})[ext.lower()] = m
                for key, g in groups.items():
                    vid = next((g[e] for e in VIDEO_EXTS if e in g), None)
                    if vid is None:
                        continue
                    caption = None
                    for e in (".txt", ".caption"):
                        if e in g:
                            caption = tf.extractfile(g[e]).read().decode("utf-8").strip()
                    if caption is None and ".json" in g:
                        caption = json.loads(tf.extractfile(g[".json"]).read()).get("caption")
                    if caption is None:
                        raise ValueError(f"shard {shard}: sample {key!r} has a video but no caption (.txt/.json)")
                    self.samples.append((shard, vid.offset_data, vid.size, caption))
        if not self.samples:
            raise ValueError(f"shards {files[:3]}…: no (video, caption) samples found")
        self.num_frames, self.size, self.stride = num_frames, size, stride

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i: int):
        shard, off, n, caption = self.samples[i]
        with open(shard, "rb") as f:
            f.seek(off)
            data = f.read(n)
        return read_video(data, self.num_frames, self.size, self.stride), caption


class StepBatches:
    """Indices for (step, micro-step, process): the global batch of a step is `world · accum · batch` consecutive
    entries of a permutation of the dataset drawn from `(seed, epoch)`."""

    def __init__(self, n: int, batch: int, accum: int, rank: int, world: int, seed: int = 0):
        if n < 1:
            raise ValueError("the dataset is empty")
        self.n, self.batch, self.accum, self.rank, self.world, self.seed = n, batch, accum, rank, world, seed
        self._perm: dict[int, np.ndarray] = {}

    def global_index(self, step: int, micro: int, j: int) -> int:
        """Position of sample j of (step, micro-step, this process) in the run's sample stream."""
        return ((step * self.accum + micro) * self.world + self.rank) * self.batch + j

    def indices(self, step: int, micro: int) -> list[tuple[int, int]]:
        """[(stream position, dataset index)] of this process's micro-batch."""
        out = []
        for j in range(self.batch):
            g = self.global_index(step, micro, j)
            epoch, k = divmod(g, self.n)
            if epoch not in self._perm:
                self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
            out.append((g, int(self._perm[epoch][k])))
        return out


def collate(items):
    frames = torch.stack([x for x, _ in items])
    return frames, [c for _, c in items]


def open_dataset(kind: str, path: str | None, num_frames: int, size: int, stride: int = 1, seed: int = 0,
                 video_root: str | None = None, backgrounds=None):
    if kind == "micro":
        return MicroClips(num_frames=num_frames, seed=seed, backgrounds=backgrounds)
    if kind == "csv":
        if not path:
            raise ValueError("data kind 'csv' needs data.path (the CSV file)")
        return VideoCSV(path, num_frames, size, stride, video_root)
    if kind == "shards":
        if not path:
            raise ValueError("data kind 'shards' needs data.path (a glob of .tar shards)")
        return VideoShards(path, num_frames, size, stride)
    raise ValueError(f"unknown data kind {kind!r}; choose micro, csv or shards")


__all__ = ["MicroClips", "VideoCSV", "VideoShards", "StepBatches", "collate", "open_dataset", "read_video"]
