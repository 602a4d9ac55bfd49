"""A run owns its --output_dir (annotated_pipeline/training/ownership.py).

    two writers          two real `train` processes on one folder: the second is refused while the
                         first runs; after the first is killed, its lock is taken over with a note
    a finished folder    a second `train` into it is refused and changes nothing; --overwrite_output_dir
                         replaces the run; `latest` with no checkpoint beside a saved pipeline is refused
    the last step        always gets a checkpoint, whatever --checkpointing_steps
    a refused run        leaves no folder and no logs/ behind
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: training_runs

from annotated_pipeline.training.checkpointing import list_checkpoints  # noqa: E402
from annotated_pipeline.training.ownership import LOCK_FILE  # noqa: E402
from train_accelerate import cli  # noqa: E402
from training_runs import REPO, TINY, small_parquet  # noqa: E402

pytestmark = pytest.mark.slow
PROG = "train_accelerate.py: error: "


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


def argv(data_dir, out, *extra):
    return ["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
            "--eval_batch_size", "1", "--ddpm_num_inference_steps", "2", "--logger", "none", *extra]


def train_process(data_dir, out, *extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-m", "annotated_pipeline.train", *argv(data_dir, out, *extra)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_error_line(err, prog=PROG):
    lines = [line for line in err.splitlines() if line.startswith(prog)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_two_writers_on_one_folder(tmp_path, data_dir):
    out = tmp_path / "out"
    # Long enough to be killed while training, and never saving a model on the way (12 images: 3 steps an epoch).
    first = train_process(data_dir, out, "--max_train_steps", "100000", "--checkpointing_steps", "100000",
                          "--save_model_epochs", "100000", "--save_images_epochs", "100000")
    try:
        deadline = time.time() + 120
        while not (out / LOCK_FILE).exists() or not (out / LOCK_FILE).read_text():
            assert first.poll() is None and time.time() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.2)
        second = train_process(data_dir, out, "--max_train_steps", "1")
        _, err = second.communicate(timeout=180)
        assert first.poll() is None  # the first run is still training
        assert second.returncode == 2
        line = one_error_line(err, "python -m annotated_pipeline.train: error: ")
        assert f"--output_dir {out} is in use by another train run (pid {first.pid} on host " in line
    finally:
        first.send_signal(signal.SIGKILL)  # killed: its lock file stays, with its pid
        first.communicate()
    assert str(first.pid) in (out / LOCK_FILE).read_text()

    # The lock of a dead process is taken over; `latest` with no checkpoint in a folder without a run starts afresh.
    third = train_process(data_dir, out, "--max_train_steps", "1", "--resume_from_checkpoint", "latest")
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err[-3000:]
    assert f"took over the lock of a run that is no longer running (pid {first.pid} on host " in err
    assert not (out / LOCK_FILE).exists()  # released at the end
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-1"]


def test_a_finished_folder_is_refused_unless_told_what_to_do(capsys, caplog, tmp_path, data_dir):
    out = tmp_path / "out"
    assert cli(argv(data_dir, out, "--max_train_steps", "3", "--checkpointing_steps", "2")) == 0
    capsys.readouterr()
    # The last step got a checkpoint although 3 is not a multiple of 2.
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-3"]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    assert cli(argv(data_dir, out, "--max_train_steps", "1", "--dim", "16")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"{PROG}--output_dir {out} already holds a run (model_index.json, checkpoint-2, checkpoint-3); "
                    "pass --resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or "
                    "choose another --output_dir")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written, nothing removed

    # `latest` beside a saved pipeline but no checkpoint: refused, not a silent fresh start over the model.
    for checkpoint in list_checkpoints(out):
        os.rename(checkpoint, tmp_path / Path(checkpoint).name)
    assert cli(argv(data_dir, out, "--max_train_steps", "1", "--resume_from_checkpoint", "latest")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--resume_from_checkpoint latest: " in line and "holds no complete checkpoint" in line
    assert "--overwrite_output_dir" in line and not (out / "logs").exists()
    os.rename(tmp_path / "checkpoint-2", out / "checkpoint-2")

    assert cli(argv(data_dir, out, "--max_train_steps", "1", "--dim", "16", "--overwrite_output_dir")) == 0
    assert "--overwrite_output_dir: removed the previous run's model_index.json" in caplog.text
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-1"]  # the old ones went with it
    assert '"dim": 16' in (out / "unet" / "config.json").read_text()


def test_a_refused_run_leaves_nothing_behind(capsys, tmp_path, data_dir):
    out = tmp_path / "new"
    assert cli(argv(data_dir, out, "--max_train_steps", "1", "--dim_mults", "1,2,2,2,2,2")) == 2
    assert "invalid model configuration" in one_error_line(capsys.readouterr().err)
    assert not out.exists()
