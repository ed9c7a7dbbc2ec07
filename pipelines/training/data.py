"""Video + caption data for HARIVO training: map-style datasets returning `(frames (f, 3, S, S) in [-1, 1], caption)`.

- `MicroClips`: clips of the micro world rendered on the fly; item `i` is always the same clip (seeded by
  `(seed, i)`), held-out combinations never appear; `world_version=2`: world 2 with attribute-dropout captions.
- Real videos are read as a random temporal window (`read_video`): `num_frames` frames `1/fps` s apart (config `fps`;
  `None`: every `frame_stride`-th source frame), starting at a time drawn from `(seed, index, stream position)`,
  decoded by seeking (PyAV when installed, else ffmpeg's `-ss`), never the whole file.
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
    """`world_version=2`: clips of micro world 2 (backgrounds are looks) with captions that leave each attribute out
    with probability `dropout` (default `world.DROPOUT`); `backgrounds` (world 1 names) is world 1 only."""

    def __init__(self, num_frames: int = 8, seed: int = 0, length: int = 1_000_000, backgrounds=None,
                 world_version: int = 1, dropout: float | None = None):
        from ..micro import world

        self.world, self.num_frames, self.seed, self.length = world, num_frames, seed, length
        self.version = world.get_world(world_version).version
        self.dropout = (world.DROPOUT if dropout is None else float(dropout)) if self.version == 2 else 0.0
        if self.version == 1 and dropout:
            raise ValueError("micro caption dropout needs world 2: world 1's captions name every attribute")
        self.backgrounds = list(backgrounds) if backgrounds else None
        if self.backgrounds and self.version == 2:
            raise ValueError("micro backgrounds name world 1's backgrounds; world 2 draws its looks itself")
        bad = [b for b in self.backgrounds or [] if b not in world.BACKGROUNDS]
        if bad:
            raise ValueError(f"unknown micro background(s) {bad}; choose from {world.BACKGROUNDS}")

    def __len__(self):
        return self.length

    def __getitem__(self, key):
        i, _ = _key(key)
        rng = np.random.default_rng([self.seed, int(i)])
        if self.version == 2:
            w = self.world.WORLD2
            a = w.sample(rng, "train", self.dropout)
            v, _ = self.world.render_clip(a["colour"], a["shape"], a["motion"], a["background"],
                                          num_frames=self.num_frames, rng=rng)
            return torch.as_tensor(v).float() * 2 - 1, w.caption_of(a)
        a = self.world.sample_attributes(rng, "train")
        if self.backgrounds:
            a["background"] = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        v, meta = self.world.render_clip(a["colour"], a["shape"], a["motion"], a["background"],
                                         num_frames=self.num_frames, rng=rng)
        return torch.as_tensor(v).float() * 2 - 1, meta["caption"]


def video_backend() -> str:
    """`pyav` when PyAV (`av`) is importable, else `ffmpeg` (the binary shipped with imageio-ffmpeg)."""
    try:
        import av  # noqa: F401

        return "pyav"
    except ImportError:
        return "ffmpeg"


class WindowStats:
    """What one read decoded: `decoded` frames (PyAV; None for ffmpeg), the video's `total` frames (estimated from
    duration × fps), the window start `t0` and the sampling `fps`."""

    def __init__(self, backend: str):
        self.backend, self.decoded, self.total, self.t0, self.fps = backend, None, None, 0.0, None


def _window_times(duration: float, src_fps: float, num_frames: int, fps: float | None, stride: int,
                  start: float | None, rng) -> tuple[float, float]:
    """(t0, step): the window's first frame time and the seconds between sampled frames."""
    step = 1.0 / fps if fps else stride / src_fps
    span = (num_frames - 1) * step
    slack = duration - 1.0 / src_fps - span  # the last target at the latest on the last frame's time
    if slack < -1e-6:
        need = f"{num_frames} frames at {1 / step:g} fps ({span + 1 / src_fps:.2f} s)"
        raise ValueError(f"video is {duration:.2f} s long, {need} needed")
    slack = max(slack, 0.0)
    if rng is not None:
        frac = float(rng.random())
    else:
        frac = 0.5 if start is None else float(start)
    return frac * slack, step


