"""Each guidance method's settings as its paper states them (METHODS.md), in one place: the `paper` switch.

With the switch on (`--paper` on `python -m pipelines generate`, the request's and the app API's `paper` field, the
app's "paper settings" checkbox, `paper=1` inside a method spec such as `titan[paper=1]`), a method's parameters start
from `PAPER_SETTINGS[method]` instead of the preset's defaults; parameters the user gives still win, and parameters
the paper does not state keep their spec defaults. Every paper setting runs with `trust = 0`: the step is unbounded,
as in every paper (`base.bound_shift`), so λ / ρ and the update form set every guided step.

docs/methods.md "Paper settings and the defaults' deviations" is generated from this dict by
`scripts/methods_table.py --write` and lists, per method, each paper value against the shipped default and why.
"""
from __future__ import annotations

#: Per method: {parameter: (paper value, where the value comes from)}. Only parameters the method has.
PAPER_SOURCES: dict[str, dict[str, tuple]] = {
    "titan": {
        "trust": (0.0, "the paper bounds no step"),
        "guess": ("direct", "the gradient guess of the decoder and reward on the sampled frames"),
        "subset_frames": (2, "the seed's sampled frames F = 2"),
        "fill": ("tile", "the public code copies the subset's gradient onto every frame"),
        "update": ("sign", "the public code applies ĝ through a fresh AdamW each step: a step of λ·sign(ĝ)"),
        "step_size": (0.1, "the seed's λ_t = 0.1"),
        "schedule": ("constant", "λ_t = λ on every step"),
        "depth": (0, "the public code scores the one-step Tweedie estimate at t−1"),
    },
    "freedom": {
        "trust": (0.0, "the paper bounds no step"),
        "rho": (0.2, "ρ = 0.2"),
        "scale": ("cfg", "ρ_t = ρ·w·rms(ε_c − ε_u)/rms(g): the CFG correction's size"),
    },
    "mpgd": {
        "trust": (0.0, "the paper bounds no step"),
        "rho": (15.0, "ρ = 15"),
        "scale": ("cfg", "c_t = ρ·w·rms(ε_c − ε_u)/rms(g0): the CFG correction's size"),
    },
    "tfg": {
        "trust": (0.0, "the paper bounds no step"),
        "rho": (0.25, "ρ̄ = 0.25, the TFG repository's SD style-transfer setting"),
        "mu": (2.0, "μ̄ = 2"),
        "gamma": (0.1, "γ̄ = 0.1"),
        "num_samples": (1, "K = 1"),
        "n_recur": (1, "N_recur = 1"),
        "n_iter": (4, "N_iter = 4"),
        "rho_schedule": ("increase", "ρ_t ∝ ᾱ_t/ᾱ_{t−1}"),
        "mu_schedule": ("increase", "μ_t ∝ ᾱ_t/ᾱ_{t−1}"),
        "normalize": ("none", "raw gradients, no normalisation"),
    },
    "doodl": {
        "trust": (0.0, "the paper bounds no step"),
    },
    "free2guide": {
        "num_candidates": (5, "n = 5 candidates, within the paper's 5–10"),
        "key_frames": (4, "4 evenly spaced key frames"),
        "selection": ("argmax", "argmax: the paper's α → 0 limit"),
        "guided_fraction": (0.1, "the first steps only: 5 of 50"),
        "reuse_eps": (True, "the chosen candidate's lookahead ε̂ is the next step's"),
    },
}

