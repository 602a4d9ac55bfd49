"""Training checkpoints: folders `output_dir/checkpoint-{global_step}` written by `accelerator.save_state`.

A checkpoint holds everything needed to continue a run as if it had never stopped:

    model.safetensors          the training weights theta
    optimizer.bin              AdamW's moments and step count
    scheduler.bin              the learning-rate schedule's position
    noise_generator_{rank}.safetensors   each process's generator of t and eps (step.NoiseGenerator)
    ema.safetensors, ema.json  the EMA of the weights and its counters, with --use_ema (run_state.py)
    random_states_{rank}.pkl   every process's global RNG state (random crops and flips)

Resuming reads every piece as safetensors, JSON or `torch.load(weights_only=True)` (run_state.py).
    training_args.json         the arguments the run was trained with, and any change accepted on resume
    unet/, unet_ema/, scheduler/   the weights (and EMA weights) as diffusers folders (checkpoint_models.py)

The global step (number of optimizer steps taken) is the number in the folder's name, as in
diffusers' training examples. The data position follows from it: the loop skips the batches of
the current epoch that were already used (`accelerator.skip_first_batches`).

A checkpoint is written atomically: into the hidden sibling `.checkpoint-{step}.incomplete`, which is
renamed to `checkpoint-{step}` only once every process has finished writing, and older checkpoints are
pruned only after that. A run killed while writing, or one whose disk fills up, therefore leaves the
previous checkpoint as it was, and `latest` never picks a half-written folder; the next run on the
folder cleans up what the killed one left (`recover_leftovers`).
"""

import errno
import json
import logging
import os
import re
import shutil

from ..checkpoints import (CHECKPOINT_PREFIX, TRAINING_ARGS_FILE, checkpoint_step, list_checkpoints,  # noqa: F401
                           missing_files, read_training_args)
from .distributed import is_collective_timeout

