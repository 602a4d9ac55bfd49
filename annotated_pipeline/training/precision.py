"""The precision and the CPU threads of a training run, chosen by the hardware (annotated_pipeline/utils/hardware.py).

    --mixed_precision auto   the launcher's bf16 or fp16 (`accelerate launch --mixed_precision bf16` sets
                             ACCELERATE_MIXED_PRECISION), else bf16 where the device runs it natively, else
                             "no" (fp32). An explicit bf16 where bf16 is emulated warns once with its cost.

Threads: each process on a CPU gets at most its share of the physical cores (`threads_per_process`), so
that N processes on a small machine do not run N times torch's default thread count and wait on each other.
"""

import os

import torch

from ..utils.hardware import bf16_is_native, default_device, resolve_precision, threads_per_process


def accelerate_mixed_precision(requested: str, device=None) -> str:
    """Accelerate's `mixed_precision` ("no", "fp16", "bf16") for --mixed_precision `requested`."""
    device = default_device() if device is None else device
    if requested == "auto":
        launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
        if launched in ("bf16", "fp16"):
            requested = launched  # the launcher was told: honour it (and warn below if bf16 is emulated)
        else:
            return "bf16" if bf16_is_native(device) else "no"
    if requested == "bf16":
        resolve_precision("bf16", device)  # warns once where bf16 is emulated
    return requested


def fit_threads(num_local_processes: int) -> tuple[int, int]:
    """Lower torch's CPU threads to this process's share of the cores where it uses more; returns (before, after)."""
    before = torch.get_num_threads()
    share = threads_per_process(num_local_processes)
    if before > share:
        torch.set_num_threads(share)
    return before, torch.get_num_threads()
