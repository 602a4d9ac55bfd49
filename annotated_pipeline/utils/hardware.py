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
                  "amx_bf16"), and torch allowed to use them. `torch.backends.cpu.get_cpu_capability()` names
                  ATen's vector dispatch level ("AVX2", "AVX512"): "AVX512" says nothing about bf16 (an
                  AVX-512 CPU without BF16 reports it too), but below it ATen's kernels use no bf16
                  instruction. Two variables, read when torch is imported, cap what torch uses, and so
                  emulate an older CPU on a newer one (`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`):
                  ATEN_CPU_CAPABILITY lowers the dispatch level, ONEDNN_MAX_CPU_ISA the instructions of
                  oneDNN, which runs the bf16 matmuls and convolutions (AVX512_CORE_BF16 or above for
                  avx512_bf16, AVX512_CORE_AMX for amx_bf16). A capped feature counts as absent.
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


# oneDNN's instruction-set levels (dnnl_cpu_isa_t, dnnl_types.h): each level's bits contain those of the levels
# below it, so a cap allows a feature when it holds all the bits of the feature's level.
ONEDNN_ISA_BITS = {"SSE41": 0x1, "AVX": 0x3, "AVX2": 0x7, "AVX2_VNNI": 0xF, "AVX2_VNNI_2": 0x1F, "AVX512_CORE": 0x27,
                   "AVX512_CORE_VNNI": 0x67, "AVX512_CORE_BF16": 0xE7, "AVX10_1_512": 0x1EF, "AVX512_CORE_FP16": 0x1EF,
                   "AVX10_1_512_AMX": 0xFEF, "AVX512_CORE_AMX": 0xFEF, "AVX10_1_512_AMX_FP16": 0x1FEF,
                   "AVX512_CORE_AMX_FP16": 0x1FEF}
ONEDNN_LEVEL_OF = {"avx512_bf16": "AVX512_CORE_BF16", "amx_bf16": "AVX512_CORE_AMX"}  # the x86 bf16 features
ONEDNN_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # DNNL_: the name before oneDNN 2.0, still read


def onednn_isa_cap() -> str | None:
    """The oneDNN instruction-set cap this process runs under ("AVX2"), None where there is none (unset, "ALL",
    "DEFAULT", or a name oneDNN does not know and so ignores)."""
    for variable in ONEDNN_CAP_VARIABLES:
        value = os.environ.get(variable, "").strip().upper()
        if value:
            return value if value in ONEDNN_ISA_BITS else None
    return None


def capped_bf16_features(capabilities=None) -> dict[str, str]:
    """The processor's x86 bf16 features that torch is told not to use: {feature: the cap that rules it out}."""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    present = [name for name in ONEDNN_LEVEL_OF if capabilities.get(name) is True]
    aten = torch.backends.cpu.get_cpu_capability()
    cap = onednn_isa_cap()
    capped = {}
    for name in present:
        if aten in ("DEFAULT", "NO AVX", "AVX2"):  # x86 levels below AVX512 (torch names arm's "SVE256", ...)
            capped[name] = f"ATen capability {aten}"
        elif cap is not None and ONEDNN_ISA_BITS[cap] & ONEDNN_ISA_BITS[ONEDNN_LEVEL_OF[name]] \
                != ONEDNN_ISA_BITS[ONEDNN_LEVEL_OF[name]]:
            capped[name] = f"ONEDNN_MAX_CPU_ISA={cap}"
    return capped


def native_bf16_features(capabilities=None) -> list[str]:
    """The bf16 features of the CPU that torch may use, by their cpuinfo names (empty: bf16 is emulated)."""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    capped = capped_bf16_features(capabilities)
    return [name for name in BF16_CPU_FEATURES if capabilities.get(name) is True and name not in capped]


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
    if slowdown is not None and slowdown >= 1.5:
        cost = f"a bf16 matmul measured {slowdown:.{0 if slowdown >= 10 else 1}f}x slower than fp32 here"
    else:  # a GPU, or a timing that a loaded machine made meaningless
        cost = f"typically ~{KNOWN_EMULATION_SLOWDOWN}x slower than fp32"
        cost += f" (a matmul timed here: {slowdown:.1f}x, too noisy to say)" if slowdown is not None else ""
    logger.warning(f"bf16 is emulated on this processor ({describe_processor(device)}): {cost}. "
                   "Use fp32 (--precision fp32 / --mixed_precision no), or auto to pick by hardware.")


@functools.lru_cache(maxsize=None)
def bf16_slowdown(size=256, seconds=0.3) -> float:
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
    capped = capped_bf16_features(capabilities)
    bf16 = f"native bf16 ({', '.join(features)})" if features else "bf16 emulated"
    if capped:
        bf16 += f" ({', '.join(capped)} capped by {', '.join(dict.fromkeys(capped.values()))})"
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
