"""`python -m pipelines NAME ...` runs the module commands (training, ablation, normality, personalise, ship, the
micro model's evaluation, the micro judge) with their own flags: one entry point for every command line."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(cli.PASS_THROUGH))
def test_each_module_command_is_a_subcommand_with_its_own_help(name, capsys):
    module = cli.PASS_THROUGH[name][0]
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pipelines"), out[:200]
    assert callable(importlib.import_module(module).main)


def test_a_subcommand_passes_its_arguments_and_exit_code_through(capsys):
    # the training's own refusal of a bad --set, through the dispatcher
    assert cli.main(["train", "--set", "w_dc"]) == 2
    assert "--set: expected key=value" in capsys.readouterr().err
    assert cli.main(["ablation", "--only", "99"]) == 2
    assert "--only" in capsys.readouterr().err


def test_the_top_level_help_lists_every_subcommand():
    r = subprocess.run([sys.executable, "-m", "pipelines", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("generate", "bench", "evaluate", *cli.PASS_THROUGH):
        assert name in r.stdout, name
