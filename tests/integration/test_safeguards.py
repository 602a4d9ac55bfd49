"""A run never saves a broken model, and what can be checked before training is
(annotated_pipeline/training/safeguards.py). Runs of the training script, in-process through
`train_accelerate.cli`, which prints one line and returns the exit status like the script.
"""

import json
import subprocess
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file

from annotated_pipeline.training.checkpointing import list_checkpoints, read_training_args
from annotated_pipeline.training.safeguards import changed_args
from train_accelerate import cli
from training_runs import TINY, small_parquet


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


def run(capsys, data_dir, out, *extra):
    code = cli(["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
                "--checkpointing_steps", "2", "--logger", "none", *extra])
    return code, capsys.readouterr().err


def error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("train_accelerate.py: error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def test_a_diverging_run_stops_at_that_step_and_saves_nothing_from_it(capsys, tmp_path, data_dir):
    out = tmp_path / "out"
    code, err = run(capsys, data_dir, out, "--max_train_steps", "8", "--learning_rate", "1e6",
                    "--lr_warmup_steps", "0", "--use_ema", "--checkpoints_total_limit", "1")
    assert code == 1
    line = error_line(err)
    assert line.startswith("train_accelerate.py: error: training diverged ")
    assert "Nothing was saved from the diverged weights" in line or "was not written" in line
    assert "Traceback" not in err
    for name in ("model_index.json", "samples.png", "README.md", "unet"):
        assert not (out / name).exists(), name
    for checkpoint in list_checkpoints(out):  # whatever was kept is finite
        weights = load_file(f"{checkpoint}/model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values()), checkpoint
        assert checkpoint in line


@pytest.mark.parametrize("flag, value", [("--learning_rate", "nan"), ("--learning_rate", "inf"),
                                         ("--max_grad_norm", "Infinity"), ("--adam_beta1", "nan")])
def test_non_finite_numbers_are_refused_by_the_parser(capsys, tmp_path, data_dir, flag, value):
    with pytest.raises(SystemExit) as info:
        run(capsys, data_dir, tmp_path / "out", flag, value)
    assert info.value.code == 2
    assert f"argument {flag}: expected a finite number, got {value!r}" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--learning_rate", "0", "--learning_rate must be > 0"), ("--adam_beta2", "1", "--adam_beta2 must lie in [0, 1)"),
    ("--adam_epsilon", "0", "--adam_epsilon must be > 0"), ("--adam_weight_decay", "-1", "must be >= 0"),
    ("--max_grad_norm", "0", "--max_grad_norm must be > 0"), ("--ddp_timeout", "0", "--ddp_timeout must be a positive"),
])
def test_numbers_out_of_range_are_one_line_before_training(capsys, tmp_path, data_dir, flag, value, message):
    code, err = run(capsys, data_dir, tmp_path / "out", flag, value)
    assert code == 2 and message in error_line(err)
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_is_a_file_or_cannot_be_written_is_found_before_training(capsys, tmp_path, data_dir):
    file = tmp_path / "a-file"
    file.write_text("x")
    code, err = run(capsys, data_dir, file, "--max_train_steps", "1")
    assert code == 2 and f"--output_dir {str(file)!r} is a file, not a folder" in error_line(err)

    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)], capture_output=True)
    if mounted.returncode != 0:  # not root: an ordinary read-only folder does it
        read_only.chmod(0o500)
    try:
        code, err = run(capsys, data_dir, read_only / "out", "--max_train_steps", "1")
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(read_only)], check=False)
    assert code == 2
    line = error_line(err)
    assert "cannot be written" in line
    assert "Read-only file system" in line or "Permission denied" in line
    assert "Steps" not in err  # no training step ran


def test_labels_outside_the_class_range_are_refused_before_training(capsys, tmp_path, data_dir):
    ds = datasets.load_dataset("parquet", data_dir=str(data_dir), split="train")
    labels = list(ds["label"])
    labels[5] = -1  # datasets' "no label"
    ds = ds.remove_columns("label").add_column("label", labels).cast_column("label", ds.features["label"])
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    ds.to_parquet(str(folder / "train.parquet"))
    code, err = run(capsys, folder, tmp_path / "out", "--max_train_steps", "1", "--label_column", "label")
    assert code == 2
    line = error_line(err)
    assert "1 of 12 labels lie outside 0..9 (e.g. -1; -1 means 'no label' in `datasets`)" in line
    assert "dataset.filter" in line and not list_checkpoints(tmp_path / "out")


