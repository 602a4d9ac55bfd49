"""Training checkpoints: folders `output_dir/checkpoint-{global_step}` written by `accelerator.save_state`.

A checkpoint holds everything needed to continue a run as if it had never stopped:

    model.safetensors          the training weights theta
    optimizer.bin              AdamW's moments and step count
    scheduler.bin              the learning-rate schedule's position
    custom_checkpoint_0.pkl    the generator that draws t and eps (loop.NoiseGenerator)
    custom_checkpoint_1.pkl    the EMA of the weights, with --use_ema
    random_states_{rank}.pkl   every process's global RNG state (random crops and flips)

The global step (number of optimizer steps taken) is the number in the folder's name, as in
diffusers' training examples. The data position follows from it: the loop skips the batches of
the current epoch that were already used (`accelerator.skip_first_batches`).
"""

import os
import re
import shutil

CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path):
    """The global step of a checkpoint folder, read from its name `checkpoint-{step}`."""
    match = _CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(path)))
    if match is None:
        raise ValueError(f"{path!r} is not a checkpoint folder (expected a name like checkpoint-500)")
    return int(match.group(1))


def list_checkpoints(output_dir):
    """Checkpoint folders in `output_dir`, oldest (smallest step) first; [] if there are none."""
    if not os.path.isdir(output_dir):
        return []
    names = [name for name in os.listdir(output_dir)
             if _CHECKPOINT_NAME.match(name) and os.path.isdir(os.path.join(output_dir, name))]
    return [os.path.join(output_dir, name) for name in sorted(names, key=checkpoint_step)]


def resolve_checkpoint(output_dir, resume_from_checkpoint):
    """The folder to resume from: the newest in `output_dir` for "latest", else the given path.

    Returns None for "latest" when `output_dir` holds no checkpoint yet (a fresh run starts), and
    raises ValueError for an explicit path that is not a checkpoint folder.
    """
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = resume_from_checkpoint
    if not os.path.isdir(path) and os.path.isdir(os.path.join(output_dir, path)):
        path = os.path.join(output_dir, path)  # a bare name such as "checkpoint-500"
    if not os.path.isdir(path):
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r}: no such folder")
    checkpoint_step(path)  # raises for a folder that is not named checkpoint-STEP
    return path


def prune_checkpoints(output_dir, total_limit):
    """Delete the oldest checkpoints so that, after the next one is saved, at most `total_limit` remain.

    Pruning happens before saving (as diffusers' examples do), so the disk never holds more than
    `total_limit` checkpoints. Returns the deleted folders.
    """
    if total_limit is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    excess = len(checkpoints) - (total_limit - 1)
    removed = checkpoints[:max(excess, 0)]
    for folder in removed:
        shutil.rmtree(folder)
    return removed


def save_checkpoint(accelerator, output_dir, global_step, total_limit=None):
    """Prune (main process), then save the full training state on every process.

    Every process calls `save_state`: accelerate writes the weights, optimizer and EMA once (main
    process) and one RNG-state file per process.
    """
    removed = []
    if accelerator.is_main_process:
        removed = prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    path = os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{global_step}")
    accelerator.save_state(path)
    accelerator.wait_for_everyone()
    return path, removed
