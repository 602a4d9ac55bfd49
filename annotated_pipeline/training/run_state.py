"""A checkpoint's training state, loaded without running any code from the folder.

`accelerator.save_state` writes the weights as safetensors but the optimizer, LR schedule and RNG states
with `torch.save` (pickles), and accelerate's own `load_state` unpickles the objects registered with
`register_for_checkpointing` with `weights_only=False`: a crafted `custom_checkpoint_0.pkl` runs its
payload on resume. So this module

  - writes what the run adds to accelerate's state as safetensors and JSON (a `save_state` pre-hook):

        noise_generator_{rank}.safetensors   each process's generator of t and eps (step.NoiseGenerator)
        ema.safetensors, ema.json            the EMA's shadow weights (by parameter name) and its counters
        posthoc_ema.safetensors              the power-function averages and their step, with --posthoc_ema_every

  - and loads every piece itself (`load_training_state`), instead of `accelerator.load_state`:
    safetensors for weights, `torch.load(..., weights_only=True)` for the optimizer, schedule, gradient
    scaler and RNG states. A pickle that needs more than tensors and plain containers (one that could
    run code) is refused with one line, `UnsafeCheckpointError`, before anything is loaded, unless the
    folder is trusted (--trust_checkpoint). Checkpoints written before this module (the generator and
    EMA in `custom_checkpoint_0.pkl`, `_1.pkl`) load the same way, with `weights_only=True`.
"""

import json
import os
import pickle
import random

import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils.other import TORCH_SAFE_GLOBALS
from safetensors.torch import load_file, load_model, save_file

from .args import TrainingConfigError
from .posthoc_ema import STATE_FILE as POSTHOC_EMA_STATE

logger = get_logger(__name__)

EMA_WEIGHTS = "ema.safetensors"
EMA_COUNTERS = "ema.json"
NOISE_GENERATOR = "noise_generator_{rank}.safetensors"
LEGACY_NOISE_GENERATOR = "custom_checkpoint_0.pkl"  # written by accelerate's register_for_checkpointing
LEGACY_EMA = "custom_checkpoint_1.pkl"


class UnsafeCheckpointError(TrainingConfigError):
    """A checkpoint file would need a full (code-running) unpickle, and the folder is not trusted."""


def load_pickle(path, trust=False):
    """`torch.load(path, weights_only=True)` (tensors, numbers, strings, containers, and the numpy arrays of
    the RNG states); a file that needs more is refused with UnsafeCheckpointError, or, when `trust`,
    loaded with `weights_only=False` after a warning."""
    try:
        with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            raise UnsafeCheckpointError(
                f"{path} is a pickle that can run code when loaded (it holds more than tensors and numbers), so "
                "it was not loaded; resume only from checkpoints you trust, and pass --trust_checkpoint if this "
                "folder is one (you wrote it)") from None
        logger.warning(f"Loading {path} with full unpickling (--trust_checkpoint)")
        return torch.load(path, map_location="cpu", weights_only=False)


