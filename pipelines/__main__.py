"""`python -m pipelines generate|bench|train-micro` — see pipelines/cli.py."""
import sys

from .cli import main

sys.exit(main())
