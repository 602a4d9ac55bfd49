"""The `annotated-pipeline` console script, run as a real subprocess (it is installed by `pip install -e .`)."""

import subprocess
import sys
from pathlib import Path

import pytest

from annotated_pipeline.commands.cli import SUBCOMMANDS

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


# Every subcommand's --help and a bad option, in one interpreter (each subcommand imports torch and
# diffusers, seconds per process): `cli.main` as the console script calls it, its streams captured.
EVERY_SUBCOMMAND = """
import contextlib, io, json, sys
from annotated_pipeline.commands import cli
results = {}
for name in cli.SUBCOMMANDS:
    for flag in ("--help", "--no_such_option"):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main([name, flag])
        results[f"{name} {flag}"] = [status, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def every_subcommand():
    import json

    result = subprocess.run([sys.executable, "-c", EVERY_SUBCOMMAND], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help_and_refuses_a_bad_option(every_subcommand, name):
    status, out, _ = every_subcommand[f"{name} --help"]
    assert status == 0 and out.startswith(f"usage: annotated-pipeline {name}")
    status, _, err = every_subcommand[f"{name} --no_such_option"]
    assert status == 2
    assert err.strip().splitlines()[-1].startswith(f"annotated-pipeline {name}: error:")


def test_the_console_script_runs_a_subcommand():
    result = run("sample", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: annotated-pipeline sample")
    result = run("sample", "--no_such_option")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("annotated-pipeline sample: error:")
