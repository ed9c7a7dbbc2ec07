"""The one request layer shared by the CLI (`python -m pipelines generate`) and the app: validate, run, report.

    req = GenerationRequest(task="style", prompt="a red circle moving up on a black background",
                            style_image="style.png", method="titan", params={"scale": 1.0})
    prepared = validate(req, preset)              # RequestError(field, message) on bad input; loads media
    gen = run(prepared, preset, should_stop=None) # iterate: one StepEvent per step, then the final event
    for ev in gen: ...
    report = finalize(gen, "out.mp4", "report.json")   # writes both atomically (temp files, then rename)

Everything a user can get wrong is checked once, with the field named: the CLI prints
`error: <field>: <message>` and exits 2, the app raises `gr.Error` with the same text.

- `validation`: the request, its limits and defaults, parameter parsing, and `validate` (-> `Prepared`).
- `running`: `run` / `Generation`, the step stream with cancel and memory release.
- `fields`: the request as named fields (the app's API), `field_defaults` (the one table of defaults read by
  the app, its API and the CLI) and `check_fields` (each field's type, the field named).
- `reports`: `build_report`, `finalize` (mp4 + JSON, atomic), `summary_text` and `trust_region_counts`.
"""
from .fields import CONSTANT_DEFAULTS, check_fields, field_defaults, method_defaults, tab_fields, to_request
from .reports import build_report, finalize, summary_text, trust_region_counts
from .running import Generation, release_memory, run
from .validation import (
    CFG_RANGE, DEFAULT_ETA, DEFAULT_INTERPOLATION_MODE, ETA_RANGE, INTERPOLATION_MODES, MAX_PROMPT_CHARS, MAX_SEED,
    MG_RANGE, MIN_STYLE_SIDE, STEPS_RANGE, TASK_NAMES, GenerationRequest, Prepared, RequestError, asdict_shallow,
    check_prompt, check_step_range, coerce_param, parse_bool, parse_method_param_strings, parse_number,
    parse_param_strings, resolve_params, style_image_notice, validate,
)

__all__ = [
    "CONSTANT_DEFAULTS", "check_fields", "field_defaults", "method_defaults", "tab_fields", "to_request",
    "CFG_RANGE", "DEFAULT_ETA", "DEFAULT_INTERPOLATION_MODE", "ETA_RANGE", "INTERPOLATION_MODES", "MAX_PROMPT_CHARS",
    "MAX_SEED", "MG_RANGE", "MIN_STYLE_SIDE", "STEPS_RANGE", "TASK_NAMES",
    "GenerationRequest", "Prepared", "RequestError", "asdict_shallow", "check_prompt", "check_step_range",
    "coerce_param", "parse_bool", "parse_method_param_strings", "parse_number", "parse_param_strings",
    "resolve_params", "style_image_notice", "validate",
    "Generation", "release_memory", "run",
    "build_report", "finalize", "summary_text", "trust_region_counts",
]
