"""Moved to `pipelines.evaluation.micro_model` (the micro model's evaluation; its prompt set is
`pipelines.evaluation.micro.prompt_set`). This name stays for old imports and `python -m pipelines.micro.evaluate`."""
from __future__ import annotations

from ..evaluation.micro import prompt_set
from ..evaluation.micro_model import ATTRIBUTES, evaluate, generate, main, table

__all__ = ["ATTRIBUTES", "evaluate", "generate", "main", "prompt_set", "table"]

if __name__ == "__main__":
    raise SystemExit(main())
