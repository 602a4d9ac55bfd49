"""Checkpoints that are models: every `checkpoint-N/` also holds its weights as diffusers folders.

Beside accelerate's state (checkpointing.py), the main process writes, inside the incomplete folder
and so before the rename that makes the checkpoint visible,

    unet/        the training weights theta       (AnnotatedUNet2DModel.save_pretrained: config.json + safetensors)
    unet_ema/    the EMA weights theta_ema, with --use_ema
    scheduler/   the noise scheduler's config    (scheduler_config.json)

as diffusers' training examples do (`accelerator.register_save_state_pre_hook`). Any of them loads
with `from_pretrained`, so a checkpoint can be sampled, evaluated, exported (export.py) or fine-tuned
from without the training code. Resuming still reads accelerate's `model.safetensors`; a checkpoint
written before these folders existed resumes as before, it just cannot be used as a model.
"""

import os

from .checkpointing import CHECKPOINT_PREFIX, checkpoint_step, missing_files
from .outputs import ema_weights

UNET_FOLDER = "unet"
EMA_FOLDER = "unet_ema"
SCHEDULER_FOLDER = "scheduler"


def register_model_folders(accelerator, noise_scheduler, ema):
    """Make every `accelerator.save_state(folder)` also write unet/, unet_ema/ (if `ema`) and scheduler/
    into `folder`, on the main process; returns the hook's handle."""

    def save_model_folders(models, weights, output_dir):
        if not accelerator.is_main_process:
            return
        unet = accelerator.unwrap_model(models[0])
        unet.save_pretrained(os.path.join(output_dir, UNET_FOLDER))
        if ema is not None:
            with ema_weights(unet, ema):  # theta_ema for the write, then theta back exactly (a stored copy)
                unet.save_pretrained(os.path.join(output_dir, EMA_FOLDER))
        noise_scheduler.save_pretrained(os.path.join(output_dir, SCHEDULER_FOLDER))

    return accelerator.register_save_state_pre_hook(save_model_folders)


def looks_like_checkpoint(path):
    """True for a folder named like a checkpoint (`checkpoint-N` or a half-written `.checkpoint-N.incomplete`)."""
    name = os.path.basename(os.path.normpath(str(path)))
    return os.path.isdir(path) and (name.startswith(CHECKPOINT_PREFIX) or name.startswith(f".{CHECKPOINT_PREFIX}"))


def model_folder(path, ema=None):
    """The sub-folder of checkpoint `path` that holds the U-Net to use: unet_ema/ where the checkpoint has
    one (ema None or True), unet/ with ema=False. ValueError, saying why, for a folder that is not a
    complete checkpoint, for one written before checkpoints held models, and for ema=True without EMA."""
    path = os.fspath(path)
    name = os.path.basename(os.path.normpath(path))
    if name.startswith(f".{CHECKPOINT_PREFIX}") and name.endswith(".incomplete"):
        raise ValueError(f"{path} is an incomplete checkpoint (a run stopped while writing it); use a complete "
                         "checkpoint-N folder")
    checkpoint_step(path)  # ValueError for a name that is not checkpoint-N
    missing = missing_files(path)
    if missing:
        raise ValueError(f"{path} is not a complete checkpoint (it has no {', '.join(missing)})")
    if not os.path.isfile(os.path.join(path, UNET_FOLDER, "config.json")):
        raise ValueError(f"{path} holds no {UNET_FOLDER}/ folder: it was written before checkpoints held their "
                         "weights as models; resume the run from it and the next checkpoint will")
    has_ema = os.path.isfile(os.path.join(path, EMA_FOLDER, "config.json"))
    if ema and not has_ema:
        raise ValueError(f"{path} has no EMA weights (the run was trained without --use_ema); use --no-ema")
    return os.path.join(path, EMA_FOLDER if has_ema and ema is not False else UNET_FOLDER)


def load_checkpoint_models(path, ema=None):
    """(unet, scheduler) of checkpoint `path`: the U-Net of `model_folder(path, ema)` and the noise scheduler."""
    from ..scheduler import AnnotatedDDPMScheduler
    from ..unet import AnnotatedUNet2DModel

    unet = AnnotatedUNet2DModel.from_pretrained(model_folder(path, ema), use_safetensors=True)
    scheduler = AnnotatedDDPMScheduler.from_pretrained(os.path.join(os.fspath(path), SCHEDULER_FOLDER))
    return unet, scheduler
