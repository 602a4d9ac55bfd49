"""Helpers for tests that run the training script as a real subprocess (not a test module)."""

import os
import subprocess
import sys
from pathlib import Path

import datasets

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "train_accelerate.py")
EMBEDDED = REPO / "data" / "fashion-mnist-sample" / "train.parquet"
TINY = ["--resolution", "16", "--dim", "8", "--dim_mults", "1,2", "--ddpm_num_steps", "20",
        "--ddpm_num_inference_steps", "5", "--eval_batch_size", "4", "--lr_warmup_steps", "2",
        "--learning_rate", "1e-3"]
ONE_PROCESS = ["--num_processes", "1", "--num_machines", "1", "--cpu", "--mixed_precision", "no",
               "--dynamo_backend", "no"]


def launch(launcher_args, script_args, hf_home, env=None, timeout=300, script=SCRIPT):
    """`python -m accelerate.commands.launch LAUNCHER_ARGS train_accelerate.py SCRIPT_ARGS`.

    HF_HOME is a fresh folder, so no saved `accelerate config` (HF_HOME/accelerate/) is read: the
    launcher arguments alone decide the setup.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1") if env is None else dict(env)
    env["HF_HOME"] = str(hf_home)
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, also on a machine with GPUs
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher_args, script, *script_args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def small_parquet(folder, n=12, max_label=3):
    """`n` Fashion-MNIST images with labels below `max_label` from the embedded sample, as one parquet file."""
    ds = datasets.load_dataset("parquet", data_files=str(EMBEDDED), split="train")
    keep = [i for i, label in enumerate(ds["label"]) if label < max_label][:n]
    ds.select(keep).to_parquet(str(Path(folder) / "train.parquet"))
    return folder
