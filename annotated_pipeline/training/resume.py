"""Resuming a run from a checkpoint: --resume_from_checkpoint PATH or latest.

The checkpoint's recorded arguments (training_args.json) are compared with this run's first: a
change that would make the result a different model than the card says (--prediction_type, the
schedule, the learning rate) is refused unless --accept_changed_args names it.
"""

import os

from accelerate.logging import get_logger

from .args import TrainingConfigError, args_for_model_card
from .checkpointing import checkpoint_step, read_training_args, resolve_checkpoint
from .distributed import is_collective_timeout
from .run_state import UnsafeCheckpointError, load_training_state
from .safeguards import changed_args, describe_changes

logger = get_logger(__name__)


def resume_global_step(args, accelerator, state):
    """Load the checkpoint named by --resume_from_checkpoint into `state` (loop.TrainingState); return its
    global step (0 if none). Nothing in the folder runs code unless --trust_checkpoint (run_state.py)."""
    if args.resume_from_checkpoint is None:
        return 0
    try:
        path = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    except ValueError as error:
        raise TrainingConfigError(str(error)) from None
    if path is None:
        logger.info(f"--resume_from_checkpoint latest: no complete checkpoint in {args.output_dir} yet, starting fresh")
        return 0
    check_resumed_args(args, path)
    try:
        load_training_state(accelerator, path, state.model, state.optimizer, state.lr_scheduler,
                            state.noise_generator, state.ema, trust=args.trust_checkpoint, posthoc=state.posthoc)
    except TrainingConfigError:
        raise
    except (FileNotFoundError, RuntimeError, KeyError, ValueError) as error:
        if is_collective_timeout(error):  # a peer stopped answering: train.main reports that
            raise
        first_lines = " ".join(str(error).splitlines()[:2])
        raise TrainingConfigError(
            f"cannot resume from {path}: {type(error).__name__}: {first_lines} ... (was it saved with the "
            "same model arguments and --use_ema setting?)"
        ) from None
    global_step = checkpoint_step(path)
    logger.info(f"Resumed from {os.path.basename(path)} at global step {global_step}")
    return global_step


def check_resumed_args(args, path):
    """Refuse to resume from a checkpoint trained with other arguments (another run's, or a changed
    objective, schedule or rate), unless --accept_changed_args; then the changes are recorded in
    `args.resumed_with_changes`, which later checkpoints and the model card carry."""
    record = read_training_args(path)
    if record is None:
        logger.warning(f"{path} records no training arguments (written by an older version), so they cannot "
                       "be compared with this run's")
        return
    history = list(record["args"].get("resumed_with_changes") or [])
    changes = changed_args(record["args"], args_for_model_card(args))
    if changes and not args.accept_changed_args:
        raise TrainingConfigError(
            f"{path} was trained with other arguments: {describe_changes(changes)} (checkpoint -> now). Resume "
            "with the checkpoint's arguments, pass --accept_changed_args to go on with the new ones, or start a "
            "new run in another --output_dir"
        )
    if changes:
        logger.warning(f"Resuming {path} with changed arguments (--accept_changed_args): {describe_changes(changes)}")
        history.append(f"at step {checkpoint_step(path)}: {describe_changes(changes)}")
    if history:
        args.resumed_with_changes = history


def apply_new_learning_rate(args, state):
    """After `load_state` the optimizer and LR schedule carry the checkpoint's peak rate; when
    --learning_rate was changed (and accepted), scale both so that the schedule goes on with the new peak."""
    schedule = getattr(state.lr_scheduler, "scheduler", state.lr_scheduler)  # accelerate wraps it
    ratio = args.learning_rate / schedule.base_lrs[0]
    if ratio == 1.0:
        return
    schedule.base_lrs = [lr * ratio for lr in schedule.base_lrs]
    for group in state.optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