def _pick(frames: list[tuple[float, object]], targets: list[float]) -> list:
    times = np.array([t for t, _ in frames])
    return [frames[int(np.abs(times - t).argmin())][1] for t in targets]


def _read_pyav(src, num_frames, fps, stride, start, rng, stats):
    import io

    import av

    container = av.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else str(src))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        src_fps = float(stream.average_rate or stream.guessed_rate or 25)
        first = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / 1e6
        else:
            duration = (stream.frames or 0) / src_fps
        t0, step = _window_times(duration, src_fps, num_frames, fps, stride, start, rng)
        targets = [first + t0 + k * step for k in range(num_frames)]
        # seek to the key frame at or before the window, then decode forward through the window only
        container.seek(int(targets[0] / tb), stream=stream, backward=True, any_frame=False)
        half = 0.5 / src_fps
        got, decoded = [], 0
        for frame in container.decode(stream):
            decoded += 1
            t = frame.time if frame.time is not None else float(frame.pts * tb)
            if t < targets[0] - half:
                continue
            got.append((t, frame))  # converted to RGB only if picked
            if t >= targets[-1] - half:
                break
        stats.decoded, stats.total, stats.t0, stats.fps = decoded, int(round(duration * src_fps)), t0, 1 / step
        if not got:
            raise ValueError("no frames decoded in the window")
        return [f.to_ndarray(format="rgb24") for f in _pick(got, targets)]
    finally:
        container.close()


_FFMPEG_META: dict = {}


def _read_ffmpeg(src, num_frames, fps, stride, start, rng, stats):
    from ..media import read_frames

    tmp = None
    if isinstance(src, (bytes, bytearray)):
        tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)
        tmp.write(src)
        tmp.close()
        path = tmp.name
    else:
        path = str(src)
    try:
        meta = _FFMPEG_META.get(path) if tmp is None else None
        if meta is None:
            meta, _ = read_frames(path, max_frames=0)
            if tmp is None:
                _FFMPEG_META[path] = meta
        src_fps = float(meta.get("fps") or 25)
        duration = float(meta.get("duration") or 0)
        t0, step = _window_times(duration, src_fps, num_frames, fps, stride, start, rng)
        # -ss before -i: ffmpeg seeks to the key frame before the window and decodes from there, dropping frames
        # before the given time; starting half a frame early, its first frame is the source frame nearest to t0.
        # Frame j of the output is source frame j0 + j (a constant frame rate assumed, as the fps in the metadata).
        begin = max(0.0, t0 - 0.5 / src_fps)
        j0 = int(np.ceil(begin * src_fps - 1e-6))
        # the nearest source frame, the earlier one on a tie (as `_pick`)
        want = [int(np.ceil((t0 + k * step) * src_fps - 0.5 - 1e-9)) - j0 for k in range(num_frames)]
        # only the wanted frames leave ffmpeg (the select filter, frame numbers counted from the seek point)
        keep = sorted(set(want))
        select = "+".join(f"eq(n\\,{j})" for j in keep)
        _, got = read_frames(path, input_params=["-ss", f"{begin:.6f}"],
                             output_params=["-vf", f"select={select}", "-fps_mode", "passthrough",
                                            "-frames:v", str(len(keep))])
        stats.total, stats.t0, stats.fps = int(round(duration * src_fps)), t0, 1 / step
        if not got:
            raise ValueError("no frames decoded in the window")
        at = {j: got[min(i, len(got) - 1)] for i, j in enumerate(keep)}  # a window ending on the last frame
        frames = [at[j] for j in want]
        return frames
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def read_video(src, num_frames: int, size: int, stride: int = 1, start: float | None = 0.5, fps: float | None = None,
               rng=None, backend: str | None = None, stats: WindowStats | None = None) -> torch.Tensor:
    """`num_frames` frames of a temporal window from a video file path or bytes; short side resized to `size`,
    centre crop; `(f, 3, size, size)` in [-1, 1].

    Frames are `1/fps` seconds apart (`fps` None: every `stride`-th frame of the source). The window starts at a
    random time when `rng` (a numpy Generator) is given, else at `start` ∈ [0, 1] of the slack (0.5: the centre).
    Decoding seeks: PyAV (`backend="pyav"`, the default when installed) seeks to the key frame before the window and
    decodes through the window only; without PyAV the ffmpeg binary of imageio-ffmpeg does the same (`-ss` before
    the input). `stats`: a `WindowStats` filled with what was decoded."""
    backend = backend or video_backend()
    if backend not in ("pyav", "ffmpeg"):
        raise ValueError(f"video backend must be pyav or ffmpeg, got {backend!r}")
    if not isinstance(src, (bytes, bytearray)) and not os.path.isfile(str(src)):
        raise FileNotFoundError(f"video file {src} does not exist")
    stats = stats if stats is not None else WindowStats(backend)
    stats.backend = backend
    reader = _read_pyav if backend == "pyav" else _read_ffmpeg
    try:
        frames = reader(src, num_frames, fps, stride, start, rng, stats)
    except ValueError as e:
        where = "(shard member)" if isinstance(src, (bytes, bytearray)) else src
        raise ValueError(f"video {where}: {e}") from e
    except Exception as e:  # noqa: BLE001 - decoder errors of either backend
        where = "(shard member)" if isinstance(src, (bytes, bytearray)) else src
        raise ValueError(f"could not decode video {where}: {e}") from e
    x = torch.from_numpy(np.stack(frames)[..., :3]).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, :, top:top + size, left:left + size].clamp(0, 1) * 2 - 1


