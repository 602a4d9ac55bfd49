"""Fine-tuning: a run that starts from a trained U-Net, or from the config of a saved one.

    --pretrained_model_name_or_path NAME   the weights theta_0 and the noise schedule of NAME: a saved
                                           pipeline folder (unet/, scheduler/), the Hub repo id of one
                                           (downloaded as `from_pretrained` does), or a training
                                           checkpoint-N folder (unet_ema/ where it has one, else unet/)
    --model_config_name_or_path NAME       a fresh U-Net built from NAME's config.json (a folder holding
                                           it, or a pipeline folder, whose unet/ holds it)

Training then minimises the same loss (Ho et al. 2020, eq. (14)) from theta_0 instead of a random
initialisation; nothing else about the run changes.

What the base model decides. Its U-Net config fixes the architecture (--dim, --dim_mults,
--block_type, --linear_attention_levels) and, with --pretrained_model_name_or_path, its scheduler
config the diffusion (T = --ddpm_num_steps, --ddpm_beta_schedule, --prediction_type,
--timestep_spacing): the weights were trained for that schedule and that target. `BaseModel.settings_for`
returns the run's model settings (a new ModelSettings, settings.py): an option of these that the command
line leaves out takes the base model's value (so the model card and training_args.json show what is
trained, and the log lists what was inherited); one given on the command line must equal the base
model's value, or the run is refused, naming it.

What must fit the data, checked before the first step, each refusal naming both sides: the image
channels (the base's in_channels; --num_channels converts the data), the image size (its sample_size
against --resolution), and the classes (its num_class_embeds against the data's class count, "none"
meaning unconditional, and a "no class" embedding when --class_dropout_prob > 0). For the classes
--reset_class_embedding is the explicit way out: the class embedding is built afresh for the data's
classes (nn.Embedding's N(0, 1) initialisation) and every other weight is the base model's.
"""

import os
from dataclasses import dataclass, replace

from accelerate.logging import get_logger

from .args import ARCHITECTURE_OPTIONS, SCHEDULE_OPTIONS, TrainingConfigError, decided_by_base
from .settings import ModelSettings, from_flat, given
from .checkpoint_models import SCHEDULER_FOLDER, looks_like_checkpoint, model_folder

logger = get_logger(__name__)

UNET_CLASS = "AnnotatedUNet2DModel"
CLASS_EMBEDDING = "class_embedding."  # the parameter names of the class embedding in the U-Net's state dict
# option -> the key of the U-Net config (ARCHITECTURE_OPTIONS) or scheduler config (SCHEDULE_OPTIONS) that holds it
CONFIG_KEYS = {
    "dim": "dim", "dim_mults": "dim_mults", "block_type": "block_type",
    "linear_attention_levels": "linear_attention_levels",
    "ddpm_num_steps": "num_train_timesteps", "ddpm_beta_schedule": "beta_schedule",
    "prediction_type": "prediction_type", "timestep_spacing": "timestep_spacing",
}
assert set(CONFIG_KEYS) == set(ARCHITECTURE_OPTIONS + SCHEDULE_OPTIONS)


