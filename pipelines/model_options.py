"""What a user may put under a preset's image model: trained HARIVO video parts and LoRAs (issue #18).

- `video_parts`: a `final/` folder written by `pipelines/training/` (`motion_adapter/`, optional `mapping/` and
  `frame_tokens/`, `harivo.json`), loaded by `pipelines.training.loop.load_video_parts` under the preset's image
  UNet (its own motion modules and frame tokens are replaced).
- `loras`: `PATH[:scale]` each, diffusers-format LoRA weights (a `.safetensors` file or a folder holding
  `pytorch_lora_weights.safetensors`) on the image part, through `pipe.load_lora_weights` (needs `peft`).

Two callers, two rules. The CLI and the Python API (an operator on their own machine) take any path. A web client
of the app names models only inside the folder the server was started with (`python app.py --model-dir DIR`;
without it the fields are off): `parse_options(..., root=DIR)` takes names relative to DIR (no `..`, no absolute
path, symlinks resolved and kept inside DIR), answers every refused name with the one `REFUSED` message whether or
not the path exists, loads safetensors only, and reports and describes models by their names in DIR, never by a
server path.

`with_model(preset, options)` returns a new `Preset` (its own pipeline, sharing the preset's untouched modules), so
the live preset stays as it was; the result is cached per (preset, options, files' modification times), the cache
bounded in bytes (`GVS_MODEL_CACHE_MB`, default 2 GiB of tensors not shared with the preset). A folder or
file of another model family is refused with a `ModelOptionError` naming the field and the mismatch.

    python -m pipelines generate --preset micro --video-parts runs/harivo-micro/final --lora style.safetensors:0.8 ...
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

LORA_FILE = "pytorch_lora_weights.safetensors"
#: The one answer to a model name a web client may not use: outside the model folder, absolute, `..`, missing, a
#: symlink leading out, or the fields off (no `--model-dir`) — the same words whether or not the path exists.
REFUSED = ("not an available model name: give a folder or file name inside the server's model folder "
           "(relative to it, e.g. harivo-micro/final)")
#: Entries walked under one named model at most (a name must not make the server walk a huge tree).
MAX_ENTRIES = 10_000


class ModelOptionError(ValueError):
    """A video-parts folder or LoRA that cannot be used with this preset; `field` is `video_parts` or `lora`."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class ModelOptions:
    video_parts: str | None = None
    loras: tuple = ()  # ((path, scale), ...)
    #: the model folder the paths were resolved in (app with `--model-dir`): names are shown relative to it
    root: str | None = None

    @property
    def is_default(self) -> bool:
        return not self.video_parts and not self.loras

    def name(self, path) -> str:
        """How a path is shown (reports, messages, descriptions): relative to `root` when there is one."""
        if self.root:
            try:
                return Path(path).relative_to(self.root).as_posix() or "."
            except ValueError:
                return Path(path).name
        return str(path)

    def describe(self) -> str:
        parts = []
        if self.video_parts:
            parts.append(f"video parts {self.name(self.video_parts)}")
        parts += [f"LoRA {self.name(p)} ×{s:g}" for p, s in self.loras]
        return ", ".join(parts) or "the preset's own model"

    def report(self) -> dict:
        """The report's `model` entry (names relative to the model folder for a web client)."""
        return {"video_parts": self.name(self.video_parts) if self.video_parts else None,
                "loras": [{"path": self.name(p), "scale": s} for p, s in self.loras]}


def parse_lora(text: str) -> tuple[str, float]:
    """`PATH[:scale]` → (path, scale); scale defaults to 1.0. A `:` followed by a non-number is part of the path."""
    text = str(text).strip()
    if not text:
        raise ModelOptionError("lora", "empty; expected PATH[:scale]")
    path, scale = text, 1.0
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        try:
            scale = float(tail)
            path = head
        except ValueError:
            pass
    if not scale == scale or abs(scale) > 10:  # NaN or absurd
        raise ModelOptionError("lora", f"scale must be a number in [-10, 10], got {scale}")
    return path, scale


