"""Checkpoints are written atomically and pruned only after the new one is complete
(annotated_pipeline/training/checkpointing.py).

In-process tests of the folder logic, and real runs of the training script for the faults a process
meets: a SIGKILL while a checkpoint is being written, and a disk that fills up (a small tmpfs).
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from annotated_pipeline.training.checkpointing import (
    CheckpointWriteError, list_checkpoints, missing_files, prune_checkpoints, resolve_checkpoint, save_checkpoint,
)
from training_runs import REPO, TINY, small_parquet

COMPLETE = ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl")


def fake_checkpoint(folder, files=COMPLETE):
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(b"x")
    return folder


def test_latest_is_the_newest_complete_checkpoint_and_skipping_says_so(tmp_path, caplog):
    for step in (10, 2, 40):
        fake_checkpoint(tmp_path / f"checkpoint-{step}")
    fake_checkpoint(tmp_path / "checkpoint-300", files=("model.safetensors",))  # a half-written one
    (tmp_path / "checkpoint-notanumber").mkdir()
    (tmp_path / ".checkpoint-500.incomplete").mkdir()
    assert [Path(p).name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10", "checkpoint-40",
                                                                  "checkpoint-300"]
    assert resolve_checkpoint(str(tmp_path), "latest").endswith("checkpoint-40")
    assert "skipping" in caplog.text and "checkpoint-300" in caplog.text and "optimizer.bin" in caplog.text
    assert resolve_checkpoint(str(tmp_path / "empty"), "latest") is None
    with pytest.raises(ValueError, match="no such folder"):
        resolve_checkpoint(str(tmp_path), "checkpoint-7")
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        resolve_checkpoint(str(tmp_path), str(tmp_path / "checkpoint-notanumber"))
    with pytest.raises(ValueError, match=r"not a complete checkpoint \(it has no optimizer.bin, scheduler.bin"):
        resolve_checkpoint(str(tmp_path), "checkpoint-300")


def test_a_folder_of_random_files_is_not_a_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint-5"
    fake_checkpoint(folder, files=("notes.txt", "weights.pt"))
    assert missing_files(folder) == ["model.safetensors", *COMPLETE[1:]]
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_checkpoint(str(tmp_path), str(folder))


def test_prune_keeps_the_newest(tmp_path):
    for step in (10, 2, 300, 40):
        fake_checkpoint(tmp_path / f"checkpoint-{step}")
    removed = prune_checkpoints(str(tmp_path), total_limit=2)
    assert sorted(Path(p).name for p in removed) == ["checkpoint-10", "checkpoint-2"]
    assert [Path(p).name for p in list_checkpoints(tmp_path)] == ["checkpoint-40", "checkpoint-300"]
    assert prune_checkpoints(str(tmp_path), total_limit=None) == []


class OneProcess:
    """The part of `accelerate.Accelerator` that `save_checkpoint` uses, for one process; `save_state`
    writes a complete checkpoint, or the first file and then fails as `fail` says."""

    is_main_process = True

    def __init__(self, fail=None):
        self.fail = fail

    def wait_for_everyone(self):
        pass

    def save_state(self, output_dir):
        os.makedirs(output_dir, exist_ok=True)
        for name in COMPLETE:
            Path(output_dir, name).write_bytes(b"x")
            if self.fail is not None:
                raise self.fail


def test_save_is_atomic_prunes_after_and_replaces_a_stale_checkpoint(tmp_path):
    fake_checkpoint(tmp_path / "checkpoint-2")
    (tmp_path / ".checkpoint-4.incomplete").mkdir()  # left by a killed run
    path, removed = save_checkpoint(OneProcess(), str(tmp_path), 4, total_limit=1, training_args={"args": {"lr": 1}})
    assert Path(path).name == "checkpoint-4" and [Path(p).name for p in removed] == ["checkpoint-2"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-4"]
    assert (tmp_path / "checkpoint-4" / "training_args.json").is_file()
    save_checkpoint(OneProcess(), str(tmp_path), 4)  # the same step again: replaced, nothing left over
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-4"] and not missing_files(tmp_path / "checkpoint-4")


@pytest.mark.parametrize("error, message", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device that holds"),
    (RuntimeError("SafetensorError: IoError(Os { code: 28, kind: StorageFull })"), "no space left on the device"),
    (PermissionError(errno.EACCES, "Permission denied"), "PermissionError"),
])
def test_a_failed_write_keeps_the_previous_checkpoint_and_says_why(tmp_path, error, message):
    fake_checkpoint(tmp_path / "checkpoint-2")
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(OneProcess(fail=error), str(tmp_path), 4, total_limit=1)
    text = str(info.value)
    assert text.startswith(f"could not write checkpoint-4 in {tmp_path}: ") and message in text
    assert "the previous checkpoint checkpoint-2 is intact" in text
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-2"] and not missing_files(tmp_path / "checkpoint-2")


def test_a_peer_timeout_inside_a_checkpoint_is_reported_as_a_timeout_not_a_write_failure(tmp_path):
    """gloo's timeout can land inside `save_state`'s collectives: it must reach train.main as itself, which
    prints the --ddp_timeout line (tests/test_train_accelerate.py runs that for real with two processes)."""
    import torch.distributed as dist

    from annotated_pipeline.training.distributed import collective_timeout_message

    fake_checkpoint(tmp_path / "checkpoint-2")
    timeout = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms for recv operation")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError) as info:
            save_checkpoint(OneProcess(fail=timeout), str(tmp_path / "out"), 4)
        assert info.value is timeout
        message = collective_timeout_message(timeout, 10)
    finally:
        dist.destroy_process_group()
    assert message.startswith("process 0 of 1 waited more than --ddp_timeout 10 s") and "Timed out waiting" in message
    with pytest.raises(CheckpointWriteError):  # without a process group the same text is an ordinary failure
        save_checkpoint(OneProcess(fail=timeout), str(tmp_path), 4)
    assert os.listdir(tmp_path / "out") == []  # the half-written folder is gone in both cases
    assert "checkpoint-2" in os.listdir(tmp_path) and not missing_files(tmp_path / "checkpoint-2")


# ------------------------------------------------------------------------------------------------
# Real runs: a kill during a checkpoint write, and a full disk
# ------------------------------------------------------------------------------------------------

# The training script, with the optimizer's file of checkpoint-4 written slowly: the window in which
# a kill lands in the middle of a checkpoint (its weights written, its optimizer state not yet).
SLOW_CHECKPOINT = """
import os, sys, time
import torch
save = torch.save
def slow_save(obj, f, *args, **kwargs):
    if "checkpoint-4" in str(f) and str(f).endswith("optimizer.bin"):
        open(os.environ["KILL_ME_MARKER"], "w").close()
        time.sleep(120)
    return save(obj, f, *args, **kwargs)
