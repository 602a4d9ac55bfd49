"""The training options as typed groups: `--help` as before the move, and every field in the parser.

The two help files were saved from `python -m annotated_pipeline train --help` and
`python train_accelerate.py --help` (COLUMNS=80) before the parser was generated from the dataclasses
of training/settings.py; the generated parser must print them byte for byte.
"""

import argparse
import sys
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Literal

import pytest

from annotated_pipeline.commands.cli import main as cli_main
from annotated_pipeline.training.args import parse_args
from annotated_pipeline.training.options import LR_SCHEDULERS, build_parser
from annotated_pipeline.training.settings import (GROUPS, EMASettings, ModelSettings, OutputSettings, TrainingArgs,
                                                  TrainingSettings, replaced)

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


def test_every_settings_field_is_an_option_with_its_type_choices_and_default():
    parser = build_parser()
    actions = [action for action in parser._actions if action.dest != "help"]
    assert [a.dest for a in actions] == [f.name for group in GROUPS for f in fields(group)]  # nothing else, in order
    titles = [g.title for g in parser._action_groups if g._group_actions]
    assert titles[1:] == [group.TITLE for group in GROUPS]  # after argparse's own "options" (--help)
    by_name = {action.dest: action for action in actions}
    for group in GROUPS:
        for f in fields(group):
            action = by_name[f.name]
            assert action.option_strings == [f"--{f.name}"] and action.help == f.metadata["help"], f.name
            assert action.default == f.default, f.name
            annotation = f.type
            if annotation is bool:
                assert isinstance(action, argparse._StoreTrueAction) and f.default is False, f.name
                continue
            members = (annotation,) if typing.get_origin(annotation) is Literal else typing.get_args(annotation)
            literal = [a for a in members if typing.get_origin(a) is Literal]
            if literal and "parse" not in f.metadata:
                assert tuple(action.choices) == typing.get_args(literal[0]), f.name
            else:
                assert action.choices is None, f.name
            if "parse" in f.metadata:
                assert action.type is f.metadata["parse"], f.name


def test_choices_types_and_defaults_behave_as_the_fields_say(capsys):
    parser = build_parser()
    assert parser.get_default("lr_scheduler") == "cosine" and LR_SCHEDULERS[-1] == "warmup_stable_decay"
    assert build_parser()._option_string_actions["--lr_scheduler"].choices == LR_SCHEDULERS
    assert build_parser()._option_string_actions["--loss_type"].choices == ("l1", "l2", "huber")
    assert build_parser()._option_string_actions["--num_channels"].choices == (1, 3)
    assert build_parser()._option_string_actions["--grid_scheduler"].choices == ("default", "ddim", "dpmsolver", "ddpm")
    parsed = parser.parse_args(["--num_channels", "3", "--snr_gamma", "none", "--learning_rate", "2e-4",
                                "--dim_mults", "1,2", "--linear_attention_levels", "1,2", "--use_ema"])
    assert (parsed.num_channels, parsed.snr_gamma, parsed.learning_rate) == (3, None, 2e-4)
    assert (parsed.dim_mults, parsed.linear_attention_levels, parsed.use_ema) == ((1, 2), (1, 2), True)
    for bad in (["--lr_scheduler", "step"], ["--num_channels", "2"], ["--learning_rate", "nan"], ["--seed", "1.5"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(bad)
        assert exit_info.value.code == 2, bad
    assert "invalid choice: 'step'" in capsys.readouterr().err


def test_the_parsed_arguments_are_the_settings_defaults_and_record_what_was_given():
    args = parse_args(["--logger", "none", "--dim", "32", "--use_ema"])
    assert isinstance(args, TrainingArgs) and args.given == {"logger", "dim", "use_ema"}
    assert "given" not in vars(args)  # not a setting: kept out of training_args.json and the trackers
    settings = args.settings()
    assert settings == replace(TrainingSettings(), model=replace(ModelSettings(), dim=32),
                               ema=replace(EMASettings(), use_ema=True),
                               outputs=replace(OutputSettings(), logger="none"))
    assert vars(TrainingArgs.from_settings(settings)) == vars(args)
    assert replaced(args, replace(settings.model, dim=8)).dim == 8 and args.dim == 32  # a copy
