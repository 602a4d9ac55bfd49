"""hardware.py: the precision follows the processor. The processor is the input here, so the capability
query is replaced both ways; the real one is checked against /proc/cpuinfo, read independently."""

import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from annotated_pipeline.utils import hardware
from annotated_pipeline.training.precision import accelerate_mixed_precision

AVX2_ONLY = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False, "cpu_name": "AMD EPYC"}
AVX512_BF16 = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": False, "cpu_name": "AMD EPYC"}
SAPPHIRE_RAPIDS = {"avx512_bf16": True, "amx_bf16": True, "amx_tile": True, "cpu_name": "Intel Xeon"}
CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
REPO = Path(__file__).resolve().parents[3]


def aten_level(capabilities) -> str:
    """The vector level torch dispatches to on a CPU with these capabilities, uncapped."""
    if any(capabilities.get(name) for name in ("avx512_f", "avx512_bf16", "amx_bf16")):
        return "AVX512"
    return "AVX2" if capabilities.get("avx2") else "DEFAULT"


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given cpuinfo capabilities, and with the vector level torch would dispatch to
    there (the real machine's level would otherwise cap a pretended feature: "AVX2" rules out avx512_bf16)."""
    def use(capabilities):
        monkeypatch.setattr(hardware, "cpu_capabilities", lambda: dict(capabilities))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten_level(capabilities))
        hardware.warn_emulated_bf16.cache_clear()
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    for variable in hardware.ONEDNN_CAP_VARIABLES:  # a cap this test process runs under is not the pretended CPU's
        monkeypatch.delenv(variable, raising=False)
    yield use
    hardware.warn_emulated_bf16.cache_clear()


@pytest.mark.parametrize("capabilities, native", [(AVX2_ONLY, False), (AVX512_BF16, True), (SAPPHIRE_RAPIDS, True),
                                                  ({"architecture": "arm64", "bf16": True}, True), ({}, False)])
def test_auto_is_bf16_only_where_it_is_native(cpu, capabilities, native):
    cpu(capabilities)
    assert hardware.bf16_is_native("cpu") is native
    assert hardware.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert accelerate_mixed_precision("auto", "cpu") == ("bf16" if native else "no")
    assert hardware.resolve_precision("fp32", "cpu") == "fp32"
    assert ("native bf16" if native else "bf16 emulated") in hardware.describe_processor("cpu")


def test_explicit_bf16_where_emulated_is_kept_and_warns_once_with_its_cost(cpu, caplog, monkeypatch):
    cpu(AVX2_ONLY)
    monkeypatch.setattr(hardware, "bf16_slowdown", lambda: 87.4)  # what an AVX2 machine measures (issue #33: ~100x)
    with caplog.at_level(logging.WARNING, logger="annotated_pipeline.utils.hardware"):
        assert hardware.resolve_precision("bf16", "cpu") == "bf16"
        assert accelerate_mixed_precision("bf16", "cpu") == "bf16"
    warnings = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert len(warnings) == 1 and "87x slower than fp32" in warnings[0] and "AMD EPYC" in warnings[0]


def test_a_timing_that_shows_no_slowdown_gives_the_known_cost_instead(cpu, caplog, monkeypatch):
    cpu(AVX2_ONLY)
    monkeypatch.setattr(hardware, "bf16_slowdown", lambda: 0.4)  # a loaded machine: the fp32 run was the unlucky one
    with caplog.at_level(logging.WARNING, logger="annotated_pipeline.utils.hardware"):
        hardware.resolve_precision("bf16", "cpu")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "typically ~100x slower than fp32" in warning and "0.4x, too noisy" in warning


def test_native_bf16_does_not_warn(cpu, caplog):
    cpu(AVX512_BF16)
    with caplog.at_level(logging.WARNING, logger="annotated_pipeline.utils.hardware"):
        assert hardware.resolve_precision("bf16", "cpu") == "bf16"
    assert not caplog.records


def test_the_launchers_choice_wins_over_auto(cpu, monkeypatch):
    cpu(AVX2_ONLY)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # `accelerate launch` without the flag: auto decides
    assert accelerate_mixed_precision("auto", "cpu") == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert accelerate_mixed_precision("auto", "cpu") == "bf16"
    assert accelerate_mixed_precision("no", "cpu") == "no"  # the script's own flag wins over the launcher's


