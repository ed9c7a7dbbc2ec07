"""Peak-memory measurement for one generation, on CUDA or CPU.

CUDA: the caching allocator's peak (`torch.cuda.max_memory_allocated`), reset at the start of a run.
CPU: the process's peak resident set size (Linux `VmHWM`), reset through `/proc/self/clear_refs` where the
kernel allows it; otherwise the peak since process start (documented as an upper bound in the report).
"""
from __future__ import annotations

import resource
import sys

import torch


def _read_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """`with PeakMemory(device) as pm: ...; pm.peak()` -> bytes."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.resettable = False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False

    def current(self) -> int:
        """Memory in use now (CUDA: allocated bytes; CPU: resident set size)."""
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        rss = _read_status("VmRSS")
        return int(rss) if rss is not None else self.peak()

    def peak(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _read_status("VmHWM")
        if hwm is not None:
            return hwm
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)

    def __enter__(self) -> "PeakMemory":
        self.reset()
        return self

    def __exit__(self, *exc) -> None:
        return None


# ----------------------------------------------------------------------------------------- UNet checkpointing
#: Reverse-mode methods (FreeDoM, MPGD through the UNet, TFG, DOODL) checkpoint the UNet from this latent area up
#: (32² latents = 256² frames, where the lean decode starts too). Below it the activations are small and the
#: recomputation is pure cost. GVS_UNET_CHECKPOINT=0|1|auto forces it.
UNET_CHECKPOINT_MIN_LATENT_AREA = 32 * 32
#: The methods that backpropagate through the UNet (MPGD differentiates the decoder only; TITAN's UNet derivative is
#: forward mode, which stores no activations to recompute).
UNET_BACKPROP_METHODS = ("freedom", "tfg", "doodl")


def want_unet_checkpointing(latents_or_shape, option="auto") -> bool:
    """Whether a backprop-through-the-UNet step should checkpoint the UNet: `option` True/False, or "auto" (the
    default; env GVS_UNET_CHECKPOINT overrides it): on when the latents are at least 32×32 (frames ≥ 256²)."""
    import os

    env = os.environ.get("GVS_UNET_CHECKPOINT", "").strip().lower()
    if option == "auto" and env in ("0", "1", "true", "false", "on", "off", "yes", "no"):
        option = env in ("1", "true", "on", "yes")
    if option != "auto":
        return bool(option)
    shape = tuple(latents_or_shape.shape) if isinstance(latents_or_shape, torch.Tensor) else tuple(latents_or_shape)
    return shape[-1] * shape[-2] >= UNET_CHECKPOINT_MIN_LATENT_AREA


class unet_checkpointing:  # noqa: N801 - used as a context manager, like torch.no_grad
    """`with unet_checkpointing(pipe.unet, on): ...` turns diffusers' gradient checkpointing of the UNet on for the
    block and restores the switch afterwards (a UNet that already checkpoints is left as it is).

    Checkpointing only acts where the UNet runs with gradients enabled (diffusers checks `torch.is_grad_enabled()`),
    so wrapping a whole guided step is safe: its no-grad passes are unchanged, and its backward recomputes each
    checkpointed block instead of keeping its activations. Values and gradients are those without checkpointing."""

    def __init__(self, unet, on: bool = True):
        self.unet, self.on, self._enabled = unet, bool(on), False

    def __enter__(self):
        if self.on and getattr(self.unet, "_supports_gradient_checkpointing", False) \
                and not self.unet.is_gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            self._enabled = True
        return self

    def __exit__(self, *exc):
        if self._enabled:
            self.unet.disable_gradient_checkpointing()
            self._enabled = False
        return False