def _key(i) -> tuple[int, int | None]:
    """A dataset key: an index, or (index, stream position) from the training loop (the position seeds the
    random temporal window, so a resumed or multi-process run reads the same windows)."""
    if isinstance(i, (tuple, list)):
        return int(i[0]), int(i[1])
    return int(i), None


class VideoCSV(torch.utils.data.Dataset):
    def __init__(self, csv_path: str | Path, num_frames: int, size: int, stride: int = 1,
                 video_root: str | Path | None = None, fps: float | None = None, seed: int = 0,
                 random_window: bool = True):
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
        self.fps, self.seed, self.random_window = fps, seed, random_window
        self.backend = None  # pyav | ffmpeg (None: PyAV when installed)

    def __len__(self):
        return len(self.items)

    def _rng(self, i: int, pos: int | None):
        if not self.random_window:
            return None
        return np.random.default_rng([self.seed, 11, i] + ([] if pos is None else [pos]))

    def __getitem__(self, key):
        i, pos = _key(key)
        path, caption = self.items[i]
        return read_video(path, self.num_frames, self.size, self.stride, fps=self.fps, rng=self._rng(i, pos),
                           backend=self.backend), caption


class VideoShards(torch.utils.data.Dataset):
    def __init__(self, pattern: str | list[str], num_frames: int, size: int, stride: int = 1,
                 fps: float | None = None, seed: int = 0, random_window: bool = True):
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
        self.fps, self.seed, self.random_window = fps, seed, random_window
        self.backend = None  # pyav | ffmpeg (None: PyAV when installed)

    def __len__(self):
        return len(self.samples)

    _rng = VideoCSV._rng

    def __getitem__(self, key):
        i, pos = _key(key)
        shard, off, n, caption = self.samples[i]
        with open(shard, "rb") as f:  # only this member's bytes; PyAV then decodes from memory
            f.seek(off)
            data = f.read(n)
        return read_video(data, self.num_frames, self.size, self.stride, fps=self.fps, rng=self._rng(i, pos),
                           backend=self.backend), caption


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
                 video_root: str | None = None, backgrounds=None, fps: float | None = None,
                 random_window: bool = True, micro_world: int = 1):
    if kind == "micro":
        return MicroClips(num_frames=num_frames, seed=seed, backgrounds=backgrounds, world_version=micro_world)
    if kind == "csv":
        if not path:
            raise ValueError("data kind 'csv' needs data.path (the CSV file)")
        return VideoCSV(path, num_frames, size, stride, video_root, fps=fps, seed=seed, random_window=random_window)
    if kind == "shards":
        if not path:
            raise ValueError("data kind 'shards' needs data.path (a glob of .tar shards)")
        return VideoShards(path, num_frames, size, stride, fps=fps, seed=seed, random_window=random_window)
    raise ValueError(f"unknown data kind {kind!r}; choose micro, csv or shards")


__all__ = ["MicroClips", "VideoCSV", "VideoShards", "StepBatches", "collate", "open_dataset", "read_video",
           "video_backend", "WindowStats"]