def parse_options(video_parts=None, loras=(), root=None) -> ModelOptions:
    """Validate what a user typed (CLI flags, API arguments, app fields): paths exist, scales are numbers.
    `loras`: a list of `PATH[:scale]` strings, or one string with several separated by commas or new lines.
    `root`: the app's model folder: names are taken inside it only (`resolve_name`); None: any path (CLI)."""
    if isinstance(loras, str):
        loras = [x for x in loras.replace("\n", ",").split(",")]
    items = tuple(parse_lora(x) for x in (loras or ()) if str(x).strip())
    vp = str(video_parts).strip() if video_parts else None
    base = Path(root).resolve() if root is not None else None
    if vp:
        folder = resolve_name(vp, base, "video_parts") if base is not None else Path(vp).expanduser()
        if not folder.is_dir():
            raise ModelOptionError("video_parts", f"folder not found: {vp}")
        if not (folder / "motion_adapter" / "config.json").is_file():
            hint = " (it looks like a training run: use its final/ folder)" if (folder / "final").is_dir() else ""
            raise ModelOptionError("video_parts", f"{vp} is not a trained video-parts folder: no "
                                                  f"motion_adapter/config.json{hint}")
        if base is not None and not any((folder / "motion_adapter").glob("*.safetensors")):
            raise ModelOptionError("video_parts", f"{vp}: its motion_adapter/ holds no .safetensors weights (the "
                                                  "app loads safetensors only)")
        vp = str(folder.resolve())
    checked = []
    for path, scale in items:
        p = resolve_name(path, base, "lora") if base is not None else Path(path).expanduser()
        if p.is_dir():
            if not (p / LORA_FILE).is_file():
                raise ModelOptionError("lora", f"folder {path} has no {LORA_FILE}")
        elif not p.is_file():
            raise ModelOptionError("lora", f"file not found: {path}")
        elif base is not None and p.suffix != ".safetensors":
            raise ModelOptionError("lora", f"{path} is not a .safetensors file (the app loads safetensors only)")
        checked.append((str(p.resolve()), float(scale)))
    return ModelOptions(vp, tuple(checked), str(base) if base is not None else None)


def resolve_name(name: str, root: Path, field: str) -> Path:
    """A web client's model name -> its real path inside `root` (a resolved folder), or `ModelOptionError(field,
    REFUSED)`: the same answer for a name that is absolute, has `..`, `~` or a backslash, does not exist, or leads
    out of `root` through a symlink (the name itself or anything under it)."""
    text = str(name).strip()
    pure = PurePosixPath(text)
    win = PureWindowsPath(text)
    if (not text or "\\" in text or "\x00" in text or text.startswith("~") or pure.is_absolute() or win.drive
            or win.is_absolute() or any(part == ".." for part in pure.parts)):
        raise ModelOptionError(field, REFUSED)
    try:
        target = (root / text).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise ModelOptionError(field, REFUSED) from None
    if not _inside(target, root):
        raise ModelOptionError(field, REFUSED)
    if target.is_dir():  # nothing under it may lead out either
        seen = 0
        for dirpath, dirnames, filenames in os.walk(target, followlinks=False):
            for entry in dirnames + filenames:
                seen += 1
                path = Path(dirpath) / entry
                if seen > MAX_ENTRIES or (path.is_symlink() and not _inside(path.resolve(), root)):
                    raise ModelOptionError(field, REFUSED)
    return target


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# ------------------------------------------------------------------------------------------ command lines
def add_model_arguments(p) -> None:
    """`--video-parts DIR` and `--lora PATH[:scale]` (repeatable): what `pipelines.model_options` puts under the
    preset's image model. Shared by `generate` and `evaluate`."""
    p.add_argument("--video-parts", default=None, metavar="DIR",
                   help="trained HARIVO video parts: the final/ folder of a `python -m pipelines.training` run, loaded "
                        "under the preset's image UNet (must be trained for the same model family)")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[:scale]",
                   help="a diffusers-format LoRA on the image part (.safetensors file or folder), scale default 1.0; "
                        "repeatable")


def model_options_of(a):
    """The parsed `--video-parts` / `--lora` flags (raises `ModelOptionError` naming the field)."""
    return parse_options(getattr(a, "video_parts", None), getattr(a, "lora", None) or ())


