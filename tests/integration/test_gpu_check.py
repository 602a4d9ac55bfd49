"""benchmarks/gpu_check.sh and the Python it calls: the script parses, refuses a machine without CUDA
before any work, and benchmarks/gpu_check.py runs its whole check on the CPU in --tiny mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
CHECK = REPO / "benchmarks" / "gpu_check.py"


def env():
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def test_the_shell_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_shell_script_refuses_a_machine_without_cuda_before_any_work(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                            env={**env(), "OUT": str(out), "PYTHON": sys.executable})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "gpu_check.sh: error: no usable CUDA torch" in result.stderr
    assert not (out / "speed").exists() and not (out / "quality").exists()


def test_on_the_cpu_only_the_tiny_smoke_test_runs(tmp_path):
    result = subprocess.run([sys.executable, str(CHECK), "--device", "cpu", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env(), cwd=REPO)
    assert result.returncode == 2 and "add --tiny" in result.stderr
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.slow
def test_the_tiny_check_measures_every_stage_on_the_cpu(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    result = subprocess.run([sys.executable, str(CHECK), "--device", "cpu", "--tiny", "--out", str(out),
                             "--workdir", str(work)], capture_output=True, text=True, timeout=600, env=env(), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    sys.path.insert(0, str(REPO / "benchmarks"))
    import machine_peak
    import torch

    assert report["device"] == machine_peak.processor(torch.device("cpu")) and report["tiny"] is True
    assert [r["size"] for r in report["training"]] == [32, 64] == [r["size"] for r in report["sampling"]]
    for row in report["training"]:
        assert row["ours"] > 0 and row["diffusers"] > 0 and row["ratio"] == pytest.approx(row["ours"] / row["diffusers"])
        achieved = row["ours_flops_per_step"] / row["batch"] * row["ours"]
        assert row["ours_share_of_peak"] == pytest.approx(achieved / row["bf16_peak_flops_per_s"])
    for row in report["sampling"]:
        assert row["ratio"] == pytest.approx(row["diffusers"] / row["ours"])
    quality = report["quality"]
    assert quality["steps"] == 4 and quality["step"] == 4 and quality["num_samples"] == 16
    assert quality["scheduler"] == "dpmsolver" and quality["num_inference_steps"] == 20
    assert quality["frechet_distance"] > 0 and "NOT comparable with the card" in quality["data"]
    markdown = (out / "gpu_check.md").read_text()
    assert "| 64x64 RGB, bf16, batch 2 |" in markdown and "Quality point: 4 steps" in markdown
    assert report["device"] in markdown and report["device"] in result.stdout
