"""Post-hoc EMA in a real run (`train --posthoc_ema_every`, `export --sigma_rel`; training/posthoc_ema.py).

    the averages     a run checkpointed at every step: each snapshot equals the power-function average
                     computed directly from the checkpoints' training weights (Karras et al. 2024, sec. 3.1)
    resuming         a run stopped after a snapshot but before its checkpoint resumes to the same
                     snapshots, bit for bit, as the run that never stopped
    export           --sigma_rel writes the synthesized average into a pipeline that loads and samples
    bad input        one line, exit 2, nothing written
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: training_runs

from annotated_pipeline import AnnotatedDDPMPipeline  # noqa: E402
from annotated_pipeline.commands.export import main as export_main  # noqa: E402
from annotated_pipeline.training.posthoc_ema import (SNAPSHOT_FOLDER, STATE_FILE, gamma_of_sigma_rel,  # noqa: E402
                                                     list_snapshots, synthesize)
from train_accelerate import cli  # noqa: E402
from training_runs import TINY, small_parquet  # noqa: E402

pytestmark = pytest.mark.slow
PROG = "train_accelerate.py: error: "
STEPS = 5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


def argv(data_dir, out, *extra):
    return ["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
            "--eval_batch_size", "1", "--ddpm_num_inference_steps", "2", "--logger", "none",
            "--max_train_steps", str(STEPS), *extra]


def one_error_line(err, prog):
    lines = [line for line in err.splitlines() if line.startswith(prog)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def every_step(tmp_path_factory, data_dir):
    """A run with a checkpoint (so the training weights theta_t) and a snapshot after every step."""
    out = tmp_path_factory.mktemp("every") / "out"
    assert cli(argv(data_dir, out, "--checkpointing_steps", "1", "--posthoc_ema_every", "1",
                    "--posthoc_ema_sigma_rels", "0.1,0.25")) == 0
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    """The run the other tests use: snapshots every 2 steps, checkpoints at 3 and 5."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert cli(argv(data_dir, out, "--checkpointing_steps", "3", "--posthoc_ema_every", "2", "--use_ema")) == 0
    return out


