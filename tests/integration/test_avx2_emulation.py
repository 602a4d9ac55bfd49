"""On a CPU without native bf16, `auto` trains and samples in fp32 and says nothing about bf16 (issue #33).

An AVX2-only machine is emulated on this one by the two variables torch reads when it is imported:
ATEN_CPU_CAPABILITY=avx2 (ATen's kernels) and ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN's matmuls and
convolutions). Each command runs in its own process, as a newcomer would run it, with every precision
option left at its default. On a CPU with AVX-512 BF16 the same commands would choose bf16: the second
test checks that this machine is one where the first test could fail.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training_runs import REPO, TINY, small_parquet  # noqa: E402

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ACCELERATE_MIXED_PRECISION")


def command(args, tmp_path, **caps):
    """`python -m annotated_pipeline ARGS` in a fresh process, CPU only, under `caps`."""
    env = {k: v for k, v in os.environ.items() if k not in CAPS and not k.startswith("PYTEST")}
    env.update(caps, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "annotated_pipeline", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def bf16_lines(log):
    return [line for line in log.splitlines() if "bf16" in line.lower() or "bfloat16" in line.lower()]


def test_auto_trains_and_samples_in_fp32_under_avx2_and_never_mentions_bf16(tmp_path):
    data = small_parquet(tmp_path / "data", n=8)
    run = tmp_path / "run"
    log = command(["train", "--train_data_dir", str(data), "--output_dir", str(run), "--max_train_steps", "2",
                   "--checkpointing_steps", "2", "--train_batch_size", "4", "--logger", "none", *TINY], tmp_path, **AVX2)
    assert "mixed precision = no" in log, log[-3000:]
    assert (run / "model_index.json").exists() and (run / "samples.png").exists()
    assert not bf16_lines(log), bf16_lines(log)
    log = command(["sample", str(run), "--num_images", "2", "--output", str(tmp_path / "grid.png")], tmp_path, **AVX2)
    assert "fp32 -> " in log and (tmp_path / "grid.png").exists(), log[-3000:]
    assert not bf16_lines(log), bf16_lines(log)


def test_the_same_sample_without_the_caps_follows_this_cpu(tmp_path):
    from annotated_pipeline.utils.hardware import bf16_is_native

    if any(os.environ.get(name) for name in CAPS[:3]):
        pytest.skip("this test process itself runs capped")
    data = small_parquet(tmp_path / "data", n=8)
    run = tmp_path / "run"
    command(["train", "--train_data_dir", str(data), "--output_dir", str(run), "--max_train_steps", "1",
             "--checkpointing_steps", "1", "--train_batch_size", "4", "--logger", "none", "--mixed_precision", "no",
             *TINY], tmp_path)
    log = command(["sample", str(run), "--num_images", "2", "--output", str(tmp_path / "grid.png")], tmp_path)
    assert ("bf16 -> " if bf16_is_native("cpu") else "fp32 -> ") in log, log[-3000:]
