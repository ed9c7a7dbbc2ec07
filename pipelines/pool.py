"""Scaling out: one generation per GPU on a multi-GPU machine, and a device for each evaluation process.

- `available_devices()`: `cuda:0 … cuda:N−1` where CUDA is present, else `["cpu"]` (one slot on CPU).
- `DevicePool(devices)`: hands out distinct free devices; `with pool.slot() as device:` blocks until one is free
  and gives it back when the block exits — normally, on an error, and when a generator holding it is closed (a
  cancelled Gradio event closes its generator at the next yield).
- `PipelinePool(factory, devices)`: one object per device (e.g. `load_preset(name, device=d)`), built on first use
  (or all at once with `warm()`); `with pool.get() as (device, preset):` lends a free one.
- `device_for_rank(rank, devices)`: the device a worker process uses (`rank mod number of devices`), e.g. for an
  evaluation sharded over GPUs (`LOCAL_RANK` / `RANK` of `accelerate launch` or `torchrun`, see `current_rank`).
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Callable, Dict, Generic, Iterator, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


class PoolTimeout(TimeoutError):
    """No device became free within the timeout."""


def available_devices(kind: Optional[str] = None) -> list[str]:
    """Every CUDA device (`cuda:i`), or `["cpu"]` when there is none or `kind == "cpu"`."""
    import torch

    if kind not in (None, "cuda", "cpu"):
        raise ValueError(f"kind must be 'cuda', 'cpu' or None, got {kind!r}")
    if kind != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if kind == "cuda":
        raise ValueError("no CUDA device is available")
    return ["cpu"]


def current_rank() -> Tuple[int, int]:
    """(rank, world size) of this process from the launcher's environment (LOCAL_RANK/RANK, WORLD_SIZE), else (0, 1)."""
    rank = os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))
    world = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    try:
        rank_i, world_i = int(rank), int(world)
    except ValueError:
        raise ValueError(f"RANK/WORLD_SIZE must be whole numbers, got {rank!r}/{world!r}") from None
    if not 0 <= rank_i < max(1, world_i):
        raise ValueError(f"rank {rank_i} is outside a world of {world_i} processes")
    return rank_i, max(1, world_i)


def device_for_rank(rank: int, devices: Optional[Sequence[str]] = None) -> str:
    """The device process `rank` should use: devices[rank mod len(devices)] (all on "cpu" without GPUs)."""
    devices = list(devices) if devices is not None else available_devices()
    if not devices:
        raise ValueError("no devices to choose from")
    if rank < 0:
        raise ValueError(f"rank must be ≥ 0, got {rank}")
    return devices[rank % len(devices)]


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Every `world`-th item starting at `rank` (the cells a process takes in a sharded evaluation)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 ≤ rank < world, got rank {rank}, world {world}")
    return list(items[rank::world])


class DevicePool:
    """Distinct devices handed out one per holder; blocks while all are busy."""

    def __init__(self, devices: Optional[Sequence[str]] = None):
        devices = list(devices) if devices is not None else available_devices()
        if not devices:
            raise ValueError("a device pool needs at least one device")
        if len(set(devices)) != len(devices):
            raise ValueError(f"devices must be distinct, got {devices}")
        self.devices = devices
        self._free = list(devices)
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def free(self) -> list[str]:
        with self._cond:
            return list(self._free)

    def acquire(self, timeout: Optional[float] = None) -> str:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._free), timeout=timeout):
                raise PoolTimeout(f"all {len(self.devices)} device(s) busy for {timeout} s")
            return self._free.pop(0)

    def release(self, device: str) -> None:
        with self._cond:
            if device not in self.devices:
                raise ValueError(f"{device!r} is not in this pool ({self.devices})")
            if device in self._free:
                raise ValueError(f"{device!r} was released twice")
            self._free.append(device)
            self._free.sort(key=self.devices.index)
            self._cond.notify()

    @contextlib.contextmanager
    def slot(self, timeout: Optional[float] = None) -> Iterator[str]:
        device = self.acquire(timeout)
        try:
            yield device
        finally:
            self.release(device)


class PipelinePool(Generic[T]):
    """One object per device (built by `factory(device)` on first use), lent out one holder at a time."""

    def __init__(self, factory: Callable[[str], T], devices: Optional[Sequence[str]] = None):
        self.factory = factory
        self.devices = DevicePool(devices)
        self._objects: Dict[str, T] = {}
        self._build_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.devices)

    def object_for(self, device: str) -> T:
        with self._build_lock:
            if device not in self._objects:
                self._objects[device] = self.factory(device)
            return self._objects[device]

    def warm(self) -> list[T]:
        """Build every device's object now (e.g. at app start-up, so the first requests do not wait)."""
        return [self.object_for(d) for d in self.devices.devices]

    @contextlib.contextmanager
    def get(self, timeout: Optional[float] = None) -> Iterator[Tuple[str, T]]:
        with self.devices.slot(timeout) as device:
            yield device, self.object_for(device)