def test_unknown_precision_names_the_allowed_ones():
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        hardware.resolve_precision("bfloat16", "cpu")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not Path("/proc/cpuinfo").exists(),
                    reason="reads the x86 flags of /proc/cpuinfo")
def test_the_real_capability_agrees_with_proc_cpuinfo():
    if any(os.environ.get(name) for name in CAP_VARIABLES):
        pytest.skip("torch runs capped here; the capped cases run in subprocesses below")
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    expected = [name for name in ("avx512_bf16", "amx_bf16") if name in flags]
    assert hardware.native_bf16_features() == expected
    assert hardware.bf16_is_native("cpu") == bool(expected)
    # ATen's dispatch level names no bf16: an AVX-512 CPU without BF16 says "AVX512" as well.
    assert torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2", "AVX512", "NO AVX")


def test_the_measured_slowdown_is_a_ratio_of_two_timings():
    slowdown = hardware.bf16_slowdown.__wrapped__(size=64, seconds=0.02)
    assert 0.01 < slowdown < 10_000
    if hardware.bf16_is_native("cpu"):
        assert slowdown < 20  # native bf16 is never the ~100x of emulation


def test_threads_do_not_oversubscribe():
    cores = hardware.threads_per_process(1)
    assert 1 <= cores <= (torch.get_num_threads() if torch.get_num_threads() > 1 else cores)
    assert hardware.threads_per_process(2) * 2 <= max(cores, 2)
    assert hardware.threads_per_process(10 * cores) == 1


def test_weights_in_bf16_come_back_in_their_own_dtype():
    module = torch.nn.Linear(2, 2)
    with hardware.weights_in(module, "bf16"):
        assert module.weight.dtype == torch.bfloat16 and hardware.precision_of(module) == "bf16"
    assert module.weight.dtype == torch.float32 and hardware.precision_of(module) == "fp32"
    with hardware.weights_in(module, None):
        assert module.weight.dtype == torch.float32


def test_weights_in_casts_a_diffusers_model_without_its_float32_modules_warning():
    """diffusers' ModelMixin.to(dtype) logs "There are modules in ... that should be kept in float32: []" on every
    cast; weights_in casts the same weights without it (the control shows the capture sees the warning). The
    messages are read from diffusers' logger itself: its stream handler may hold an earlier test's stderr."""
    import logging

    from annotated_pipeline.unet import AnnotatedUNet2DModel

    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("diffusers"), Keep(logging.WARNING)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), attention_heads=1, attention_head_dim=8)
        before = {k: v.clone() for k, v in unet.state_dict().items()}
        with hardware.weights_in(unet, "bf16"):
            assert unet.dtype == torch.bfloat16
            assert all(torch.equal(v, before[k].to(torch.bfloat16)) for k, v in unet.state_dict().items())
        assert unet.dtype == torch.float32
        assert not any("kept in float32" in m for m in messages)
        unet.to(torch.bfloat16)  # the control: diffusers' own cast warns
        assert any("kept in float32" in m for m in messages)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_training_process_keeps_to_its_share_of_the_cores(monkeypatch):
    from annotated_pipeline.training import precision

    before = torch.get_num_threads()
    monkeypatch.setattr(precision, "threads_per_process", lambda n: 1)  # e.g. 2 processes on 2 cores
    try:
        torch.set_num_threads(2)
        assert precision.fit_threads(2) == (2, 1) and torch.get_num_threads() == 1
        assert precision.fit_threads(2) == (1, 1)  # never raised: an explicit 1 thread stays
    finally:
        torch.set_num_threads(before)


def test_every_command_s_precision_option_defaults_to_auto_with_the_same_choices():
    from annotated_pipeline.evaluation import train_classifier
    from annotated_pipeline.training.options import MIXED_PRECISION, build_parser

    assert train_classifier.parse_args(["--output_dir", "x"]).precision == "auto"
    assert train_classifier.parse_args(["--output_dir", "x", "--no_bf16"]).precision == "fp32"  # the older spelling
    assert build_parser().parse_args([]).mixed_precision == "auto" and "auto" in MIXED_PRECISION
    for parser in (train_classifier.build_parser(),):
        action = next(a for a in parser._actions if a.dest == "precision" and a.choices)
        assert tuple(action.choices) == hardware.PRECISIONS and action.default == "auto"


