"""Build small CLIP tokenizers in code.

The micro preset and the tests need a real `CLIPTokenizer` (the class AnimateDiff expects) without any
download. `build_clip_tokenizer(words, folder)` writes a byte-level BPE vocabulary in which every listed word
is a single token and every other word still tokenizes (it falls back to characters), so any prompt is valid.
"""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Iterable

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's reversible byte -> printable-character table (GPT-2 style).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_clip_tokenizer_files(words: Iterable[str], folder: str | Path, model_max_length: int = 16) -> Path:
    """Write vocab.json, merges.txt and tokenizer_config.json for a CLIPTokenizer into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        if tok not in vocab:
            vocab[tok] = len(vocab)

    for ch in byte_chars:
        add(ch)
    for ch in byte_chars:
        add(ch + "</w>")
    merges: list[tuple[str, str]] = []
    seen = set()
    extra = list(string.ascii_lowercase) + list(string.digits)
    for word in list(dict.fromkeys(w.lower() for w in words)) + extra:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        # Merge left to right: ((w o) r) d</w> ...
        left = symbols[0]
        for right in symbols[1:]:
            pair = (left, right)
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            left = left + right
            add(left)
    add(BOS)
    add(EOS)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2)
    )
    return folder


def build_clip_tokenizer(words: Iterable[str], folder: str | Path, model_max_length: int = 16):
    """Write the files (see `build_clip_tokenizer_files`) and load them as a `transformers.CLIPTokenizer`."""
    from transformers import CLIPTokenizer

    build_clip_tokenizer_files(words, folder, model_max_length)
    return CLIPTokenizer.from_pretrained(str(folder))