logger = logging.getLogger(__name__)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions, ...); the previous one is intact."""


def resolve_checkpoint(output_dir, resume_from_checkpoint):
    """The folder to resume from: the newest complete one in `output_dir` for "latest", else the given path.

    "latest" skips (and names, in a warning) incomplete folders, and returns None when `output_dir` holds
    no complete checkpoint (a fresh run starts). An explicit path that is not a complete checkpoint
    folder raises ValueError naming what it lacks.
    """
    if resume_from_checkpoint == "latest":
        for path in reversed(list_checkpoints(output_dir)):
            missing = missing_files(path)
            if not missing:
                return path
            logger.warning(f"--resume_from_checkpoint latest: skipping {path}, which is incomplete "
                           f"(no {', '.join(missing)})")
        return None
    path = resume_from_checkpoint
    if not os.path.isdir(path) and os.path.isdir(os.path.join(output_dir, path)):
        path = os.path.join(output_dir, path)  # a bare name such as "checkpoint-500"
    if not os.path.isdir(path):
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such folder")
    checkpoint_step(path)  # raises for a folder that is not named checkpoint-STEP
    missing = missing_files(path)
    if missing:
        raise ValueError(f"--resume_from_checkpoint {path}: not a complete checkpoint (it has no {', '.join(missing)}); "
                         "resume from another one, or --resume_from_checkpoint latest for the newest complete one")
    return path


_LEFTOVER_NAME = re.compile(r"^\.(checkpoint-\d+)\.(incomplete|replaced)$")


def recover_leftovers(output_dir):
    """Clean up after a run killed while writing a checkpoint (call it while owning the folder, before any
    save): a `.checkpoint-N.replaced` whose `checkpoint-N` is gone (killed between the two renames of a
    replace) becomes `checkpoint-N` again; every other `.checkpoint-N.replaced` and `.checkpoint-N.incomplete`
    is deleted. Returns one line per folder, saying what was done."""
    if not os.path.isdir(output_dir):
        return []
    notes = []
    for name in sorted(os.listdir(output_dir)):
        match = _LEFTOVER_NAME.match(name)
        if match is None:
            continue
        path, target = os.path.join(output_dir, name), os.path.join(output_dir, match.group(1))
        if match.group(2) == "replaced" and not os.path.exists(target) and not missing_files(path):
            os.replace(path, target)
            notes.append(f"restored {match.group(1)} from {name}, left by a run killed while replacing it")
        else:
            shutil.rmtree(path, ignore_errors=True)
            notes.append(f"removed {name}, left by a run killed while writing a checkpoint")
    return notes


def prune_checkpoints(output_dir, total_limit):
    """Delete the oldest checkpoints so that at most `total_limit` remain; returns the deleted folders.

    Called after a new checkpoint is complete, so a failed save never costs the previous one.
    """
    if total_limit is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    removed = checkpoints[:max(len(checkpoints) - total_limit, 0)]
    for folder in removed:
        shutil.rmtree(folder)
    return removed


def is_disk_full(error, output_dir):
    """True when `error` (or one it came from) says the device is full, or when less than 1 MiB is left
    on it while the failed write still occupies its space: torch reports a full disk only as an
    "iostream error" or "file write failed"."""
    if shutil.disk_usage(output_dir).free < 2**20:
        return True
    while error is not None:
        text = str(error)
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left" in text or "StorageFull" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


def write_failure(error, output_dir, name):
    """A CheckpointWriteError that says what happened, where, and what is still there (call it before
    the half-written folder is removed, so that a full disk is still full)."""
    previous = [os.path.basename(p) for p in list_checkpoints(output_dir)]
    intact = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
    if is_disk_full(error, output_dir):
        free = shutil.disk_usage(output_dir).free / 2**20
        cause = f"no space left on the device that holds {output_dir} ({free:.1f} MiB free)"
    else:
        cause = f"{type(error).__name__}: {' '.join(str(error).splitlines()[:2])}"
    return CheckpointWriteError(f"could not write {name} in {output_dir}: {cause}; {intact} "
                                "(resume with --resume_from_checkpoint latest once the cause is fixed)")


def save_checkpoint(accelerator, output_dir, global_step, total_limit=None, training_args=None):
    """Save the full training state on every process, atomically, then prune; returns (path, removed).

    Every process calls `save_state` (accelerate writes the weights, optimizer and EMA once, on the main
    process, and one RNG-state file per process) into `.checkpoint-{step}.incomplete`; the main process
    adds `training_args` (a JSON-able record, see `read_training_args`), renames the folder into place,
    and only then deletes the oldest checkpoints beyond `total_limit`. Raises CheckpointWriteError.
    """
    name = f"{CHECKPOINT_PREFIX}{global_step}"
    path = os.path.join(output_dir, name)
    incomplete = os.path.join(output_dir, f".{name}.incomplete")
    if accelerator.is_main_process and os.path.exists(incomplete):
        shutil.rmtree(incomplete)  # left behind by a run that was killed while writing it
    accelerator.wait_for_everyone()
    removed = []
    try:
        accelerator.save_state(incomplete)
        if accelerator.is_main_process and training_args is not None:
            with open(os.path.join(incomplete, TRAINING_ARGS_FILE), "w", encoding="utf-8") as f:
                json.dump(training_args, f, indent=2, sort_keys=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if os.path.isdir(path):  # a checkpoint of the same step from an earlier attempt: replace it
                stale = os.path.join(output_dir, f".{name}.replaced")
                shutil.rmtree(stale, ignore_errors=True)  # one a killed run left: os.replace cannot overwrite it
                os.replace(path, stale)
                os.replace(incomplete, path)
                shutil.rmtree(stale)
            else:
                os.replace(incomplete, path)
            removed = prune_checkpoints(output_dir, total_limit)
    except Exception as error:
        # A peer that stopped answering is not a write failure: that error goes on as it is (distributed.py).
        failure = error if is_collective_timeout(error) else write_failure(error, output_dir, name)
        if accelerator.is_main_process:
            shutil.rmtree(incomplete, ignore_errors=True)
        if failure is error:
            raise
        raise failure from error
    accelerator.wait_for_everyone()
    return path, removed