@pytest.mark.parametrize("command", ["sample", "evaluate", "train-classifier"])
def test_the_commands_offer_the_one_list_of_precisions(command, capsys):
    from annotated_pipeline.commands import cli

    assert cli.main([command, "--help"]) == 0
    assert "--precision {" + ",".join(hardware.PRECISIONS) + "}" in capsys.readouterr().out


@pytest.mark.parametrize("cap, allowed", [
    ("AVX2", []), ("avx512_core", []),  # oneDNN reads the name in any case
    ("AVX512_CORE_BF16", ["avx512_bf16"]), ("AVX512_CORE_AMX", ["avx512_bf16", "amx_bf16"]),
    ("ALL", ["avx512_bf16", "amx_bf16"]), ("no-such-isa", ["avx512_bf16", "amx_bf16"])])  # oneDNN ignores these
def test_onednn_s_cap_rules_out_the_bf16_instructions_above_it(cpu, monkeypatch, cap, allowed):
    cpu(SAPPHIRE_RAPIDS)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert hardware.native_bf16_features() == allowed
    assert hardware.resolve_precision("auto", "cpu") == ("bf16" if allowed else "fp32")
    if not allowed:
        assert f"capped by ONEDNN_MAX_CPU_ISA={cap.upper()}" in hardware.describe_processor("cpu")


@pytest.mark.parametrize("aten", ["AVX2", "DEFAULT"])
def test_aten_below_avx512_rules_out_x86_bf16(cpu, monkeypatch, aten):
    cpu(AVX512_BF16)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
    assert hardware.native_bf16_features() == [] and not hardware.bf16_is_native("cpu")
    assert accelerate_mixed_precision("auto", "cpu") == "no"
    cpu({"architecture": "arm64", "bf16": True})  # arm's levels are not x86's: its bf16 stays native
    assert hardware.bf16_is_native("cpu")


PROBE = """
import json, logging, torch
from annotated_pipeline.utils import hardware
from annotated_pipeline.training.precision import accelerate_mixed_precision
records = []
logging.getLogger("annotated_pipeline.utils.hardware").addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r.getMessage())})())
out = {"aten": torch.backends.cpu.get_cpu_capability(), "native": hardware.bf16_is_native("cpu"),
       "auto": hardware.resolve_precision("auto", "cpu"), "accelerate": accelerate_mixed_precision("auto", "cpu"),
       "torch_onednn_bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported(), "describe": hardware.describe_processor("cpu")}
out["explicit"] = [hardware.resolve_precision("bf16", "cpu") for _ in range(2)]
out["warnings"] = records
print(json.dumps(out))
"""


def probe(**caps):
    """What hardware.py decides in a fresh process that imports torch under `caps` (read at torch's import)."""
    env = {k: v for k, v in os.environ.items() if k not in CAP_VARIABLES + ("ACCELERATE_MIXED_PRECISION",)}
    env.update(caps, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("caps", [{"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
                                  {"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"ATEN_CPU_CAPABILITY": "avx2"}])
def test_a_process_capped_at_avx2_trains_in_fp32_and_warns_once_for_bf16(caps):
    seen = probe(**caps)
    assert seen["native"] is False and seen["auto"] == "fp32" and seen["accelerate"] == "no"
    assert "bf16 emulated" in seen["describe"]
    if "ONEDNN_MAX_CPU_ISA" in caps:  # torch itself no longer sends bf16 to oneDNN
        assert seen["torch_onednn_bf16"] is False
    if "ATEN_CPU_CAPABILITY" in caps:
        assert seen["aten"] == "AVX2"
    assert seen["explicit"] == ["bf16", "bf16"]  # kept, as asked
    emulated = [w for w in seen["warnings"] if "bf16 is emulated" in w]
    assert len(emulated) == 1 and "slower than fp32" in emulated[0], seen["warnings"]  # measured, or the known cost


def test_an_uncapped_process_agrees_with_torch_s_own_bf16_routing():
    seen = probe()
    if seen["native"]:  # where we call bf16 native, torch runs it in oneDNN's bf16 kernels, and nothing warns
        assert seen["torch_onednn_bf16"] is True and seen["auto"] == "bf16" and not seen["warnings"]
    else:
        assert seen["auto"] == "fp32" and len(seen["warnings"]) == 1
