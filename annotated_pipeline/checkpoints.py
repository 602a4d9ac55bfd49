"""A training checkpoint read back: `checkpoint-N/` as models, and the one loader every command uses.

A checkpoint (written by training/checkpointing.py) holds the run's state and, beside it, its weights as
diffusers folders:

    unet/        the training weights theta       (config.json + safetensors)
    unet_ema/    the EMA weights theta_ema, with --use_ema
    scheduler/   the noise scheduler's config
    training_args.json   the arguments the run was trained with

`load_pipeline` takes what a user may name (a pipeline object, a saved folder, a Hub repo id or a
checkpoint) and gives a pipeline: `sample`, `evaluate`, `nearest`, `export` and the figures read through it.
Weights load from safetensors only. This module imports the models and the pipeline, never training code.
"""

import json
import os
import re

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_ARGS_FILE = "training_args.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
# What every complete checkpoint holds, whatever the run's options (one of the weight files).
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_REQUIRED_FILES = ("optimizer.bin", "scheduler.bin", "random_states_0.pkl")


UNET_FOLDER = "unet"
EMA_FOLDER = "unet_ema"
SCHEDULER_FOLDER = "scheduler"




def checkpoint_step(path):
    """The global step of a checkpoint folder, read from its name `checkpoint-{step}`."""
    match = _CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(path)))
    if match is None:
        raise ValueError(f"{path!r} is not a checkpoint folder (expected a name like checkpoint-500)")
    return int(match.group(1))


def missing_files(path):
    """The files a complete checkpoint has and `path` lacks ([] for a complete one)."""
    present = set(os.listdir(path))
    missing = [name for name in _REQUIRED_FILES if name not in present]
    if not present.intersection(_WEIGHT_FILES):
        missing.insert(0, _WEIGHT_FILES[0])
    return missing


def list_checkpoints(output_dir):
    """Checkpoint folders in `output_dir`, oldest (smallest step) first; [] if there are none."""
    if not os.path.isdir(output_dir):
        return []
    names = [name for name in os.listdir(output_dir)
             if _CHECKPOINT_NAME.match(name) and os.path.isdir(os.path.join(output_dir, name))]
    return [os.path.join(output_dir, name) for name in sorted(names, key=checkpoint_step)]


def read_training_args(path):
    """The record `save_checkpoint` wrote into a checkpoint: {"args": {...}, "changes": [...]}, or None."""
    file = os.path.join(path, TRAINING_ARGS_FILE)
    if not os.path.isfile(file):
        return None
    with open(file, encoding="utf-8") as f:
        return json.load(f)


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
    from .scheduler import AnnotatedDDPMScheduler
    from .unet import AnnotatedUNet2DModel

    unet = AnnotatedUNet2DModel.from_pretrained(model_folder(path, ema), use_safetensors=True)
    scheduler = AnnotatedDDPMScheduler.from_pretrained(os.path.join(os.fspath(path), SCHEDULER_FOLDER))
    return unet, scheduler


def pipeline_from_checkpoint(path, ema=None):
    """An `AnnotatedDDPMPipeline` from training checkpoint `path` (a `checkpoint-N` folder).

    ema: None (default) the EMA weights where the checkpoint has them, else the training weights;
    True the EMA weights (ValueError if the run kept none); False the training weights.
    """
    from .pipelines.pipeline import AnnotatedDDPMPipeline

    unet, scheduler = load_checkpoint_models(path, ema)
    return AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler)


def load_pipeline(pipeline_or_path, ema=None):
    """What `sample` and `evaluate` load: a pipeline object as it is, a training checkpoint folder through
    `pipeline_from_checkpoint`, a saved pipeline folder or Hub repo id through
    `AnnotatedDDPMPipeline.from_pretrained`."""
    if not isinstance(pipeline_or_path, (str, os.PathLike)):
        if not callable(pipeline_or_path) or not hasattr(pipeline_or_path, "scheduler"):
            raise ValueError(f"expected a diffusers pipeline, a local path or a repo id, got {type(pipeline_or_path)}")
        return pipeline_or_path
    path = os.fspath(pipeline_or_path)
    if looks_like_checkpoint(path):
        return pipeline_from_checkpoint(path, ema)
    from .pipelines.pipeline import AnnotatedDDPMPipeline

    return AnnotatedDDPMPipeline.from_pretrained(path)
