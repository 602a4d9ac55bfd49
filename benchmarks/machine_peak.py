"""This machine's matmul peak, the precision training runs in, and the processor's name to print beside both.

    python benchmarks/machine_peak.py                 # the peak of the training precision, and of fp32
    python benchmarks/machine_peak.py --size 4096

The peak is what one large square matmul C = A B (n x n x n, 2 n^3 FLOPs: n^2 dot products of
length n, one multiply and one add each) achieves, the best of a few repetitions: a practical ceiling
for this machine in that precision, not the vendor's datasheet number. The FLOPs are counted by
torch.utils.flop_counter.FlopCounterMode, the same counter that counts the training step, so the
two sides of "achieved / peak" come from one counter.

The precision a step trains in: bf16 where the hardware multiplies bf16 natively (CPU: the
avx512_bf16 or amx_bf16 flag in /proc/cpuinfo; CUDA: torch.cuda.is_bf16_supported()), fp32
elsewhere (an AVX2-only CPU emulates bf16, slower than fp32). torch.backends.cpu.get_cpu_capability()
names the vector ISA torch's kernels were dispatched for ("AVX512", "AVX2", ...); it does not say
whether bf16 is native, so the processor is described by both.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from annotated_pipeline.utils.hardware import bf16_is_native

PRECISIONS = ("fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, set of flags) of the first processor in /proc/cpuinfo; ("", set()) where there is none."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name, flags


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run in hardware (see the module docstring) and torch may use those instructions
    (not capped by ATEN_CPU_CAPABILITY or ONEDNN_MAX_CPU_ISA: annotated_pipeline/utils/hardware.py)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    _, flags = _cpuinfo()
    return any(flag in flags for flag in NATIVE_BF16_FLAGS) and bf16_is_native("cpu")


def training_precision(device: torch.device) -> str:
    """"bf16" where native, else "fp32": the precision a step on this machine should train in."""
    return "bf16" if native_bf16(device) else "fp32"


def processor(device: torch.device) -> str:
    """The processor, as every number is labelled: e.g. "AMD EPYC, capability AVX512, native bf16"."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {'native' if native_bf16(device) else 'no native'} bf16"
    import platform

    name, _ = _cpuinfo()
    name = name or platform.processor() or platform.machine()
    bf16 = "native bf16" if native_bf16(device) else "bf16 emulated"
    return f"{name}, capability {torch.backends.cpu.get_cpu_capability()}, {bf16}"


def count_flops(fn) -> int:
    """The FLOPs torch.utils.flop_counter.FlopCounterMode counts while `fn()` runs."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, precision: str, size: int = 2048, repeats: int = 5) -> dict:
    """Best FLOP/s of `repeats` timed (size x size) @ (size x size) matmuls in `precision`, after one warm-up.

    Returns {"precision", "size", "flops" (per matmul, counted), "seconds" (the fastest), "flops_per_s",
    "processor"}."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be >= 1, got {size}, {repeats}")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, DTYPES[precision])
    b = torch.randn(size, size, generator=generator).to(device, DTYPES[precision])
    flops = count_flops(lambda: a @ b)
    a @ b  # warm-up: kernel choice, first-touch of the output
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return {"precision": precision, "size": size, "flops": flops, "seconds": best, "flops_per_s": flops / best,
            "processor": processor(device)}


def fraction_of_peak(device: torch.device, achieved: dict, size: int = 2048, repeats: int = 5) -> tuple[list, list]:
    """Each achieved FLOP/s against the matmul peak of its precision, measured now.

    achieved: {(who, precision): FLOP/s}. Returns (lines to print, rows for JSON); every line names the
    processor, and the precision training runs on this machine is marked."""
    trains_in = training_precision(device)
    peaks = {p: matmul_peak(device, p, size, repeats) for p in dict.fromkeys(p for _, p in achieved)}
    name = processor(device)
    lines = [f"achieved FLOP/s of the training step as a share of this machine's matmul peak [{name}]:"]
    rows = []
    for p, peak in peaks.items():
        mark = " (the precision training runs in here)" if p == trains_in else ""
        lines.append(f"  {p} matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({size}^3, best of {repeats})"
                     f"{mark}  [{name}]")
        for (who, q), flops_per_s in achieved.items():
            if q != p:
                continue
            share = flops_per_s / peak["flops_per_s"]
            lines.append(f"    {who:10s} {flops_per_s / 1e9:8.3g} GFLOP/s = {100 * share:.3g}% of the {p} peak  [{name}]")
            rows.append({"who": who, "precision": p, "achieved_flops_per_s": flops_per_s,
                         "peak_flops_per_s": peak["flops_per_s"], "fraction": share, "peak_size": size,
                         "training_precision": p == trains_in, "processor": name})
    return lines, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=2048, help="n of the n x n x n matmul")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    trains_in = training_precision(device)
    for precision in dict.fromkeys((trains_in, "fp32")):
        peak = matmul_peak(device, precision, args.size, args.repeats)
        print(f"{precision} matmul peak {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({args.size}^3, best of {args.repeats})"
              f"{'  <- the precision training runs in' if precision == trains_in else ''}  [{peak['processor']}]")


if __name__ == "__main__":
    main()