torch.save = slow_save
sys.path.insert(0, {repo!r})
from train_accelerate import cli
sys.exit(cli(sys.argv[1:]))
"""


def train(args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "train_accelerate.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


def run_args(data_dir, out, *extra):
    return ["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
            "--checkpointing_steps", "2", "--logger", "none", "--use_ema", *extra]


def test_a_kill_while_writing_a_checkpoint_loses_nothing(tmp_path, data_dir):
    """SIGKILL in the middle of checkpoint-4 with --checkpoints_total_limit 1: checkpoint-2 is still there
    (pruning waits for the new one), `latest` resumes from it, and the resumed run ends like one never killed."""
    out, marker = tmp_path / "out", tmp_path / "kill-me"
    script = tmp_path / "slow_train.py"
    script.write_text(SLOW_CHECKPOINT.format(repo=str(REPO)))
    args = run_args(data_dir, out, "--max_train_steps", "6", "--checkpoints_total_limit", "1")
    env = dict(os.environ, KILL_ME_MARKER=str(marker), HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, str(script), *args], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), process.stderr.read()[-3000:] if process.poll() is not None else "no checkpoint-4 write"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    half_written = out / ".checkpoint-4.incomplete"
    assert (half_written / "model.safetensors").is_file() and not (half_written / "optimizer.bin").exists()
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-2"]
    assert not missing_files(out / "checkpoint-2")

    result = train([*args, "--resume_from_checkpoint", "latest"], env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from checkpoint-2 at global step 2" in result.stderr
    assert sorted(os.listdir(out)) == sorted(["README.md", "card_inputs.json", "checkpoint-6", "model_index.json", "pipeline.py",
                                              "samples.png", "scheduler", "unet"])

    uninterrupted = train(run_args(data_dir, tmp_path / "uninterrupted", "--max_train_steps", "6"),
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    from safetensors.torch import load_file
    a = load_file(out / "checkpoint-6" / "model.safetensors")
    b = load_file(tmp_path / "uninterrupted" / "checkpoint-6" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: room for one checkpoint of the tiny model (1.2 MB), not for two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); the injected ENOSPC test above covers the logic")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, data_dir, small_disk):
    out = small_disk / "out"
    result = train(run_args(data_dir, out, "--max_train_steps", "6"), env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train_accelerate.py: error: could not write checkpoint-4 in ")
    assert "no space left on the device that holds" in last and "checkpoint-2 is intact" in last
    assert "Traceback" not in result.stderr
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-2"] and not missing_files(out / "checkpoint-2")
    assert not (out / ".checkpoint-4.incomplete").exists()
