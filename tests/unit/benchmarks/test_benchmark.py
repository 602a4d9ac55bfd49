"""benchmarks/benchmark.py runs end to end (tiny models, --quick) and reports every row of the issue's table.

No timing is asserted (machines differ); the checks are on what the run measured: positive throughputs
and times, FLOPs equal to an independent count, ratios consistent with the medians they come from.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
BENCHMARK = os.path.join(ROOT, "benchmarks", "benchmark.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import benchmark  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, BENCHMARK, "--quick", "--device", "cpu", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_quick_run_prints_the_table(quick_run):
    stdout, results = quick_run
    for label in ("parameters (M)", "forward GFLOP / image", "training images/s, fp32", "training images/s, bf16",
                  "training achieved GFLOP/s, bf16", "training peak activation memory (MiB), fp32",
                  "sampling s/step, fp32", "sampling s/step, bf16", "DDIMScheduler", "DPMSolverMultistepScheduler"):
        assert label in stdout, label
    assert "| ours" in stdout and "diffusers" in stdout


def test_quick_run_measures_sensible_numbers(quick_run):
    _, results = quick_run
    rows = results["rows"]
    for label, row in rows.items():
        assert row["ours"] > 0 and row["diffusers"] > 0, (label, row)
    for p in ("fp32", "bf16"):
        train = rows[f"training images/s, {p} (batch 2)"]
        assert train["ratio"] == pytest.approx(train["ours"] / train["diffusers"])
        sample = rows[f"sampling s/step, {p} (batch 2)"]
        assert sample["ratio"] == pytest.approx(sample["diffusers"] / sample["ours"])
    # The training step counts forward + backward: about 3x the forward (backward ~ 2x forward).
    for who in ("ours", "diffusers"):
        ratio = rows["training GFLOP / image, fp32"][who] / rows["forward GFLOP / image"][who]
        assert 2.5 < ratio < 3.5, (who, ratio)
    assert [f["scheduler"] for f in results["fast_sampling"]] == ["DDIMScheduler", "DPMSolverMultistepScheduler"]


def test_parameters_and_flops_are_the_models_own():
    """The table's static rows against an independent count of the same tiny models."""
    out = benchmark.run(benchmark.parse_args(["--quick", "--device", "cpu", "--precisions", "fp32",
                                              "--no_fast_sampling"]))
    for who, build in (("ours", benchmark.our_unet), ("diffusers", benchmark.diffusers_unet)):
        model = build(quick=True).eval()
        assert out["rows"]["parameters (M)"][who] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.randn(1, 1, 8, 8), torch.tensor([500]))
        assert out["rows"]["forward GFLOP / image"][who] == pytest.approx(counter.get_total_flops() / 1e9)


def test_peak_memory_sees_a_known_allocation():
    """The CPU peak-memory probe against closed form: two live 1000x1000 float32 tensors = 8 MB."""

    def fn():
        a = torch.ones(1000, 1000)
        b = a * 2
        del a
        c = b + 1
        return c.sum()

    peak = benchmark.peak_memory(fn, torch.device("cpu"))
    assert 8_000_000 <= peak < 8_100_000


def test_unknown_precision_is_refused():
    with pytest.raises(SystemExit, match="unknown precision 'fp16'"):
        benchmark.parse_args(["--precisions", "fp32,fp16"])


def test_ours_config_overrides_our_model_only():
    try:
        benchmark.parse_args(["--quick", "--ours_config", '{"linear_attention_levels": "all"}'])
        model = benchmark.our_unet(quick=True)
        assert model.config.linear_attention_levels is None  # the blog's: every level
        assert hasattr(model.down_levels[0]["attention"], "fn")  # level 0 with its linear attention
    finally:
        benchmark.parse_args(["--quick"])  # back to the default for the other tests
    default = benchmark.our_unet(quick=True)
    assert default.config.linear_attention_levels == ()  # "middle" of a 2-level network: none
    assert not any(hasattr(level["attention"], "fn") for level in default.down_levels)
