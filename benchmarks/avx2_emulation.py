"""How fast fp32 and bf16 matmuls and convolutions run here, to judge an emulated AVX2 machine (issue 33).

    python benchmarks/avx2_emulation.py                                        # this CPU as it is
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/avx2_emulation.py   # capped at AVX2

The two variables are read once, when torch is imported: ATEN_CPU_CAPABILITY caps the vector level of
ATen's own kernels (elementwise, reductions, its fallback gemm), ONEDNN_MAX_CPU_ISA the instructions
oneDNN may use (torch's mkldnn convolutions and bf16 matmuls). MKL's fp32 gemm has its own cap,
MKL_ENABLE_INSTRUCTIONS. None of them changes what cpuinfo reports, so torch may still route bf16 to
oneDNN as it would on a CPU with AVX-512 BF16; this script measures what that gives, it does not assume.

Each operation: one warm-up, then the best of `--repeats` timed calls; FLOPs are 2 m n k for a matmul
and 2 N C_out H W C_in k^2 for a convolution (stride 1, padded to the same size).
"""

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def best_seconds(fn, repeats):
    """The fastest of `repeats` timed calls of `fn`, after one untimed call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(dtype, size, repeats):
    """GFLOP/s of a (size x size) @ (size x size) matmul."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats) / 1e9


def conv_gflops(dtype, batch, channels, side, repeats, kernel=3):
    """GFLOP/s of a 3x3 convolution, channels -> channels on batch x channels x side x side (the U-Net's shape)."""
    x = torch.randn(batch, channels, side, side).to(dtype)
    w = torch.randn(channels, channels, kernel, kernel).to(dtype)
    flops = 2 * batch * channels * side * side * channels * kernel * kernel
    with torch.no_grad():
        return flops / best_seconds(lambda: F.conv2d(x, w, padding=kernel // 2), repeats) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="n of the n x n x n matmul")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="append the row as one JSON line to this file")
    args = parser.parse_args(argv)
    row = {"caps": {name: os.environ.get(name) for name in CAPS if os.environ.get(name)},
           "aten_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "loadavg_1min": os.getloadavg()[0]}
    for name, dtype in DTYPES.items():
        row[f"matmul_{name}"] = matmul_gflops(dtype, args.size, args.repeats)
        row[f"conv_{name}"] = conv_gflops(dtype, args.batch, args.channels, args.side, args.repeats)
    row["loadavg_1min_after"] = os.getloadavg()[0]
    caps = ", ".join(f"{k}={v}" for k, v in row["caps"].items()) or "no caps"
    print(f"[{caps}; ATen {row['aten_capability']}, {row['threads']} threads, load {row['loadavg_1min']:.2f}"
          f"->{row['loadavg_1min_after']:.2f}] GFLOP/s: matmul {args.size}^3 fp32 {row['matmul_fp32']:.2f}, "
          f"bf16 {row['matmul_bf16']:.2f} ({row['matmul_fp32'] / row['matmul_bf16']:.1f}x slower); conv 3x3 "
          f"{args.batch}x{args.channels}x{args.side}^2 fp32 {row['conv_fp32']:.2f}, bf16 {row['conv_bf16']:.2f} "
          f"({row['conv_fp32'] / row['conv_bf16']:.1f}x slower)")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
