"""Command-line arguments of `train_accelerate.py`.

The names follow diffusers' `examples/unconditional_image_generation/train_unconditional.py` wherever
that script has one, so anyone who has trained a diffusers model already knows them. Ours are added
for what that script does not have: the loss (`--loss_type`), the shape of our U-Net (`--dim`,
`--dim_mults`, `--block_type`, `--num_channels`) and class-conditional training (`--label_column`).

Two kinds of checks keep a bad run from starting:

    validate_args(args)   what can be judged from the arguments alone (here, in-process, instantly);
    build.setup(...)      what needs the data or the model/scheduler constructors (a resolution the
                          U-Net cannot downsample, an unknown beta schedule, an empty data set, ...).

Both raise `TrainingConfigError`; `train_accelerate.py` turns it into one line on stderr and exit
status 2, the way argparse reports a bad flag, instead of a traceback.
"""

import argparse
import importlib.util
import os

from . import validation
from .posthoc_ema import DEFAULT_SIGMA_RELS
from .options import ARCHITECTURE_OPTIONS, CONSTANT_LR_SCHEDULERS, LR_SCHEDULERS, SCHEDULE_OPTIONS, build_parser  # noqa: F401
from .settings import TrainingArgs, TrainingSettings, given


class TrainingConfigError(ValueError):
    """A training configuration that cannot work, found before the first training step."""


def _positive(args, names):
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TrainingConfigError(f"--{name} must be a positive integer; got {value}")


def validate_args(args):
    """Check what the arguments alone can tell; raise TrainingConfigError naming the problem."""
    _positive(args, ["resolution", "train_batch_size", "eval_batch_size", "num_epochs", "max_train_steps",
                     "gradient_accumulation_steps", "dim", "ddpm_num_steps", "ddpm_num_inference_steps",
                     "save_images_epochs", "save_model_epochs", "checkpointing_steps",
                     "checkpoints_total_limit", "ddp_timeout"])
    if args.hub_token is not None:
        raise TrainingConfigError(
            "--hub_token is refused: a token on the command line shows in process lists, and `accelerate launch` "
            "prints its command line when a run fails. Set HF_TOKEN in the environment or run `hf auth login`"
        )
    for name in ("adam_epsilon", "max_grad_norm", "ema_inv_gamma", "ema_power"):
        if not getattr(args, name) > 0:
            raise TrainingConfigError(f"--{name} must be > 0; got {getattr(args, name)}")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise TrainingConfigError(f"--{name} must lie in [0, 1); got {getattr(args, name)}")
    if args.adam_weight_decay < 0:
        raise TrainingConfigError(f"--adam_weight_decay must be >= 0; got {args.adam_weight_decay}")
    if args.dataloader_num_workers < 0:
        raise TrainingConfigError(f"--dataloader_num_workers must be >= 0; got {args.dataloader_num_workers}")
    _validate_lr_schedule(args)
    if args.snr_gamma is not None and not args.snr_gamma > 0:
        raise TrainingConfigError(f"--snr_gamma must be > 0 (Hang et al. 2023 use 5); got {args.snr_gamma}")
    if args.learning_rate <= 0:
        raise TrainingConfigError(f"--learning_rate must be > 0; got {args.learning_rate}")
    if not 0.0 <= args.class_dropout_prob < 1.0:
        raise TrainingConfigError(
            f"--class_dropout_prob must lie in [0, 1) (0 = no label dropout; 1 would never show a label); "
            f"got {args.class_dropout_prob}"
        )
    if args.class_dropout_prob > 0 and not args.label_column:
        raise TrainingConfigError(
            "--class_dropout_prob drops class labels, so it needs --label_column (the column that holds them)"
        )
    if args.posthoc_ema_every is not None and args.posthoc_ema_every <= 0:
        raise TrainingConfigError(f"--posthoc_ema_every must be > 0 (optimizer steps between snapshots); got "
                                  f"{args.posthoc_ema_every}")
    if args.posthoc_ema_sigma_rels is not None and args.posthoc_ema_every is None:
        raise TrainingConfigError("--posthoc_ema_sigma_rels sets the averages that --posthoc_ema_every stores; give "
                                  "--posthoc_ema_every K as well")
    if args.posthoc_ema_every is not None and args.posthoc_ema_sigma_rels is None:
        args.posthoc_ema_sigma_rels = DEFAULT_SIGMA_RELS
    if not 0.0 <= args.ema_max_decay <= 1.0:
        raise TrainingConfigError(f"--ema_max_decay must lie in [0, 1]; got {args.ema_max_decay}")
    if args.pretrained_model_name_or_path is not None and args.model_config_name_or_path is not None:
        raise TrainingConfigError(
            "--pretrained_model_name_or_path (start from trained weights) and --model_config_name_or_path (fresh "
            "weights from a config) exclude each other; give one"
        )
    if args.reset_class_embedding and args.pretrained_model_name_or_path is None:
        raise TrainingConfigError("--reset_class_embedding replaces the class embedding of a base model, so it needs "
                                  "--pretrained_model_name_or_path")
    # T decided by a base model is known once it is loaded (base_model.py checks it then).
    t_from_base = "ddpm_num_steps" in decided_by_base(args) and "ddpm_num_steps" not in given(args)
    if not t_from_base and args.ddpm_num_inference_steps > args.ddpm_num_steps:
        raise TrainingConfigError(
            f"--ddpm_num_inference_steps ({args.ddpm_num_inference_steps}) cannot exceed "
            f"--ddpm_num_steps ({args.ddpm_num_steps})"
        )
    _validate_quality_args(args)
    validation.validate_arguments(args)
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise TrainingConfigError(f"--output_dir {args.output_dir!r} is a file, not a folder")
    if args.push_to_hub and not args.hub_model_id:
        raise TrainingConfigError('--push_to_hub needs --hub_model_id (the Hub repository, "user/name")')
    if args.logger == "wandb" and importlib.util.find_spec("wandb") is None:
        raise TrainingConfigError("--logger wandb needs the wandb package: `pip install wandb` (or use --logger tensorboard)")
    if args.logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise TrainingConfigError(
            "--logger tensorboard needs the tensorboard package: `pip install tensorboard` (or use --logger none)"
        )
    return args


