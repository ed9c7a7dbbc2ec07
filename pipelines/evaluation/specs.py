"""Method specs: a method name with optional settings in brackets, e.g. `titan[update=rms,step_size=0.1]`.

A spec's settings are method parameters, plus the request fields `eta`, `mg` (HARIVO MG α), `mg_norm` (normalised
α, when supported), `cfg`, `steps`, `paper` (`titan[paper=1]`: the method's paper settings, `guidance.paper`, with
the spec's other parameters on top), `mode` (the interpolation constraint) and `reward` (the t2v reward, e.g.
`reward=lvlm` or `reward=clip+lvlm borda`; `policy=score|binary` picks the LVLM judge's policy; the judge is
configured by the `GVS_LVLM_*` variables, e.g. the micro world's stand-in judge `python -m pipelines.micro.judge`).
The spec string is the row's label.
"""
from __future__ import annotations

import re

from ..keyvalue import read_value, split_pair

#: Request fields a method spec may set (the rest of its settings are method parameters).
REQUEST_KEYS = {"eta": "eta", "mg": "mg_scale", "mg_norm": "mg_normalized", "cfg": "cfg", "steps": "steps",
                "paper": "paper"}

_SPEC = re.compile(r"^\s*([a-z0-9_]+)\s*(?:\[(.*)\])?\s*$")


def parse_spec(spec: str) -> tuple[str, dict, dict]:
    """`titan[update=rms,step_size=0.1,eta=0]` → ("titan", method params, request fields)."""
    from ..guidance import METHODS

    m = _SPEC.match(spec)
    if not m or m.group(1) not in METHODS:
        raise ValueError(f"method spec {spec!r}: expected NAME or NAME[key=value,...] with NAME one of "
                         f"{', '.join(METHODS)}")
    params, request = {}, {}
    for item in filter(None, (s.strip() for s in (m.group(2) or "").split(","))):
        try:
            k, v = split_pair(item)
        except ValueError as e:
            raise ValueError(f"method spec {spec!r}: {e}") from None
        if k in REQUEST_KEYS:
            request[REQUEST_KEYS[k]] = read_value(v)
        elif k == "mode":
            request["interpolation_mode"] = v
        elif k == "reward":  # the t2v reward: clip, lvlm, or "clip+lvlm weighted|normalized|borda"
            request["t2v_reward"] = v
        elif k == "policy":  # the LVLM judge's policy for this cell
            from rewards.lvlm import POLICIES

            if v not in POLICIES:
                raise ValueError(f"method spec {spec!r}: policy must be one of {', '.join(POLICIES)}")
            request["lvlm_policy"] = v
        else:
            params[k] = read_value(v)
    return m.group(1), params, request


def split_specs(text: str) -> list[str]:
    """Split a comma list of specs, keeping commas inside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


__all__ = ["REQUEST_KEYS", "parse_spec", "split_specs"]
