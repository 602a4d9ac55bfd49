"""What this machine computes fast: the precision every command defaults to, and how many threads.

bfloat16 halves the bytes of every activation and, where the processor has bf16 instructions, doubles
the arithmetic rate. Where it has none, torch emulates bf16 with float32 conversions around every
operation, and the same work runs one to two orders of magnitude slower (a 2-core AVX2 EPYC: 0.28
GFLOP/s for a bf16 matmul against 32.6 in float32, issue #33). So the precision follows the hardware:

    "auto"  bf16 where it is native, fp32 elsewhere (the default of every command)
    "bf16"  bf16, with one warning that states the measured cost where it is emulated
    "fp32"  float32

Native bf16 means:
    CPU, x86-64   AVX512-BF16 or AMX-BF16 (`torch.cpu.get_capabilities()`, torch's cpuinfo: "avx512_bf16",
                  "amx_bf16"). `torch.backends.cpu.get_cpu_capability()` names only ATen's vector dispatch
                  level ("AVX2", "AVX512"), which says nothing about bf16: an AVX-512 CPU without BF16
                  reports "AVX512" too.
    CPU, arm64    the BF16 extension ("bf16", "sve_bf16")
    CUDA          `torch.cuda.is_bf16_supported()` (Ampere and newer)
"""

import contextlib
import functools
import logging
import os
import time
from typing import Literal, get_args

import torch

logger = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS = get_args(Precision)
PRECISION_HELP = ("auto: bf16 where the processor has bf16 instructions (AVX512-BF16, AMX, Arm BF16, a bf16 GPU), "
                  "fp32 elsewhere; bf16 on a processor that only emulates it is ~100x slower and says so")

# torch.cpu.get_capabilities() keys whose presence makes bf16 matmuls and convolutions native.
BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
KNOWN_EMULATION_SLOWDOWN = 100  # issue #33's AVX2 EPYC: 32.6 / 0.28 GFLOP/s


def cpu_capabilities() -> dict:
    """torch's cpuinfo view of the CPU ({"avx512_bf16": True, "cpu_name": "AMD EPYC", ...}); {} where this torch
    build has no `torch.cpu.get_capabilities` (before 2.9)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is None:
        return {}
    try:
        return dict(get())
    except RuntimeError:  # cpuinfo could not read the processor
        return {}


def native_bf16_features(capabilities=None) -> list[str]:
    """The bf16 features of the CPU, by their cpuinfo names (empty: bf16 is emulated)."""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    return [name for name in BF16_CPU_FEATURES if capabilities.get(name) is True]


def bf16_is_native(device="cpu") -> bool:
    """Whether bf16 runs at hardware speed on `device` ("cpu", "cuda", a torch.device)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return bool(native_bf16_features())


def default_device() -> str:
    """The device a command samples or trains on: "cuda" when a GPU is visible (and Accelerate is not told
    ACCELERATE_USE_CPU), else "cpu"."""
    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return "cuda" if torch.cuda.is_available() and not forced_cpu else "cpu"


