"""What a killed or diverging run leaves is never mistaken for good work.

    a kill during a replace   resuming from an earlier checkpoint re-writes checkpoint-4: the process is
                              killed (SIGKILL, a real subprocess) between moving the old checkpoint-4 aside
                              (`.checkpoint-4.replaced`) and renaming the new one into place. The next run
                              restores checkpoint-4, deletes the half-done rest, takes over the lock, and
                              resumes from it (training/checkpointing.py: recover_leftovers)
    blown-up weights          a resume with a learning rate that makes the weights useless while they and the
                              loss stay finite: the checkpoint is not written, the good one is not pruned, and
                              the run stops naming it (training/safeguards.py: refuse_diverged_weights)
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: training_runs

from annotated_pipeline.training.checkpointing import list_checkpoints  # noqa: E402
from train_accelerate import cli  # noqa: E402
from training_runs import REPO, TINY, small_parquet  # noqa: E402

pytestmark = pytest.mark.slow
PROG = "train_accelerate.py: error: "

# The training command, stopped for good right after the old checkpoint was moved aside.
KILLED_DURING_REPLACE = """
import os, sys, time
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if str(dst).endswith(".replaced"):
        open(sys.argv[1], "w").close()
        time.sleep(600)
os.replace = replace
from annotated_pipeline.train import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


def argv(data_dir, out, *extra):
    return ["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
            "--eval_batch_size", "1", "--ddpm_num_inference_steps", "2", "--logger", "none", "--use_ema", *extra]


def test_a_kill_while_replacing_a_checkpoint_is_recovered_at_the_next_start(tmp_path, data_dir, capsys, caplog):
    caplog.set_level("INFO")
    out = tmp_path / "out"
    assert cli(argv(data_dir, out, "--max_train_steps", "4", "--checkpointing_steps", "2")) == 0
    old = load_file(out / "checkpoint-4" / "model.safetensors")

    marker = tmp_path / "moved-aside"
    script = tmp_path / "killed_during_replace.py"
    script.write_text(KILLED_DURING_REPLACE)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen([sys.executable, str(script), str(marker),
                                *argv(data_dir, out, "--max_train_steps", "4", "--checkpointing_steps", "2",
                                      "--resume_from_checkpoint", str(out / "checkpoint-2"))],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    hidden = sorted(p.name for p in out.glob(".checkpoint-*"))
    assert hidden == [".checkpoint-4.incomplete", ".checkpoint-4.replaced"] and not (out / "checkpoint-4").exists()

    capsys.readouterr()
    assert cli(argv(data_dir, out, "--max_train_steps", "6", "--checkpointing_steps", "2",
                    "--resume_from_checkpoint", "latest")) == 0, capsys.readouterr().err[-3000:]
    log = caplog.text
    assert "restored checkpoint-4 from .checkpoint-4.replaced" in log
    assert "removed .checkpoint-4.incomplete" in log
    assert f"took over the lock of a run that is no longer running (pid {process.pid} on host " in log
    assert "Resumed from checkpoint-4 at global step 4" in log
    restored = load_file(out / "checkpoint-4" / "model.safetensors")
    assert all(torch.equal(old[k], restored[k]) for k in old)
    assert not list(out.glob(".checkpoint-*"))
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_weights_that_sample_nan_are_never_checkpointed(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    assert cli(argv(data_dir, out, "--max_train_steps", "2", "--checkpointing_steps", "2")) == 0
    pipeline_weights = (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    capsys.readouterr()

    code = cli(argv(data_dir, out, "--max_train_steps", "8", "--checkpointing_steps", "1", "--checkpoints_total_limit",
                    "1", "--resume_from_checkpoint", "latest", "--learning_rate", "1e4", "--lr_warmup_steps", "0",
                    "--accept_changed_args"))
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith(PROG)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "training diverged by step 3: the weights are finite but a short seeded sample from them holds NaN" in lines[0]
    assert f"the last good checkpoint is {out / 'checkpoint-2'}" in lines[0]
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-2"]  # not pruned for a broken one
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == pipeline_weights


def test_a_full_disk_at_the_final_save_is_one_line_naming_the_checkpoint(tmp_path, data_dir, capsys, monkeypatch):
    import errno

    from annotated_pipeline import AnnotatedDDPMPipeline

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(AnnotatedDDPMPipeline, "save_pretrained", full_disk)
    out = tmp_path / "out"
    code = cli(argv(data_dir, out, "--max_train_steps", "2", "--checkpointing_steps", "2"))
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith(PROG)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith(f"{PROG}could not write the pipeline in {out}: ")
    assert "the previous checkpoint checkpoint-2 is intact" in lines[0]
