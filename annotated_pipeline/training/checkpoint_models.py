"""Checkpoints that are models: every `checkpoint-N/` also holds its weights as diffusers folders.

Beside accelerate's state (checkpointing.py), the main process writes, inside the incomplete folder
and so before the rename that makes the checkpoint visible,

    unet/        the training weights theta       (AnnotatedUNet2DModel.save_pretrained: config.json + safetensors)
    unet_ema/    the EMA weights theta_ema, with --use_ema
    scheduler/   the noise scheduler's config    (scheduler_config.json)

as diffusers' training examples do (`accelerator.register_save_state_pre_hook`). Any of them loads
with `from_pretrained`, so a checkpoint can be sampled, evaluated, exported (commands/export.py; read by annotated_pipeline/checkpoints.py) or fine-tuned
from without the training code. Resuming still reads accelerate's `model.safetensors`; a checkpoint
written before these folders existed resumes as before, it just cannot be used as a model.
"""

import os

from ..checkpoints import (EMA_FOLDER, SCHEDULER_FOLDER, UNET_FOLDER, load_checkpoint_models,  # noqa: F401
                           looks_like_checkpoint, model_folder)
from .outputs import ema_weights

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
