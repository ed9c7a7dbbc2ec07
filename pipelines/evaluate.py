"""Moved to the evaluation package `pipelines.evaluation` (suites, cases, readers, grid and command line defined
once there: `cases.py`, `micro.py`, `real.py`, `specs.py`, `grid.py`, `cli.py`). This name stays for old imports;
new code imports the package's modules. Patch names in the module that uses them (e.g. `grid.run_cell`), not here.
"""
from __future__ import annotations

from .evaluation.cases import Case
from .evaluation.cli import build_parser, main
from .evaluation.grid import (Cell, evaluate, grid, plot, primary_metric, read_rows, run_cell, shard, summarize,
                              write_sheets, write_summary)
from .evaluation.micro import (AGREE_KEYS, AUDIO_PHASES, ENDS_PX, KEY_POSITIONS, PRIMARY, SUITES, T2V_HARD_CFG,
                               T2V_HARD_STEPS, cases, metrics, reference_image)
from .evaluation.specs import REQUEST_KEYS, parse_spec, split_specs

__all__ = ["AGREE_KEYS", "AUDIO_PHASES", "Case", "Cell", "ENDS_PX", "KEY_POSITIONS", "PRIMARY", "REQUEST_KEYS",
           "SUITES", "T2V_HARD_CFG", "T2V_HARD_STEPS", "build_parser", "cases", "evaluate", "grid", "main", "metrics",
           "parse_spec", "plot", "primary_metric", "read_rows", "reference_image", "run_cell", "shard",
           "split_specs", "summarize", "write_sheets", "write_summary"]

if __name__ == "__main__":
    raise SystemExit(main())
