"""The training options as typed groups: `--help` as before the move, and every field in the parser.

The two help files were saved from `python -m annotated_pipeline train --help` and
`python train_accelerate.py --help` (COLUMNS=80) before the parser was generated from the dataclasses
of training/settings.py; the generated parser must print them byte for byte.
"""

import sys
from pathlib import Path

import pytest

from annotated_pipeline.commands.cli import main as cli_main

REPO = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(REPO))
from train_accelerate import cli as train_accelerate_cli  # noqa: E402


@pytest.mark.parametrize("run, golden", [
    (lambda: cli_main(["train", "--help"]), "train_help.txt"),
    (lambda: train_accelerate_cli(["--help"]), "train_accelerate_help.txt"),
])
def test_help_is_unchanged_byte_for_byte(run, golden, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    try:
        status = run()  # the CLI turns argparse's SystemExit into its return value
    except SystemExit as exit_:
        status = exit_.code
    assert status in (0, None)
    assert capsys.readouterr().out == (DATA / golden).read_text()
