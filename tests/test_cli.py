"""The `annotated-pipeline` console script, run as a real subprocess (it is installed by `pip install -e .`)."""

import subprocess
import sys
from pathlib import Path

import pytest

from annotated_pipeline.cli import SUBCOMMANDS

SCRIPT = str(Path(sys.executable).parent / "annotated-pipeline")  # installed beside this interpreter by pip


def run(*argv):
    return subprocess.run([SCRIPT, *argv], capture_output=True, text=True, timeout=120)


def test_overview_lists_every_subcommand():
    result = run("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert f"  {name} " in result.stdout


def test_no_subcommand_and_an_unknown_one_are_one_line_and_status_2():
    assert run().returncode == 2
    result = run("bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"annotated-pipeline: error: unknown subcommand 'bogus' (choose from {', '.join(SUBCOMMANDS)})"]


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help_and_refuses_a_bad_option(name):
    result = run(name, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: annotated-pipeline {name}")
    result = run(name, "--no_such_option")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"annotated-pipeline {name}: error:")
