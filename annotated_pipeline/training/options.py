"""The argument parser of `annotated-pipeline train` (and `accelerate launch -m annotated_pipeline.train`),
generated from the settings' dataclasses (settings.py): one argument group per dataclass, one `--NAME` per
field, so `--help`, argparse's `choices` and the checks in args.py read the one definition there.

How a field becomes an argument:

    bool                     a flag (store_true); its default is False
    Literal[a, b] (| None)   choices=(a, b), read with the type of a
    float / float | None     finite_float / float_or_none (option_types.py: no nan, no inf)
    int, str (| None)        int, str
    metadata "parse"         that function (--dim_mults, --linear_attention_levels)
"""

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Literal

from .option_types import finite_float, float_or_none, parse_dim_mults, parse_linear_attention_levels  # noqa: F401
from .settings import GROUPS, LRScheduler, Logger, MixedPrecision

LOGGERS = typing.get_args(Logger)
MIXED_PRECISION = typing.get_args(MixedPrecision)
LR_SCHEDULERS = typing.get_args(LRScheduler)
CONSTANT_LR_SCHEDULERS = ("constant", "constant_with_warmup")  # nothing to decay: --lr_decay_steps is meaningless
# What a base model decides (base_model.py). With --pretrained_model_name_or_path all of these, with
# --model_config_name_or_path the architecture: an option left out takes the base model's value, one
# given on the command line must agree with it (or the run is refused, naming it).
ARCHITECTURE_OPTIONS = ("dim", "dim_mults", "block_type", "linear_attention_levels")
SCHEDULE_OPTIONS = ("ddpm_num_steps", "ddpm_beta_schedule", "prediction_type", "timestep_spacing")
DESCRIPTION = (
    "Train an annotated DDPM (Ho et al. 2020) with Hugging Face Accelerate. Run it as "
    "`annotated-pipeline train ...` (one process) or `accelerate launch -m annotated_pipeline.train ...` "
    "(one or many processes, CPU or GPU). With neither --dataset_name nor --train_data_dir it "
    "trains on the 2,000-image Fashion-MNIST sample shipped with the project."
)
PLAIN_TYPES = {float: finite_float, int: int, str: str}


def _without_none(annotation):
    """(the annotation without `| None`, whether it had it)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        return (members[0] if len(members) == 1 else typing.Union[tuple(members)]), optional
    return annotation, False


def argument(field):
    """The keyword arguments of `add_argument("--" + field.name, ...)` for a settings field."""
    assert field.default is not MISSING, f"{field.name}: every option has a default"
    kwargs = {"default": field.default, "help": field.metadata["help"]}
    annotation, optional = _without_none(field.type)
    if annotation is bool:
        assert field.default is False, f"{field.name}: a flag is off by default"
        return {"action": "store_true", "help": kwargs["help"]}
    if "parse" in field.metadata:
        return {"type": field.metadata["parse"], **kwargs}
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return {"type": type(choices[0]), "choices": choices, **kwargs}
    if annotation is float and optional:
        return {"type": float_or_none, **kwargs}
    return {"type": PLAIN_TYPES[annotation], **kwargs}


def build_parser(prog="train_accelerate.py"):
    """The argument parser; `--help` lists every option with its default."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for group in GROUPS:
        arguments = parser.add_argument_group(group.TITLE)
        for field in fields(group):
            arguments.add_argument(f"--{field.name}", **argument(field))
    return parser
