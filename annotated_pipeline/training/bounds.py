"""Bounds before work: a run that cannot fit in memory is refused before its first step, in one line.

The estimate for one process, in bytes, is

    parameters:   4 bytes x N x (1 weights + 1 gradient + 2 AdamW moments [+ 1 EMA])
    activations:  ACTIVATION_BYTES x B x sum over levels l of  dim * dim_mults[l] * (resolution / 2^l)^2

where the sum counts the feature-map values of one image at each level of the U-Net and ACTIVATION_BYTES
is what autograd keeps per such value in a forward and backward pass (utils/memory.py, which measured
it and holds the estimate sampling shares); --gradient_checkpointing keeps about a quarter of it. A run
whose estimate exceeds the memory of its device (the machine's RAM, times the processes on it, or the
GPU's memory) is refused, naming the numbers and what to lower.
"""

from ..utils.memory import TRAINING_BYTES_PER_VALUE as ACTIVATION_BYTES
from ..utils.memory import describe_memory, device_memory_bytes, feature_values, warn_if_short
from .args import TrainingConfigError


def training_memory_bytes(num_parameters, batch_size, resolution, dim, dim_mults, use_ema, gradient_checkpointing):
    """The estimate of the module docstring, for one process."""
    parameters = 4 * num_parameters * (4 + (1 if use_ema else 0))
    activations = ACTIVATION_BYTES * batch_size * feature_values(resolution, dim, dim_mults)
    if gradient_checkpointing:
        activations /= 4
    return parameters + activations


def check_memory(args, model, accelerator):
    """TrainingConfigError, before any step, when the run's estimated memory exceeds its device's."""
    num_parameters = sum(p.numel() for p in model.parameters())
    config = model.config
    dim_mults = tuple(config.dim_mults)
    need = training_memory_bytes(num_parameters, args.train_batch_size, args.resolution, config.dim, dim_mults,
                                 args.use_ema, args.gradient_checkpointing)
    processes = accelerator.num_processes if accelerator.device.type == "cpu" else 1  # CPU processes share the RAM
    have = device_memory_bytes(accelerator.device)
    if need * processes <= have:
        warn_if_short(need * processes, accelerator.device, "this run")
        return
    where = describe_memory(accelerator.device)
    raise TrainingConfigError(
        f"this run needs about {need * processes / 2**30:.1f} GiB ({num_parameters / 1e6:.1f} M parameters with AdamW"
        f"{' and EMA' if args.use_ema else ''}, and the activations of --train_batch_size {args.train_batch_size} "
        f"images at --resolution {args.resolution} with --dim {config.dim}, --dim_mults {','.join(map(str, dim_mults))}"
        f"{f' in {processes} processes' if processes > 1 else ''}), more than {where}: lower --train_batch_size "
        "(--gradient_accumulation_steps keeps the effective batch), --resolution or --dim, or pass --gradient_checkpointing")
