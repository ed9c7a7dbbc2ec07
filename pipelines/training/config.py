"""`TrainConfig`: every setting of a HARIVO training run, loadable from JSON (`configs/*.json`) with overrides."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..keyvalue import read_value, split_pair
from .schedule import DECAYING as LR_DECAYING
from .schedule import NAMES as LR_SCHEDULES

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class TrainConfig:
    # base image model (frozen): "micro" (assets/micro), "tiny" (random, tests), or a diffusers SD-1.x folder / hub id
    base: str = "micro"
    base_folder: str | None = None  # micro: a folder in the micro layout instead of assets/micro
    motion_adapter: str | None = None  # start the temporal layers from this MotionAdapter (None: fresh, zero-init)
    keep_temporal: bool = False  # micro: start from the base's own motion modules instead of fresh ones
    motion_heads: int | None = None  # fresh adapter: temporal attention heads (default the base's, else 8)
    beta_schedule: str = "linear"  # HARIVO: linear betas 0.00085–0.012
    # trainable parts
    mapping: bool = True
    mapping_hidden: int = 64
    frame_tokens: str = "paper"  # paper | none
    num_frame_tokens: int = 3
    max_frames: int = 24
    train_temporal: bool = True
    # losses (weight 0 switches a term off)
    w_trs: float = 0.1
    w_reg: float = 0.1
    w_dc: float = 0.1
    tau: float = 0.1
    queue_size: int = 256
    trs_max_tokens: int | None = None
    # data
    data: str = "micro"  # micro | csv | shards
    data_path: str | None = None
    video_root: str | None = None
    micro_backgrounds: list[str] | None = None
    micro_world: int = 1  # data micro: 1 (what assets/micro ships), or 2 (looks, captions with attribute dropout)
    num_frames: int = 8
    resolution: int = 32
    frame_stride: int = 1  # real videos without fps: every stride-th source frame
    fps: float | None = None  # real videos: sample the window's frames 1/fps s apart (HARIVO: 24 frames at 6 fps)
    random_window: bool = True  # real videos: a random temporal window per sample (False: the centre window)
    p_uncond: float = 0.1
    # optimisation
    steps: int = 1000
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    lr_warmup: int = 50
    # diffusers.optimization.get_scheduler name: constant | constant_with_warmup | linear | cosine |
    # cosine_with_restarts | polynomial; decaying ones end at lr_end on the last step (HARIVO: 1e-4 -> 1e-5)
    lr_schedule: str = "constant_with_warmup"
    lr_end: float | None = None
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # no | fp16 | bf16
    fsdp: bool = False
    seed: int = 0
    num_workers: int = 0
    threads: int | None = None
    # outputs
    out: str = "runs/harivo"
    ckpt_every: int = 200
    log_every: int = 10
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        checks = [
            (self.frame_tokens in ("paper", "none"), f"frame_tokens must be 'paper' or 'none', got {self.frame_tokens!r}"),
            (self.data in ("micro", "csv", "shards"), f"data must be micro, csv or shards, got {self.data!r}"),
            (self.mixed_precision in ("no", "fp16", "bf16"), f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.lr_end is None or 0 <= self.lr_end <= self.lr, f"lr_end must be in [0, lr={self.lr}], got {self.lr_end}"),
            (self.lr_end is None or self.lr_schedule in LR_DECAYING,
             f"lr_end needs a decaying lr_schedule ({', '.join(LR_DECAYING)}), got {self.lr_schedule!r}"),
            (self.steps >= 1, f"steps must be ≥ 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be ≥ 1, got {self.grad_accum}"),
            (self.num_frames >= 2, f"num_frames must be ≥ 2 (L_TRS and L_DC compare frames), got {self.num_frames}"),
            (self.num_frames <= self.max_frames, f"num_frames {self.num_frames} > max_frames {self.max_frames}"),
            (min(self.w_trs, self.w_reg, self.w_dc) >= 0, "loss weights must be ≥ 0"),
            (0 <= self.p_uncond < 1, f"p_uncond must be in [0, 1), got {self.p_uncond}"),
            (self.fps is None or self.fps > 0, f"fps must be > 0 (or null: every frame_stride-th frame), got {self.fps}"),
            (self.tau > 0, f"tau must be > 0, got {self.tau}"),
            (self.micro_world in (1, 2), f"micro_world must be 1 or 2, got {self.micro_world!r}"),
            (self.data != "micro" or self.resolution == 32, f"micro clips are 32×32: resolution must be 32, got {self.resolution}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def load_config(name_or_path: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """A named config (`micro`, `tiny`, `sd15`: `configs/<name>.json`) or a JSON file, then `overrides`."""
    data: dict = {}
    if name_or_path:
        p = Path(name_or_path)
        if not p.is_file():
            p = CONFIG_DIR / f"{name_or_path}.json"
        if not p.is_file():
            names = sorted(q.stem for q in CONFIG_DIR.glob("*.json"))
            raise FileNotFoundError(f"training config {name_or_path!r} not found (a JSON file, or one of {names})")
        data = json.loads(p.read_text())
        data.pop("_comment", None)
    data.update(overrides or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(data) - known)
    if bad:
        raise ValueError(f"unknown training config key(s) {bad}")
    return TrainConfig(**data).validate()


def parse_override(text: str) -> tuple[str, object]:
    """`--set key=value`: the value read by `keyvalue.read_value` (bools, numbers, JSON lists and null, else a
    string)."""
    try:
        k, v = split_pair(text)
    except ValueError as e:
        raise ValueError(f"--set: {e}") from None
    return k, read_value(v)