@dataclass
class BaseModel:
    """Where a run starts: the base model's U-Net config, its weights (None: fresh ones) and its
    scheduler config (None: the schedule comes from the arguments)."""

    option: str                 # the flag that named it
    name: str
    unet_config: dict
    unet: object | None
    scheduler_config: dict | None

    def describe(self):
        return f"the base model {self.name} (--{self.option})"

    def noise_scheduler(self):
        """The base model's noise scheduler (with --pretrained_model_name_or_path)."""
        from ..scheduler import AnnotatedDDPMScheduler

        return AnnotatedDDPMScheduler.from_config(self.scheduler_config)

    def settings_for(self, args):
        """The run's model settings, a new ModelSettings (`args` is unchanged): each option this base model
        decides that the command line leaves out takes the base model's value (logged); one given with
        another value is refused, naming it, its value and the base model's."""
        num_levels = len(self.unet_config["dim_mults"])
        inherited, conflicts = {}, []
        for option in decided_by_base(args):
            config = self.unet_config if option in ARCHITECTURE_OPTIONS else self.scheduler_config
            theirs = _comparable(option, config.get(CONFIG_KEYS[option]), num_levels)
            ours = getattr(args, option)
            if option not in given(args):
                inherited[option] = "all" if option == "linear_attention_levels" and theirs is None else theirs
            elif _comparable(option, ours, num_levels) != theirs:
                conflicts.append(f"--{option} {_shown(ours)} (the base model has {_shown(theirs)})")
        if conflicts:
            raise TrainingConfigError(
                f"{self.describe()} decides the architecture{' and the noise schedule' if self.scheduler_config else ''}"
                f", but {'; '.join(conflicts)}: leave {'these options' if len(conflicts) > 1 else 'the option'} out, "
                "or give the base model's value")
        settings = replace(from_flat(ModelSettings, vars(args)), **inherited)
        if settings.ddpm_num_inference_steps > settings.ddpm_num_steps:
            raise TrainingConfigError(f"--ddpm_num_inference_steps ({settings.ddpm_num_inference_steps}) cannot exceed "
                                      f"the base model's T = {settings.ddpm_num_steps} (--ddpm_num_steps)")
        if inherited:
            logger.info(f"From {self.describe()}: "
                        + ", ".join(f"--{option} {_shown(value)}" for option, value in inherited.items()))
        return settings

    def unet_for(self, args, channels, num_classes):
        """The U-Net to train on `channels`-channel images of --resolution with `num_classes` classes (None:
        unconditional); TrainingConfigError, naming both sides, where the base model does not fit."""
        from ..unet import AnnotatedUNet2DModel

        config = self.unet_config
        size = config.get("sample_size")
        if size is not None and tuple(size if isinstance(size, (list, tuple)) else (size, size)) != (args.resolution,) * 2:
            raise TrainingConfigError(f"{self.describe()} works on {_side(size)} images (sample_size {size}), but "
                                      f"--resolution is {args.resolution}: pass --resolution {_side_value(size)}")
        if config["in_channels"] != channels:
            raise TrainingConfigError(
                f"{self.describe()} takes {config['in_channels']}-channel images, the training data has {channels} "
                f"channel(s): pass --num_channels {config['in_channels']} to convert the data")
        wants_null = num_classes is not None and args.class_dropout_prob > 0
        if args.reset_class_embedding:
            config = {**config, "num_class_embeds": num_classes, "null_class_embed": wants_null}
            unet = AnnotatedUNet2DModel.from_config(config)
            if self.unet is not None:
                kept = {k: v for k, v in self.unet.state_dict().items() if not k.startswith(CLASS_EMBEDDING)}
                missing, unexpected = unet.load_state_dict(kept, strict=False)
                assert not unexpected and all(k.startswith(CLASS_EMBEDDING) for k in missing), (missing, unexpected)
            logger.info(f"--reset_class_embedding: a fresh class embedding for {_classes(num_classes)}; every other "
                        f"weight from {self.name}")
            return unet
        if config.get("num_class_embeds") != num_classes:
            raise TrainingConfigError(
                f"{self.describe()} is conditioned on {_classes(config.get('num_class_embeds'))}, the training data "
                f"has {_classes(num_classes)} ({f'--label_column {args.label_column}' if args.label_column else 'no --label_column'}): "
                "pass --reset_class_embedding for a fresh class embedding, or train on data with the base model's classes")
        if wants_null and not config.get("null_class_embed"):
            raise TrainingConfigError(
                f"--class_dropout_prob {args.class_dropout_prob} needs a 'no class' embedding, which {self.describe()} "
                "lacks: pass --class_dropout_prob 0, or --reset_class_embedding for a fresh class embedding with one")
        return self.unet if self.unet is not None else AnnotatedUNet2DModel.from_config(config)


