"""`key=value` text, parsed in one place: the CLI's `--param name=value` (generate) and `--param METHOD.NAME=VALUE`
(bench, evaluate, `bench/micro_guidance.py`), the training's `--set key=value`, and the settings inside a method
spec such as `titan[update=rms,step_size=0.1]`. Keys and values are stripped; a bad item raises `ValueError`
saying what was expected and what was given (the caller names the flag)."""
from __future__ import annotations

import json


def split_pair(item: str, expected: str = "key=value") -> tuple[str, str]:
    """`"key = value"` -> `("key", "value")`; ValueError when there is no `=` or no key."""
    key, sep, value = str(item).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"expected {expected}, got {item!r}")
    return key, value.strip()


def parse_pairs(items, expected: str = "key=value") -> dict[str, str]:
    """Repeated `key=value` items -> {key: value string} (a later key wins)."""
    return dict(split_pair(item, expected) for item in items or [])


def parse_method_pairs(items) -> dict[str, dict[str, str]]:
    """Repeated `METHOD.NAME=VALUE` items -> {method: {name: value string}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        key, value = split_pair(item, "METHOD.NAME=VALUE")
        method, dot, name = (part.strip() for part in key.partition("."))
        if not dot or not method or not name:
            raise ValueError(f"expected METHOD.NAME=VALUE, got {item!r}")
        out.setdefault(method, {})[name] = value
    return out


def read_value(text: str):
    """A value typed on a command line: `true`/`false` (any case) as a bool, then an int, a float, JSON (a list, an
    object, null, a quoted string), else the text itself (`rms`, `clip+lvlm borda`)."""
    text = str(text).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


__all__ = ["split_pair", "parse_pairs", "parse_method_pairs", "read_value"]
