"""One evaluation package: every score of a generated video goes through here.

    python -m pipelines evaluate --suite style,interpolate --methods none,titan,mpgd --seeds 2 --out runs/eval

Modules (each imports only those above it):
- `cases.py`    `Case`: one prompt, its inputs and what its metric compares with (micro and real suites alike).
- `readers.py`  what a micro video shows, read exactly: `detect`, `count_objects` (the one definition of an object,
                ≥ `MIN_OBJECT_PX` = 4 px), `content_kept`, `colour_kept`, `residual`, `halo` / `off_colour`
                (pixels of another colour than the object's), `fidelity`, `centroids`, `endpoint_mse`,
                `match_frames`, `impacts_met`, `target_of`.
- `sheets.py`   contact sheets (rows: videos, columns: frames, a label per row).
- `specs.py`    method specs such as `titan[update=rms,step_size=0.1]`.
- `micro.py`    the micro preset's suites and exact metrics (target, fidelity, joint); each tab's example as a case
                of its suite (`example_cases`); the micro model's `prompt_set`.
- `real.py`     the real presets' suites, measured by `rewards.metrics.real_metrics` with non-guiding evaluators; FVD.
- `grid.py`     suites × cases × specs × seeds: cells, run, resume, sharding (accelerate's
                `PartialState().split_between_processes`), merge, summary (markdown + CSV), plots, contact sheets.
- `cli.py`      `python -m pipelines evaluate` (flags and outputs: DESIGN contract 6).
- `micro_model.py` the unguided micro model's accuracy on seen and held-out prompts.

The compare view (`pipelines/compare.py`), the HARIVO ablation (`pipelines/training/ablation.py`, its columns read by
`readers.harivo_reading`), the personalised base (`pipelines/training/personalise.py`) and `bench/micro_guidance.py`
score videos with `readers.py`.

Importing the package imports none of its modules (import the one you need).
"""