def test_each_snapshot_is_the_power_function_average_of_the_training_weights(every_step):
    assert [step for step, _ in list_snapshots(every_step)] == list(range(1, STEPS + 1))
    thetas = [load_file(every_step / f"checkpoint-{t}" / "model.safetensors") for t in range(1, STEPS + 1)]
    for t, path in list_snapshots(every_step):
        with safe_open(path, framework="pt") as f:
            assert f.metadata()["step"] == str(t)
            for k, sigma_rel in enumerate((0.1, 0.25)):
                gamma = gamma_of_sigma_rel(sigma_rel)
                tau = np.arange(1, t + 1, dtype=np.float64)
                w = (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / t ** (gamma + 1)  # integral of p over a step
                for name in ("time_embedding.linear_1.weight", "final_conv.bias"):
                    direct = sum(w_tau * thetas[i][name].double() for i, w_tau in enumerate(w[:t]))
                    torch.testing.assert_close(f.get_tensor(f"{k}/{name}").double(), direct, rtol=1e-5, atol=1e-7)


def test_snapshots_at_every_k_steps_and_every_checkpoint(run):
    assert [step for step, _ in list_snapshots(run)] == [2, 3, 4, 5]
    for step in (3, 5):
        with safe_open(str(run / f"checkpoint-{step}" / STATE_FILE), framework="pt") as f:
            assert f.metadata()["step"] == str(step)
            assert f.metadata()["sigma_rels"] == "[0.05, 0.1]"  # the default pair


def test_a_stopped_run_resumes_to_the_same_snapshots(tmp_path, data_dir, run, caplog):
    caplog.set_level("INFO")
    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    # Stopped after snapshot 5 was written and before checkpoint-5: that snapshot is stale (here: garbage).
    shutil.rmtree(stopped / "checkpoint-5")
    for name in ("model_index.json",):
        (stopped / name).unlink()
    (stopped / SNAPSHOT_FOLDER / "snapshot-00000005.safetensors").write_bytes(b"not a snapshot")
    assert cli(argv(data_dir, stopped, "--checkpointing_steps", "3", "--posthoc_ema_every", "2", "--use_ema",
                    "--resume_from_checkpoint", "latest")) == 0
    assert "snapshot-00000004.safetensors: written after step 3" in caplog.text
    for (step, a), (_, b) in zip(list_snapshots(run), list_snapshots(stopped), strict=True):
        assert load_file(a).keys() == load_file(b).keys()
        for key, tensor in load_file(a).items():
            assert torch.equal(tensor, load_file(b)[key]), (step, key)


def test_export_writes_the_synthesized_average(tmp_path, run, capsys):
    out = tmp_path / "picked"
    assert export_main([str(run / "checkpoint-5"), str(out), "--sigma_rel", "0.08", "--num_samples", "2"]) == 0
    assert "post-hoc EMA weights, sigma_rel 0.08" in capsys.readouterr().out
    theta_hat, used = synthesize(run, 0.08, 5)
    assert sorted({step for step, _, _ in used}) == [2, 3, 4, 5]
    pipe = AnnotatedDDPMPipeline.from_pretrained(out)
    for name, p in pipe.unet.named_parameters():
        assert torch.equal(p.detach(), theta_hat[name]), name
    assert "sigma_rel 0.08 (Karras et al. 2024)" in (out / "README.md").read_text()
    images = pipe(batch_size=1, num_inference_steps=2, output_type="np").images
    assert np.isfinite(images).all()
    # An earlier checkpoint: from the snapshots up to its step only.
    assert export_main([str(run / "checkpoint-3"), str(tmp_path / "at3"), "--sigma_rel", "0.2", "--num_samples", "0"]) == 0


@pytest.mark.parametrize("extra,expected", [
    (["--sigma_rel", "0.5"], "sigma_rel must lie in (0, 0.2887]"),
    (["--sigma_rel", "0.1", "--ema"], "--ema and --sigma_rel each choose the weights: give one"),
])
def test_export_refuses_bad_widths(tmp_path, run, capsys, extra, expected):
    prog = "python -m annotated_pipeline.commands.export"
    assert export_main([str(run / "checkpoint-5"), str(tmp_path / "x"), *extra]) == 2
    assert expected in one_error_line(capsys.readouterr().err, f"{prog}: error: ")
    assert not (tmp_path / "x").exists()


def test_export_of_a_run_without_snapshots(tmp_path, data_dir, capsys):
    out = tmp_path / "plain"
    assert cli(argv(data_dir, out, "--max_train_steps", "2", "--checkpointing_steps", "2")) == 0
    capsys.readouterr()
    assert export_main([str(out / "checkpoint-2"), str(tmp_path / "x"), "--sigma_rel", "0.1"]) == 2
    line = one_error_line(capsys.readouterr().err, "python -m annotated_pipeline.commands.export: error: ")
    assert "holds no snapshot up to step 2: train with --posthoc_ema_every K" in line
    # and resuming it with --posthoc_ema_every: an average started part-way is refused
    assert cli(argv(data_dir, out, "--max_train_steps", "3", "--resume_from_checkpoint", "latest",
                    "--posthoc_ema_every", "1", "--accept_changed_args")) == 2
    assert "holds no post-hoc EMA state" in one_error_line(capsys.readouterr().err, PROG)


def test_bad_training_options(tmp_path, data_dir, capsys):
    assert cli(argv(data_dir, tmp_path / "a", "--posthoc_ema_sigma_rels", "0.1")) == 2
    assert "give --posthoc_ema_every K as well" in one_error_line(capsys.readouterr().err, PROG)
    assert cli(argv(data_dir, tmp_path / "b", "--posthoc_ema_every", "0")) == 2
    assert "--posthoc_ema_every must be > 0" in one_error_line(capsys.readouterr().err, PROG)
    with pytest.raises(SystemExit) as exit_info:
        cli(argv(data_dir, tmp_path / "c", "--posthoc_ema_every", "2", "--posthoc_ema_sigma_rels", "0.1,0.4"))
    assert exit_info.value.code == 2
    assert "expected comma-separated widths in (0, 0.2887]" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_folder_with_only_snapshots_holds_a_run(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    (out / SNAPSHOT_FOLDER).mkdir(parents=True)
    (out / SNAPSHOT_FOLDER / "snapshot-00000002.safetensors").write_bytes(b"")
    assert cli(argv(data_dir, out, "--posthoc_ema_every", "2")) == 2
    assert "already holds a run (posthoc_ema)" in one_error_line(capsys.readouterr().err, PROG)