def register_run_state(accelerator, noise_generator, ema, posthoc=None):
    """Make every `accelerator.save_state(folder)` also write the noise generator (every process), the
    EMA and the post-hoc EMA's averages (main process) into `folder` as safetensors and JSON; returns the
    hook's handle."""

    def save_run_state(models, weights, output_dir):
        rank = accelerator.process_index
        save_file({"rng_state": noise_generator.generator.get_state()},
                  os.path.join(output_dir, NOISE_GENERATOR.format(rank=rank)))
        if posthoc is not None and accelerator.is_main_process:
            posthoc.save(os.path.join(output_dir, POSTHOC_EMA_STATE))
        if ema is None or not accelerator.is_main_process:
            return
        names = [name for name, _ in accelerator.unwrap_model(models[0]).named_parameters()]
        state = ema.state_dict()
        shadow = state.pop("shadow_params")
        save_file({name: p.detach().contiguous().cpu() for name, p in zip(names, shadow, strict=True)},
                  os.path.join(output_dir, EMA_WEIGHTS))
        with open(os.path.join(output_dir, EMA_COUNTERS), "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)

    return accelerator.register_save_state_pre_hook(save_run_state)


def _read_ema(path, parameter_names, trust):
    """EMAModel.state_dict() of checkpoint `path`: from ema.safetensors + ema.json, or the legacy pickle."""
    if os.path.isfile(os.path.join(path, EMA_WEIGHTS)):
        shadow = load_file(os.path.join(path, EMA_WEIGHTS))
        missing = [name for name in parameter_names if name not in shadow]
        if missing or len(shadow) != len(parameter_names):
            raise TrainingConfigError(f"{path}/{EMA_WEIGHTS} does not hold this model's parameters "
                                      f"(e.g. no {missing[0] if missing else 'match'}); was it saved with the same model arguments?")
        with open(os.path.join(path, EMA_COUNTERS), encoding="utf-8") as f:
            state = json.load(f)
        return {**state, "shadow_params": [shadow[name] for name in parameter_names]}
    if os.path.isfile(os.path.join(path, LEGACY_EMA)):
        return load_pickle(os.path.join(path, LEGACY_EMA), trust)
    raise TrainingConfigError(f"{path} holds no EMA state ({EMA_WEIGHTS}): it was trained without --use_ema; "
                              "resume without --use_ema, or start a new run")


def _read_noise_generator(path, rank, trust):
    new = os.path.join(path, NOISE_GENERATOR.format(rank=rank))
    if os.path.isfile(new):
        return {"rng_state": load_file(new)["rng_state"]}
    legacy = os.path.join(path, LEGACY_NOISE_GENERATOR)  # the main process's stream, for every process
    if os.path.isfile(legacy):
        return load_pickle(legacy, trust)
    raise TrainingConfigError(f"{path} has no {NOISE_GENERATOR.format(rank=rank)}: was it written by "
                              "as many processes as this run has?")


def read_training_state(path, rank, parameter_names, use_ema, has_scaler, trust=False):
    """Every piece of checkpoint `path` this process needs, read and checked before any is applied:
    {"optimizer", "scheduler", "rng", "noise_generator", "ema" (or None), "scaler" (or None)}."""
    def pickle_at(name):
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise TrainingConfigError(f"{path} is not a complete checkpoint (it has no {name})")
        return load_pickle(file, trust)

    return {
        "optimizer": pickle_at("optimizer.bin"),
        "scheduler": pickle_at("scheduler.bin"),
        "rng": pickle_at(f"random_states_{rank}.pkl"),
        "scaler": pickle_at("scaler.pt") if has_scaler else None,
        "noise_generator": _read_noise_generator(path, rank, trust),
        "ema": _read_ema(path, parameter_names, trust) if use_ema else None,
    }


def _set_rng_states(states):
    """Python's, numpy's, torch's and the accelerator's global RNG states, as accelerate saved them."""
    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    if torch.cuda.is_available() and "torch_cuda_manual_seed" in states:
        torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])


def load_training_state(accelerator, path, model, optimizer, lr_scheduler, noise_generator, ema, trust=False,
                        posthoc=None):
    """Restore the run from checkpoint `path`: weights theta (model.safetensors), AdamW, the LR schedule,
    the gradient scaler, every global RNG, the noise generator, the EMA and the post-hoc EMA's averages;
    nothing runs code from the folder unless `trust` (see `load_pickle`)."""
    if posthoc is not None and not os.path.isfile(os.path.join(path, POSTHOC_EMA_STATE)):
        raise TrainingConfigError(f"{path} holds no post-hoc EMA state ({POSTHOC_EMA_STATE}): it was trained without "
                                  "--posthoc_ema_every, and an average started part-way is not a power-function one; "
                                  "resume without --posthoc_ema_every, or start a new run")
    unwrapped = accelerator.unwrap_model(model)
    names = [name for name, _ in unwrapped.named_parameters()]
    state = read_training_state(path, accelerator.process_index, names, ema is not None,
                                accelerator.scaler is not None, trust)
    weights = os.path.join(path, "model.safetensors")
    if os.path.isfile(weights):
        load_model(unwrapped, weights, device="cpu")  # saved unwrapped (no DDP "module." prefix); copied onto the parameters' devices
    else:  # accelerate's save_state(safe_serialization=False): a pickle, read as weights only
        unwrapped.load_state_dict(load_pickle(os.path.join(path, "pytorch_model.bin"), trust))
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["scheduler"])
    if state["scaler"] is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    if "step" in state["rng"]:
        accelerator.step = state["rng"]["step"]
    _set_rng_states(state["rng"])
    noise_generator.load_state_dict(state["noise_generator"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
        ema.to(accelerator.device)
    if posthoc is not None:
        posthoc.load(os.path.join(path, POSTHOC_EMA_STATE))