#: Why a shipped default (the parameter's spec default, or a preset's own in `pipelines/presets.py`) departs from the
#: paper value, per method and parameter, pointing at the table that measured it. docs/methods.md's deviations table
#: is generated from this and `PAPER_SOURCES`; a deviation without a reason fails `scripts/methods_table.py`.
DEVIATION_REASONS: dict[str, dict[str, str]] = {
    "titan": {
        "trust": "unbounded, TITAN patterned 7/8 style backgrounds but dissolved every object (joint 0/8); inside the "
                 "trust region joint 1/8 (bench/EVALUATE.md, \"2026-12-06 (d5dd19a)\")",
        "guess": "the wan presets: the direct guess backpropagates through Wan's whole causal VAE decode (≈ 260 GiB "
                 "of saved activations in the memory model), the score guess keeps TITAN in forward mode "
                 "(docs/wan.md; `pipelines.presets.WAN_METHOD_DEFAULTS`)",
        "fill": "tiling copies a frame's gradient onto frames with other content; `auto` (pad or lerp) was chosen on "
                "the joint tables (bench/EVALUATE.md, \"2026-12-06 (5274e2b)\"); the t2v text setting keeps `tile`",
        "update": "the sign step ignores the noise level and steered least of the gradient methods on the exact micro "
                  "metrics; `x0` gave the best joint style row, `noise` the interpolation and audio rows, `rms` the "
                  "text row (bench/EVALUATE.md, \"2026-12-06 (5274e2b)\"; docs/methods.md, \"Which method for "
                  "which task\")",
        "step_size": "λ is in the units of the update form: 0.1 is the paper's for its sign step; λ = 5 in x̂0 units, "
                     "0.5 / 1 of the noise left and 0.1 rms units were chosen with their forms (same tables)",
    },
    "freedom": {
        "trust": "unbounded gradient steps patterned backgrounds but broke the objects (bench/EVALUATE.md, "
                 "\"2026-12-06 (d5dd19a)\")",
        "scale": "the CFG-sized step vanishes with an empty prompt: the animatediff and wan presets step in units of the "
                 "noise left (`scale=noise`, ρ = 1; derived from the step policy, docs/methods.md \"Step policy\"); "
                 "FreeDoM's CFG-relative step did nothing on t2v-reward where `scale=noise` did (bench/EVALUATE.md, "
                 "\"Against the issue's figures\")",
        "rho": "ρ = 1 goes with `scale=noise` (the animatediff and wan presets, docs/methods.md \"Step policy\")",
    },
    "mpgd": {
        "trust": "unbounded, MPGD patterned 8/8 style backgrounds but dissolved every object (joint 0/8; "
                 "bench/EVALUATE.md, \"2026-12-06 (d5dd19a)\"); ρ = 15 moved late-step latents 20–190× further than "
                 "their remaining noise (METHODS.md, MPGD)",
        "scale": "as FreeDoM's: the animatediff and wan presets step in units of the noise left (docs/methods.md, "
                 "\"Step policy\")",
        "rho": "ρ = 1 goes with `scale=noise`; ρ = 15 broke few-step t2v videos (bench/EVALUATE.md, \"Text, few steps "
               "(t2v-hard)\")",
    },
    "tfg": {
        "trust": "every gradient method's step is bounded by default (bench/EVALUATE.md, \"2026-12-06 (d5dd19a)\")",
        "normalize": "the micro and tiny rewards' raw gradients are far smaller than the ones ρ̄/μ̄ were tuned for, so "
                     "the raw steps do almost nothing (METHODS.md, TFG; `pipelines.presets.MICRO_METHOD_DEFAULTS`)",
        "mu": "μ̄ = 0.05 goes with unit-rms gradients (the micro and tiny presets; same reason)",
    },
    "doodl": {
        "trust": "every gradient method's step is bounded by default (bench/EVALUATE.md, \"2026-12-06 (d5dd19a)\")",
    },
    "free2guide": {
        "key_frames": "the micro CLIP's per-frame scores vary a lot between frames: 8 key frames of 8 cost little at "
                      "32×32 (`pipelines.presets.MICRO_METHOD_DEFAULTS`)",
        "num_candidates": "8 candidates beat 2 or 4 on audio sync (bench/EVALUATE.md, \"Free²Guide's guided range "
                          "and candidate count\")",
        "guided_fraction": "guiding the first half of the steps met the same audio sync as guiding all with half the "
                           "lookahead passes; 10 % was too little selection on micro (bench/EVALUATE.md, "
                           "\"Free²Guide's guided range and candidate count\")",
    },
}

#: Per method: {parameter: paper value} (what the `paper` switch starts from).
PAPER_SETTINGS: dict[str, dict] = {m: {k: v for k, (v, _) in d.items()} for m, d in PAPER_SOURCES.items()}


def paper_settings(method: str) -> dict:
    """The paper's parameters of `method` (a copy; {} for `none`)."""
    return dict(PAPER_SETTINGS.get(method, {}))


__all__ = ["DEVIATION_REASONS", "PAPER_SETTINGS", "PAPER_SOURCES", "paper_settings"]
