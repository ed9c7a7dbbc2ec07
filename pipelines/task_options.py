"""The tasks' names and options as plain values (no torch): read by the request layer, which checks a request
against them, and by `pipelines.tasks`, which builds the task's reward and constraints."""
from __future__ import annotations

TASKS = ("t2v", "style", "audio", "interpolate")
#: Rewards the text-to-video task can score with: CLIP text alignment, an LVLM judge (black box: Free²Guide or
#: none), or an ensemble of both (Free²Guide's weighted sum with β = 0.75 on the LVLM, normalised sum, Borda).
T2V_REWARDS = ("clip", "lvlm", "clip+lvlm weighted", "clip+lvlm normalized", "clip+lvlm borda")
INTERPOLATION_MODES = ("both", "reward", "replacement")
#: The one default of the interpolation constraint (CLI, app widget, API, `GenerationRequest`, `TaskInputs` and the
#: evaluation's interpolation cases): `both` = the key frames' latents replaced after every step (exact ends) and the
#: reward guiding the frames between them (bench/EVALUATE.md, "Interpolation, judged on its path").
DEFAULT_INTERPOLATION_MODE = "both"
