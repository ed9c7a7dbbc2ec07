"""Guidance methods as strategies plugged into one DDIM loop (see `base.Guidance`).

`METHODS` lists the names; `make_guidance(name, **params)` builds one ("none" → None); `method_params(name)`
describes its parameters (defaults from METHODS.md) for the app and the CLI.
"""
from __future__ import annotations

from .base import Guidance, ParamSpec
from .temporal import mitigating_gradient

METHODS = ("none", "titan", "freedom", "mpgd", "tfg", "doodl", "free2guide")


def method_class(name: str):
    if name == "none":
        return Guidance
    if name == "titan":
        from .titan import TitanGuidance

        return TitanGuidance
    if name in ("freedom", "mpgd", "tfg"):
        from . import backprop

        return {"freedom": backprop.FreeDoMGuidance, "mpgd": backprop.MPGDGuidance, "tfg": backprop.TFGGuidance}[name]
    if name == "doodl":
        from .doodl import DOODLGuidance

        return DOODLGuidance
    if name == "free2guide":
        from .free2guide import Free2GuideGuidance

        return Free2GuideGuidance
    raise ValueError(f"unknown guidance method {name!r}; choose one of {', '.join(METHODS)}")


def method_params(name: str) -> list[ParamSpec]:
    return method_class(name).params()


def make_guidance(name: str, **params) -> Guidance | None:
    """Build a method from its name and parameters; unknown or out-of-range parameters raise ValueError."""
    cls = method_class(name)
    known = {p.name for p in cls.params()}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) for {name}: {', '.join(unknown)} (known: {', '.join(sorted(known)) or 'none'})")
    if name == "none":
        return None
    return cls(**params)


__all__ = ["METHODS", "Guidance", "ParamSpec", "make_guidance", "method_params", "method_class", "mitigating_gradient"]
