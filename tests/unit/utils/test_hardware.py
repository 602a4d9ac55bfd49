"""hardware.py: the precision follows the processor. The processor is the input here, so the capability
query is replaced both ways; the real one is checked against /proc/cpuinfo, read independently."""

import logging
import platform
from pathlib import Path

import pytest
import torch

from annotated_pipeline.utils import hardware
from annotated_pipeline.training.precision import accelerate_mixed_precision

AVX2_ONLY = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False, "cpu_name": "AMD EPYC"}
AVX512_BF16 = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": False, "cpu_name": "AMD EPYC"}
SAPPHIRE_RAPIDS = {"avx512_bf16": True, "amx_bf16": True, "amx_tile": True, "cpu_name": "Intel Xeon"}


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given cpuinfo capabilities."""
    def use(capabilities):
        monkeypatch.setattr(hardware, "cpu_capabilities", lambda: dict(capabilities))
        hardware.warn_emulated_bf16.cache_clear()
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
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


def test_weights_in_casts_a_diffusers_model_without_its_float32_modules_warning(capfd):
    """diffusers' ModelMixin.to(dtype) logs "There are modules in ... that should be kept in float32: []" on every
    cast; weights_in casts the same weights without it (the control shows the capture sees the warning)."""
    from annotated_pipeline.unet import AnnotatedUNet2DModel

    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), attention_heads=1, attention_head_dim=8)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    capfd.readouterr()
    with hardware.weights_in(unet, "bf16"):
        assert unet.dtype == torch.bfloat16
        assert all(torch.equal(v, before[k].to(torch.bfloat16)) for k, v in unet.state_dict().items())
    assert unet.dtype == torch.float32
    assert "kept in float32" not in capfd.readouterr().err
    unet.to(torch.bfloat16)  # the control: diffusers' own cast warns
    assert "kept in float32" in capfd.readouterr().err


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
