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


def test_ctrl_c_on_a_two_process_launch_checkpoints_the_step_and_resumes(tmp_path, data_dir):
    """Ctrl-C in a terminal signals the whole foreground process group: `accelerate launch`, its torchrun agent
    and both DDP workers (CPU, gloo). The workers agree on the step, write its checkpoint once, and the launch
    exits 130 with one line saying how to resume; resuming from that checkpoint works."""
    import psutil
    from training_runs import SCRIPT

    out = tmp_path / "out"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
              "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29547", SCRIPT]
    launcher = subprocess.Popen([*launch, *argv(data_dir, out, "--max_train_steps", "100000")], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (out / LOCK_FILE).exists():
            assert launcher.poll() is None and time.time() < deadline, launcher.communicate()[1][-3000:]
            time.sleep(0.2)
        time.sleep(3)
        workers = [p for p in psutil.Process(launcher.pid).children(recursive=True)
                   if "RANK" in p.environ() and SCRIPT in " ".join(p.cmdline())]
        assert len(workers) == 2
        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C does
        time.sleep(0.5)
        for worker in workers:  # torchrun's agent passes the signal on too; here surely after the first one was seen
            try:
                worker.send_signal(signal.SIGINT)
            except psutil.NoSuchProcess:  # it already checkpointed the step and ended (no teardown to wait for)
                pass
        _, err = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    checkpoints = list_checkpoints(out)
    assert len(checkpoints) == 1, err[-3000:]
    step = checkpoint_step(checkpoints[0])
    assert err.count("To go on, run the same command") == 1, err[-3000:]  # one line for the run, not one per process
    assert err.strip().splitlines()[-1].endswith(f"train_accelerate.py: stopped by SIGINT after step {step}; saved "
                                                 f"{checkpoints[0]}. To go on, run the same command with "
                                                 "--resume_from_checkpoint latest"), err[-3000:]
    assert not (out / LOCK_FILE).exists()

    resumed = subprocess.run([*launch, *argv(data_dir, out, "--max_train_steps", str(step + 1), "--resume_from_checkpoint",
                                             "latest")], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [checkpoint_step(p) for p in list_checkpoints(out)] == [step, step + 1]