def _validate_lr_schedule(args):
    """--lr_warmup_steps, --lr_decay_steps and --lr_cooldown_steps against --lr_scheduler."""
    if args.lr_warmup_steps < 0:
        raise TrainingConfigError(f"--lr_warmup_steps must be >= 0; got {args.lr_warmup_steps}")
    if args.lr_decay_steps is not None and args.lr_decay_steps <= args.lr_warmup_steps:
        raise TrainingConfigError(
            f"--lr_decay_steps ({args.lr_decay_steps}) must exceed --lr_warmup_steps ({args.lr_warmup_steps})"
        )
    if args.lr_decay_steps is not None and args.lr_scheduler in CONSTANT_LR_SCHEDULERS:
        raise TrainingConfigError(
            f"--lr_decay_steps has no effect with --lr_scheduler {args.lr_scheduler} (the rate never decays); "
            f"drop it, or choose one of {', '.join(s for s in LR_SCHEDULERS if s not in CONSTANT_LR_SCHEDULERS)}"
        )
    if (args.lr_scheduler == "warmup_stable_decay") != (args.lr_cooldown_steps is not None):
        raise TrainingConfigError(
            "--lr_cooldown_steps goes with --lr_scheduler warmup_stable_decay and only with it "
            f"(got --lr_scheduler {args.lr_scheduler}, --lr_cooldown_steps {args.lr_cooldown_steps})"
        )
    if args.lr_cooldown_steps is not None and args.lr_cooldown_steps < 1:
        raise TrainingConfigError(f"--lr_cooldown_steps must be >= 1; got {args.lr_cooldown_steps}")


def _validate_quality_args(args):
    """--eval_steps and its companions (training/quality.py checks the classifier and the reference)."""
    if args.eval_steps is None:
        given = [f"--{name}" for name in ("eval_classifier", "eval_reference") if getattr(args, name) is not None]
        if args.save_best:
            given.append("--save_best")
        if args.eval_features != "classifier":
            given.append(f"--eval_features {args.eval_features}")
        if given:
            raise TrainingConfigError(f"{', '.join(given)} need --eval_steps K (how often to measure the samples)")
        return
    if args.eval_steps < 1 or args.eval_num_samples < 2:
        raise TrainingConfigError(f"--eval_steps must be >= 1 and --eval_num_samples >= 2; got {args.eval_steps}, "
                                  f"{args.eval_num_samples}")


def given_options(parser, argv=None):
    """The destinations of the options named on the command line `argv` (not filled in by a default)."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


def decided_by_base(args):
    """The options a base model decides: with --pretrained_model_name_or_path the architecture and the
    schedule, with --model_config_name_or_path the architecture, else none (base_model.py)."""
    if args.pretrained_model_name_or_path is not None:
        return ARCHITECTURE_OPTIONS + SCHEDULE_OPTIONS
    if args.model_config_name_or_path is not None:
        return ARCHITECTURE_OPTIONS
    return ()


def parse_args(argv=None, prog="train_accelerate.py"):
    """Parse and validate into a TrainingArgs (settings.py) that records which options `argv` names;
    argparse exits with status 2 on a malformed flag, TrainingConfigError otherwise."""
    parser = build_parser(prog)
    settings = TrainingSettings.from_flat(vars(parser.parse_args(argv)))
    return validate_args(TrainingArgs.from_settings(settings, given=given_options(parser, argv)))


def args_for_model_card(args):
    """The training configuration as plain JSON-able values, without the Hub token."""
    config = {}
    for key, value in sorted(vars(args).items()):
        if key == "hub_token":
            continue
        config[key] = list(value) if isinstance(value, tuple) else value
    return config
