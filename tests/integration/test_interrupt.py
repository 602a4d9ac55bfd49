"""SIGINT (Ctrl-C) and SIGTERM stop a real `train` process cleanly (annotated_pipeline/training/interrupt.py):
the step finishes, a checkpoint of it is written, the exit status is 128 + the signal (130, 143), the
last line says how to go on, and going on from that checkpoint works."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: training_runs

from annotated_pipeline.training.checkpointing import checkpoint_step, list_checkpoints  # noqa: E402
from annotated_pipeline.training.ownership import LOCK_FILE  # noqa: E402
from train_accelerate import cli  # noqa: E402
from training_runs import REPO, TINY, small_parquet  # noqa: E402

pytestmark = pytest.mark.slow
PROG = "python -m annotated_pipeline.train"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


def argv(data_dir, out, *extra):
    return ["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
            "--eval_batch_size", "1", "--ddpm_num_inference_steps", "2", "--logger", "none", "--use_ema",
            "--checkpointing_steps", "100000", *extra]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_checkpoints_the_step_and_says_how_to_resume(tmp_path, data_dir, capsys, signum, status):
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen([sys.executable, "-m", "annotated_pipeline.train",
                                *argv(data_dir, out, "--max_train_steps", "100000")],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not (out / LOCK_FILE).exists():  # the handlers are in place before the lock is taken
            assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
            time.sleep(0.2)
        time.sleep(1)
        process.send_signal(signum)
        _, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    checkpoints = list_checkpoints(out)
    assert len(checkpoints) == 1, err[-3000:]
    step = checkpoint_step(checkpoints[0])
    last = err.strip().splitlines()[-1]
    assert last == (f"{PROG}: stopped by {signal.Signals(signum).name} after step {step}; saved {checkpoints[0]}. "
                    "To go on, run the same command with --resume_from_checkpoint latest")
    assert not (out / LOCK_FILE).exists()  # released

    capsys.readouterr()
    assert cli(argv(data_dir, out, "--max_train_steps", str(step + 1), "--resume_from_checkpoint", "latest")) == 0
    assert [checkpoint_step(p) for p in list_checkpoints(out)] == [step, step + 1]