# ------------------------------------------------------------------------------------------------ applying
def _family_of_parts(folder: Path, pipe, shown: str | None = None) -> None:
    """ModelOptionError unless the trained parts in `folder` fit `pipe`'s image UNet and text encoder; messages name
    the folder as `shown` (the user's name for it)."""
    shown = str(folder) if shown is None else shown
    unet = pipe.unet
    c = unet.config
    try:
        adapter = json.loads((folder / "motion_adapter" / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        why = getattr(e, "msg", None) or getattr(e, "strerror", None) or type(e).__name__
        raise ModelOptionError("video_parts", f"{shown}/motion_adapter/config.json is unreadable: {why}") from None
    trained_for = ""
    try:
        trained_for = json.loads((folder / "harivo.json").read_text()).get("base", "")
    except (OSError, json.JSONDecodeError):
        pass
    where = f" (trained on base {trained_for!r})" if trained_for else ""
    want = tuple(c.block_out_channels)
    got = tuple(adapter.get("block_out_channels") or ())
    if got != want:
        raise ModelOptionError(
            "video_parts", f"{shown} was trained for another model family{where}: its temporal layers have "
                           f"block_out_channels {got}, this preset's UNet has {want}")
    layers = adapter.get("motion_layers_per_block")
    if layers is not None and layers != c.layers_per_block:
        raise ModelOptionError(
            "video_parts", f"{shown} was trained for another model family{where}: {layers} motion layers per "
                           f"block, this preset's UNet has {c.layers_per_block} layers per block")
    mp = folder / "mapping" / "config.json"
    if mp.is_file():
        ch = json.loads(mp.read_text()).get("channels")
        if ch != c.in_channels:
            raise ModelOptionError("video_parts", f"{shown}: its mapping network takes {ch} latent channels, this "
                                                  f"preset's UNet takes {c.in_channels}")
    ft = folder / "frame_tokens" / "config.json"
    if ft.is_file():
        cfg = json.loads(ft.read_text())
        hidden = pipe.text_encoder.config.hidden_size
        length = getattr(pipe.tokenizer, "model_max_length", None)
        if cfg.get("dim") != hidden or cfg.get("text_length") != length:
            raise ModelOptionError(
                "video_parts", f"{shown}: its frame tokens were trained for a text encoder of width {cfg.get('dim')} "
                               f"and prompts of {cfg.get('text_length')} tokens; this preset's has width {hidden} and "
                               f"{length} tokens{where}")


def apply_to_pipe(pipe, options: ModelOptions):
    """A new pipeline of `pipe`'s class with the options applied; `pipe` itself is not changed."""
    from .training.loop import load_video_parts

    comps = dict(pipe.components)
    if options.loras and not options.video_parts:
        # LoRA layers are injected in place: a copy keeps the preset's UNet clean (with video parts the UNet is
        # rebuilt from the image part anyway, a new module)
        comps["unet"] = copy.deepcopy(pipe.unet)
    new = type(pipe)(**comps)
    new.set_progress_bar_config(disable=True)
    if getattr(pipe, "latent_rgb", None) is not None:
        new.latent_rgb = pipe.latent_rgb
    if options.video_parts:
        folder = Path(options.video_parts)
        shown = options.name(folder)
        _family_of_parts(folder, new, shown)
        try:
            load_video_parts(new, folder)
        except (ValueError, FileNotFoundError) as e:
            raise ModelOptionError("video_parts", str(e).replace(str(folder), shown)) from None
    if options.loras:
        try:
            import peft  # noqa: F401
        except ImportError:
            raise ModelOptionError("lora", "loading a LoRA needs peft: pip install -e '.[train]'") from None
        names = []
        for i, (path, scale) in enumerate(options.loras):
            p = Path(path)
            shown = options.name(p)
            name = f"lora{i}"
            try:
                if p.is_dir():
                    new.load_lora_weights(str(p), adapter_name=name)
                else:
                    new.load_lora_weights(str(p.parent), weight_name=p.name, adapter_name=name)
            except Exception as e:  # noqa: BLE001 - diffusers/peft raise many kinds on a mismatch
                msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
                if options.root:  # a web client's LoRA: diffusers' words may name server paths
                    msg = msg.replace(str(p.parent), ".").replace(options.root, ".")
                raise ModelOptionError("lora", f"{shown} does not fit this preset's image model (another model "
                                               f"family?): {msg}") from None
            if not _has_adapter(new.unet, name):
                raise ModelOptionError("lora", f"{shown} has no weights for this preset's image model (no LoRA layer "
                                               f"matched its UNet: another model family?)")
            names.append((name, scale))
        new.set_adapters([n for n, _ in names], adapter_weights=[s for _, s in names])
    return new


def _has_adapter(unet, name: str) -> bool:
    for m in unet.modules():
        lora_a = getattr(m, "lora_A", None)
        if lora_a is not None and hasattr(lora_a, "keys") and name in lora_a.keys():
            return True
    return False


_CACHE: dict = {}  # key -> (preset, bytes of its own tensors), oldest first
_LOCK = threading.Lock()
#: The model cache's bound: bytes of the tensors the cached models do not share with their base preset (a UNet copy
#: per LoRA set, new temporal layers per video-parts folder). `GVS_MODEL_CACHE_MB` overrides it. The newest model is
#: kept even when it alone is larger (the run in hand needs it); older ones are dropped first.
MODEL_CACHE_BYTES = 2 << 30
MODEL_CACHE_ENTRIES = 8


def cache_budget() -> int:
    """`GVS_MODEL_CACHE_MB` in bytes (a bad value is named and ignored), else `MODEL_CACHE_BYTES`."""
    import os

    raw = os.environ.get("GVS_MODEL_CACHE_MB")
    if raw:
        try:
            mb = float(raw)
            if mb >= 0:
                return int(mb * 2**20)
        except ValueError:
            pass
        print(f"[gvs] GVS_MODEL_CACHE_MB={raw!r} is not a number of MiB >= 0; using {MODEL_CACHE_BYTES >> 20}",
              flush=True)
    return MODEL_CACHE_BYTES


def _tensors(pipe):
    import torch

    for comp in getattr(pipe, "components", {}).values():
        if isinstance(comp, torch.nn.Module):
            yield from comp.parameters()
            yield from comp.buffers()


def own_bytes(pipe, base) -> int:
    """Bytes of `pipe`'s tensors (parameters and buffers) that `base` does not share (storage by storage)."""
    shared = {t.untyped_storage().data_ptr() for t in _tensors(base)}
    seen, total = set(), 0
    for t in _tensors(pipe):
        ptr = t.untyped_storage().data_ptr()
        if ptr in shared or ptr in seen:
            continue
        seen.add(ptr)
        total += t.untyped_storage().nbytes()
    return total


def cache_size() -> tuple[int, int]:
    """(models, bytes) in the cache."""
    with _LOCK:
        return len(_CACHE), sum(b for _, b in _CACHE.values())


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _stamp(options: ModelOptions) -> tuple:
    """Modification times of the options' files: a retrained `final/` or LoRA is loaded afresh."""
    paths = []
    if options.video_parts:
        paths += sorted(Path(options.video_parts).rglob("*"))
    for p, _ in options.loras:
        paths += sorted(Path(p).rglob("*")) if Path(p).is_dir() else [Path(p)]
    return tuple((str(p), p.stat().st_mtime_ns) for p in paths if p.is_file())


def with_model(preset, options: ModelOptions | None):
    """`preset` with the options applied (a new `Preset`), or `preset` itself for default options. Cached, the cache
    bounded in bytes (`cache_budget`) and to `MODEL_CACHE_ENTRIES` models, least recently used dropped first."""
    if options is None or options.is_default:
        return preset
    key = (id(preset.pipe), options, _stamp(options))
    with _LOCK:
        if key in _CACHE:
            _CACHE[key] = _CACHE.pop(key)  # most recently used last
            return _CACHE[key][0]
        pipe = apply_to_pipe(preset.pipe, options)
        out = dataclasses.replace(preset, pipe=pipe, reason=f"{preset.reason}; with {options.describe()}")
        out.model_options = options
        size = own_bytes(pipe, preset.pipe)
        budget = cache_budget()
        while _CACHE and (len(_CACHE) >= MODEL_CACHE_ENTRIES
                          or sum(b for _, b in _CACHE.values()) + size > budget):
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (out, size)
        return out


__all__ = ["ModelOptions", "ModelOptionError", "REFUSED", "parse_lora", "parse_options", "resolve_name",
           "apply_to_pipe", "with_model", "add_model_arguments", "model_options_of", "cache_budget", "cache_size",
           "clear_cache", "own_bytes"]
