"""What keeps a training run from losing its work or saving a broken model.

    check_output_dir(path)              before the first step: the output folder exists and takes files
    changed_args(recorded, current)     before resuming: the checkpoint was trained with these arguments
    check_finite(step, loss=, grad_norm=)   every step: a non-finite loss or gradient norm stops the run
    all_finite(parameters)              before any save: no checkpoint, pipeline or grid from NaN weights
    refuse_diverged_weights(...)        before a checkpoint: finite weights, EMA and a short seeded sample

A run that diverges raises `TrainingDiverged` at the step where it happened, naming the last good
checkpoint; nothing is written from the broken weights, and no checkpoint is pruned in their favour.
"""

import math
import os
import tempfile

import torch

from .args import TrainingConfigError
from .checkpointing import list_checkpoints, missing_files

# Arguments that may differ between a checkpoint and the run that resumes it: how long the run goes,
# where it writes and what it logs, never what it learns. Every other argument must match.
RESUMABLE_ARGS = frozenset({
    "max_train_steps", "num_epochs", "output_dir", "logging_dir", "logger", "resume_from_checkpoint",
    "accept_changed_args", "trust_checkpoint", "overwrite_output_dir", "resumed_with_changes", "checkpointing_steps", "checkpoints_total_limit",
    "save_images_epochs", "save_model_epochs", "eval_batch_size", "ddpm_num_inference_steps", "grid_scheduler",
    "dataloader_num_workers", "cache_dir", "ddp_timeout", "push_to_hub", "hub_model_id", "hub_private_repo",
    "hub_token", "mixed_precision", "gradient_checkpointing",
    "eval_steps", "eval_num_samples", "eval_classifier", "eval_reference", "save_best",  # training/quality.py
})


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became non-finite; the run stopped before saving anything from them."""


def check_output_dir(output_dir):
    """Create `output_dir` if needed and write a probe file into it: an unwritable folder is found now,
    not at the first save after all the training."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise TrainingConfigError(f"--output_dir {output_dir!r} cannot be written: {error.strerror or error}") from None


def changed_args(recorded, current):
    """{name: (recorded value, current value)} for the arguments outside RESUMABLE_ARGS that differ.
    Both are JSON-able dicts (`args.args_for_model_card`); a name missing on one side counts as None."""
    names = (set(recorded) | set(current)) - RESUMABLE_ARGS - {"global_step"}
    return {name: (recorded.get(name), current.get(name)) for name in sorted(names)
            if recorded.get(name) != current.get(name)}


def describe_changes(changes):
    """'--learning_rate 0.0001 -> 0.001, --label_column None -> label'"""
    return ", ".join(f"--{name} {old} -> {new}" for name, (old, new) in changes.items())


def last_good_checkpoint(output_dir):
    """The newest complete checkpoint in `output_dir`, as words for a message."""
    complete = [path for path in list_checkpoints(output_dir) if not missing_files(path)]
    return f"the last good checkpoint is {complete[-1]}" if complete else "no checkpoint was saved before it"


def check_finite(step, output_dir, loss=None, grad_norm=None):
    """Raise TrainingDiverged if the step's loss or gradient norm (Python floats, when given) is NaN or inf.

    Called before the optimizer applies the step, so the weights are still those of step - 1."""
    for name, value in (("loss", loss), ("gradient norm", grad_norm)):
        if value is not None and not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged at step {step}: the {name} is {value}; {last_good_checkpoint(output_dir)}. "
                f"Nothing was saved from the diverged weights. {_advice(output_dir)}"
            )


def all_finite(parameters):
    """True when every parameter tensor is free of NaN and inf."""
    return all(bool(torch.isfinite(p).all()) for p in parameters)


def refuse_non_finite_weights(model, step, output_dir, what):
    """Raise TrainingDiverged instead of writing `what` (a checkpoint, the pipeline) from NaN/inf weights."""
    if not all_finite(model.parameters()):
        raise TrainingDiverged(
            f"training diverged by step {step}: the weights hold NaN or inf, so {what} was not written; "
            f"{last_good_checkpoint(output_dir)}. {_advice(output_dir)}"
        )


def sample_is_finite(model, noise_scheduler, seed=0, num_inference_steps=2):
    """True when a short seeded sample from `model` (one image, `num_inference_steps` steps of the run's
    scheduler, Ho et al. 2020, Algorithm 2) is free of NaN and inf. Weights blown up by a too-high rate
    stay finite and keep a finite loss for a while, yet sample nothing but NaN."""
    from ..pipelines.pipeline import NonFiniteSampleError
    from .outputs import make_pipeline

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            make_pipeline(model, noise_scheduler)(batch_size=1, num_inference_steps=num_inference_steps,
                                                  generator=torch.Generator().manual_seed(seed), output_type="pt")
        return True
    except NonFiniteSampleError:
        return False
    finally:
        model.train(was_training)


def refuse_diverged_weights(model, noise_scheduler, step, output_dir, what, ema=None):
    """Raise TrainingDiverged instead of writing `what` (a checkpoint) from weights that hold NaN or inf, an
    EMA that does, or weights whose short seeded sample does (`sample_is_finite`)."""
    refuse_non_finite_weights(model, step, output_dir, what)
    if ema is not None and not all_finite(ema.shadow_params):
        raise TrainingDiverged(f"training diverged by step {step}: the EMA weights hold NaN or inf, so {what} was not "
                               f"written; {last_good_checkpoint(output_dir)}. {_advice(output_dir)}")
    if not sample_is_finite(model, noise_scheduler):
        raise TrainingDiverged(
            f"training diverged by step {step}: the weights are finite but a short seeded sample from them holds "
            f"NaN or inf, so {what} was not written and no checkpoint was pruned; {last_good_checkpoint(output_dir)}. "
            f"{_advice(output_dir)}")


def _advice(output_dir):
    if any(not missing_files(path) for path in list_checkpoints(output_dir)):
        return ("Lower --learning_rate (or --max_grad_norm) and resume with --resume_from_checkpoint latest "
                "--accept_changed_args")
    return "Lower --learning_rate (or --max_grad_norm) and start again"