def resolve_precision(requested: Precision = "auto", device=None) -> str:
    """"bf16" or "fp32": what `requested` means on `device` (default: `default_device()`). An explicit bf16 where it
    is emulated is kept, with one warning per process that states the cost measured here."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    device = default_device() if device is None else device
    native = bf16_is_native(device)
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        warn_emulated_bf16(device)
    return requested


@functools.lru_cache(maxsize=None)
def warn_emulated_bf16(device="cpu"):
    """Say once that bf16 is emulated here, and what it costs (measured: `bf16_slowdown`)."""
    slowdown = bf16_slowdown() if torch.device(device).type == "cpu" else None
    cost = (f"a bf16 matmul measured {slowdown:.0f}x slower than fp32 here" if slowdown is not None
            else f"typically ~{KNOWN_EMULATION_SLOWDOWN}x slower than fp32")
    logger.warning(f"bf16 is emulated on this processor ({describe_processor(device)}): {cost}. "
                   "Use fp32 (--precision fp32 / --mixed_precision no), or auto to pick by hardware.")


@functools.lru_cache(maxsize=None)
def bf16_slowdown(size=128, seconds=0.1) -> float:
    """How many times slower a (size x size) @ (size x size) matmul runs in bf16 than in fp32 on this CPU,
    measured once per process: both warmed up (the first calls pick and compile kernels), then timed in
    turn for about `seconds` in all, the fastest run of each compared."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    pairs = {"fp32": (a, b), "bf16": (a.bfloat16(), b.bfloat16())}
    fastest = dict.fromkeys(pairs, float("inf"))
    for x, y in pairs.values():
        for _ in range(3):
            x @ y
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for name, (x, y) in pairs.items():
            t0 = time.perf_counter()
            x @ y
            fastest[name] = min(fastest[name], time.perf_counter() - t0)
    return fastest["bf16"] / fastest["fp32"]


def describe_processor(device=None) -> str:
    """One line for logs and benchmark reports: the processor, its vector level and whether bf16 is native,
    e.g. "CPU AMD EPYC, AVX512, native bf16 (avx512_bf16), 2 cores"."""
    device = torch.device(default_device() if device is None else device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"GPU {name}, {'native' if bf16_is_native(device) else 'no'} bf16"
    capabilities = cpu_capabilities()
    features = native_bf16_features(capabilities)
    bf16 = f"native bf16 ({', '.join(features)})" if features else "bf16 emulated"
    name = capabilities.get("cpu_name") or "unknown CPU"
    return f"CPU {name}, {torch.backends.cpu.get_cpu_capability()}, {bf16}, {os.cpu_count()} cores"


def autocast(precision: str, device="cpu"):
    """The context a forward pass runs in: bf16 autocast for "bf16", nothing for "fp32"."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def threads_per_process(num_processes: int = 1) -> int:
    """CPU threads each of `num_processes` processes on this machine should use so that together they
    do not oversubscribe its cores: the physical cores this process may run on, shared out, at least 1
    (two hyperthreads of one core share its vector units, so torch itself defaults to physical cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    physical = cpu_capabilities().get("num_physical_cores")
    if isinstance(physical, int) and physical > 0:
        cores = min(cores, physical)
    return max(1, cores // max(1, num_processes))


def precision_of(module) -> str:
    """"bf16", "fp32" (or the dtype's name) of a module's weights; "fp32" for None (no module: nothing to cast)."""
    dtype = _dtype(module) if module is not None else torch.float32
    return {torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype, str(dtype).removeprefix("torch."))


@contextlib.contextmanager
def weights_in(module, precision: str | None):
    """Inside the block `module` holds its weights in bfloat16 for precision "bf16" (sampling: the pipeline
    keeps x_t in float32 and casts the U-Net's input and output); "fp32" or None leave it as it is. Its own
    dtype comes back afterwards."""
    original = _dtype(module)
    if precision == "bf16":
        _cast(module, torch.bfloat16)
    try:
        yield module
    finally:
        if _dtype(module) != original:
            _cast(module, original)


def _cast(module, dtype):
    """module.to(dtype), without diffusers' "There are modules in ... that should be kept in float32: []" warning.

    diffusers' `ModelMixin.to` warns on every dtype cast, also when its list of float32 modules is empty; then
    it only calls `torch.nn.Module.to`, which we call directly. A model that does list float32 modules, or is
    quantized, goes through diffusers' `to` (its warning or error then says something)."""
    if getattr(module, "_keep_in_fp32_modules", None) or getattr(module, "is_quantized", False):
        return module.to(dtype)
    return torch.nn.Module.to(module, dtype)


def _dtype(module):
    """A diffusers model's `dtype`, else its first parameter's."""
    dtype = getattr(module, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else next(module.parameters()).dtype