def _side(size):
    return f"{size}x{size}" if isinstance(size, int) else "x".join(map(str, size))


def _side_value(size):
    return size if isinstance(size, int) else size[0]


def _classes(num_classes):
    return "no classes (unconditional)" if num_classes is None else f"{num_classes} classes"


def _is_missing_local_path(name):
    """A name that can only be a local path (not a repo id "user/name") and does not exist."""
    return not os.path.exists(name) and (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1)


def _load_pretrained(name):
    """(U-Net config, U-Net, scheduler config) of a pipeline folder, Hub repo or checkpoint folder."""
    from ..scheduler import AnnotatedDDPMScheduler
    from ..unet import AnnotatedUNet2DModel

    if looks_like_checkpoint(name):
        unet_source, unet_subfolder = model_folder(name), None
        scheduler_source, scheduler_subfolder = os.path.join(name, SCHEDULER_FOLDER), None
    else:
        unet_source, unet_subfolder, scheduler_source, scheduler_subfolder = name, "unet", name, "scheduler"
    _check_unet_class(AnnotatedUNet2DModel.load_config(unet_source, subfolder=unet_subfolder), name)
    unet = AnnotatedUNet2DModel.from_pretrained(unet_source, subfolder=unet_subfolder, use_safetensors=True)
    scheduler_config = AnnotatedDDPMScheduler.load_config(scheduler_source, subfolder=scheduler_subfolder)
    return dict(unet.config), unet, dict(scheduler_config)


def _load_unet_config(name):
    """A U-Net config from a folder with config.json, a pipeline folder (unet/config.json) or a Hub repo."""
    from ..unet import AnnotatedUNet2DModel

    subfolder = "unet" if os.path.isfile(os.path.join(name, "unet", "config.json")) else None
    if subfolder is None and os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
        raise ValueError(f"{name} holds neither config.json nor unet/config.json")
    config = dict(AnnotatedUNet2DModel.load_config(name, subfolder=subfolder))
    _check_unet_class(config, name)
    return config


def _check_unet_class(config, name):
    found = config.get("_class_name")
    if found != UNET_CLASS:
        raise ValueError(f"{name} holds a {found} U-Net, not an annotated-pipeline {UNET_CLASS}")


def load_base_model(args):
    """The base model named by --pretrained_model_name_or_path or --model_config_name_or_path (None for
    neither); `args` is left as it is (BaseModel.settings_for resolves the options it decides)."""
    if args.pretrained_model_name_or_path is not None:
        option, name = "pretrained_model_name_or_path", args.pretrained_model_name_or_path
    elif args.model_config_name_or_path is not None:
        option, name = "model_config_name_or_path", args.model_config_name_or_path
    else:
        return None
    try:
        if _is_missing_local_path(name):
            raise ValueError("no such folder")
        if option == "pretrained_model_name_or_path":
            base = BaseModel(option, name, *_load_pretrained(name))
        else:
            base = BaseModel(option, name, _load_unet_config(name), None, None)
    except (OSError, ValueError) as error:  # OSError: a missing file, an unknown or unreachable repo
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingConfigError(f"--{option} {name}: cannot load it: {first_line}") from None
    logger.info(f"Starting from {base.describe()}: "
                + ("its weights and noise schedule" if base.unet is not None else "its architecture, fresh weights"))
    return base


def _comparable(option, value, num_levels):
    """`value` of `option` in one spelling, whether it comes from the command line or a config."""
    from ..scheduler.schedules import SCHEDULE_ALIASES
    from ..unet.config import LINEAR_ATTENTION_NAMES, named_levels

    if option == "dim_mults":
        return tuple(value)
    if option == "linear_attention_levels":
        if value is None or value == "all":
            return None  # every level, as the U-Net stores it
        if value in LINEAR_ATTENTION_NAMES:
            return tuple(named_levels(value, num_levels))
        return tuple(value)
    if option == "ddpm_beta_schedule":
        return SCHEDULE_ALIASES.get(value, value)
    return value


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