def test_resuming_with_changed_arguments_is_refused_or_recorded(capsys, tmp_path, data_dir):
    out = tmp_path / "out"
    code, err = run(capsys, data_dir, out, "--max_train_steps", "2")
    assert code == 0, err[-2000:]
    recorded = read_training_args(out / "checkpoint-2")["args"]
    assert recorded["learning_rate"] == 1e-3 and "hub_token" not in recorded

    for extra, name in ((["--learning_rate", "2e-3"], "--learning_rate 0.001 -> 0.002"),
                        (["--prediction_type", "v_prediction"], "--prediction_type epsilon -> v_prediction"),
                        (["--ddpm_num_steps", "30"], "--ddpm_num_steps 20 -> 30"),
                        (["--ddpm_beta_schedule", "linear"], "--ddpm_beta_schedule squaredcos_cap_v2 -> linear"),
                        (["--label_column", "label"], "--label_column None -> label")):
        code, err = run(capsys, data_dir, out, "--max_train_steps", "4", "--resume_from_checkpoint", "latest", *extra)
        assert code == 2, extra
        line = error_line(err)
        assert "checkpoint-2 was trained with other arguments" in line and name in line and "--accept_changed_args" in line
        assert [p.rsplit("-", 1)[-1] for p in list_checkpoints(out)] == ["2"]

    # Only how long it runs changed: accepted silently.
    code, err = run(capsys, data_dir, out, "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert code == 0, err[-2000:]
    # With --accept_changed_args the new rate is the one used, and the card says what changed.
    code, err = run(capsys, data_dir, out, "--max_train_steps", "6", "--resume_from_checkpoint", "latest",
                    "--learning_rate", "2e-3", "--accept_changed_args")
    assert code == 0, err[-2000:]
    optimizer = torch.load(out / "checkpoint-6" / "optimizer.bin", weights_only=False)
    scheduler = torch.load(out / "checkpoint-6" / "scheduler.bin", weights_only=False)
    assert scheduler["base_lrs"] == [2e-3]
    assert optimizer["param_groups"][0]["initial_lr"] == pytest.approx(2e-3)
    history = read_training_args(out / "checkpoint-6")["args"]["resumed_with_changes"]
    assert history == ["at step 4: --learning_rate 0.001 -> 0.002"]
    card = (out / "README.md").read_text()
    assert "at step 4: --learning_rate 0.001 -> 0.002" in card


def test_changed_args_ignores_what_a_resume_may_change():
    recorded = {"learning_rate": 1e-3, "max_train_steps": 4, "output_dir": "a", "logger": "none", "dim": 8}
    current = {"learning_rate": 1e-3, "max_train_steps": 8, "output_dir": "b", "logger": "tensorboard", "dim": 16}
    assert changed_args(recorded, current) == {"dim": (8, 16)}
    assert json.loads(json.dumps(changed_args({"dim_mults": [1, 2]}, {"dim_mults": [1, 2]}))) == {}


def test_a_hub_data_set_with_the_hub_unreachable_is_one_line_at_once(tmp_path):
    """Nothing listens on the endpoint: one line within seconds, not datasets' half-minute of retries."""
    import os
    import socket
    import sys
    import time

    with socket.socket() as s:  # a port that refuses connections
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "home"))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "train_accelerate.py", "--dataset_name", "zalando-datasets/fashion_mnist",
                             "--output_dir", str(tmp_path / "out"), "--logger", "none"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=str(Path(__file__).resolve().parents[2]))
    assert result.returncode == 2
    assert time.monotonic() - start < 20
    line = error_line(result.stderr)
    assert "names a Hub data set, but the Hub (http://127.0.0.1:" in line and "--train_data_dir" in line
    assert "Traceback" not in result.stderr
