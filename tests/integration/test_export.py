"""Checkpoints are models: checkpoint-N/ holds unet/, unet_ema/ and scheduler/; `annotated-pipeline export`
turns one into a saved pipeline that loads by both routes; `sample` and `evaluate` read it directly.

One training run (the training command's main, in-process; 1 process, EMA, class-conditional with label dropout, 28x28 so that `evaluate`'s
Fashion-MNIST classifier can judge it, 3 steps, a checkpoint at step 3) is shared by the tests. What they
compare with is independent of the code under test: accelerate's own model.safetensors, the EMA shadow
parameters in accelerate's pickle, and the pipeline the run itself saved at its end (the EMA weights).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from training_runs import EMBEDDED, REPO, TINY, small_parquet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "pipelines"))
from test_pipeline import run_route2, sample  # noqa: E402 (the pipeline tests' helpers)

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedUNet2DModel, hub
from annotated_pipeline.evaluation import evaluate as evaluate_module
from annotated_pipeline.checkpoints import load_pipeline, pipeline_from_checkpoint
from annotated_pipeline.commands.export import main as export_main
from annotated_pipeline.commands.sample import sample_grid
from annotated_pipeline.train import main as train_main
from annotated_pipeline.training.checkpointing import missing_files

STEP = 3
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
TINY28 = [arg if arg != "16" else "28" for arg in TINY]  # TINY at the classifier's 28x28
assert TINY28[TINY28.index("--resolution") + 1] == "28"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = small_parquet(tmp_path_factory.mktemp("data"))
    out = root / "out"
    code = train_main([
        "--train_data_dir", str(data), "--output_dir", str(out), *TINY28, "--eval_batch_size", "2",
        "--ddpm_num_inference_steps", "2", "--train_batch_size", "4", "--max_train_steps", str(STEP),
        "--checkpointing_steps", str(STEP), "--use_ema", "--label_column", "label", "--class_dropout_prob", "0.1",
        "--logger", "none",
    ])
    assert code == 0
    return out


def ema_shadow(checkpoint):
    """The EMA weights as the run saved them for resuming (ema.safetensors, by parameter name), in
    model.parameters() order."""
    shadow = load_file(checkpoint / "ema.safetensors")
    names = [name for name, _ in AnnotatedUNet2DModel.from_pretrained(checkpoint / "unet").named_parameters()]
    assert shadow.keys() == set(names)
    return [shadow[name] for name in names]


def test_checkpoint_holds_the_training_and_ema_weights_as_diffusers_folders(run):
    checkpoint = run / f"checkpoint-{STEP}"
    for name in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet_ema/config.json",
                 "unet_ema/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"):
        assert (checkpoint / name).is_file(), name
    assert not list(checkpoint.rglob("*.incomplete")) and not list(run.glob(".checkpoint-*"))

    training = load_file(checkpoint / "model.safetensors")  # what accelerate saved for resuming
    unet = AnnotatedUNet2DModel.from_pretrained(checkpoint / "unet")
    assert unet.state_dict().keys() == training.keys()
    for name, tensor in unet.state_dict().items():
        torch.testing.assert_close(tensor, training[name], rtol=0, atol=0)

    ema = AnnotatedUNet2DModel.from_pretrained(checkpoint / "unet_ema")
    shadow = ema_shadow(checkpoint)
    parameters = list(ema.named_parameters())
    assert len(parameters) == len(shadow)
    for (name, parameter), expected in zip(parameters, shadow):
        torch.testing.assert_close(parameter.data, expected, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(p.data, training[n]) for n, p in parameters), "EMA and training weights should differ"
    config = json.loads((checkpoint / "unet" / "config.json").read_text())
    assert json.loads((checkpoint / "unet_ema" / "config.json").read_text()) == config
    assert config["num_class_embeds"] == 10 and config["null_class_embed"] is True

    scheduler = json.loads((checkpoint / "scheduler" / "scheduler_config.json").read_text())
    saved = json.loads((run / "scheduler" / "scheduler_config.json").read_text())  # the grid's sampler, same schedule
    assert saved["_class_name"] == "DPMSolverMultistepScheduler" and scheduler["num_train_timesteps"] == 20
    for key in ("num_train_timesteps", "beta_schedule", "prediction_type", "timestep_spacing", "thresholding"):
        assert saved[key] == scheduler[key], key


def test_export_loads_by_both_routes_and_samples_as_the_trained_pipeline(run, tmp_path, capsys):
    trained = AnnotatedDDPMPipeline.from_pretrained(run)  # the run's own pipeline: the EMA weights at step 3
    trained.set_progress_bar_config(disable=True)
    reference = sample(trained)

    out = tmp_path / "exported"
    assert export_main([str(run / f"checkpoint-{STEP}"), str(out), "--num_samples", "4"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"Exported checkpoint-{STEP} (EMA weights) -> {out}: pipeline, README.md, samples.png")
    for name in ("model_index.json", "pipeline.py", "unet/unet_2d.py", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "samples.png", "README.md"):
        assert (out / name).is_file(), name

    route1 = AnnotatedDDPMPipeline.from_pretrained(out)
    route1.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(sample(route1), reference)
    np.testing.assert_array_equal(run_route2(out, tmp_path / "route2.npy", tmp_path), reference)

    card = ModelCard.load(out / "README.md")
    args = hub._card_inputs(out)["training_args"]
    assert args["global_step"] == STEP and args["label_column"] == "label" and args["use_ema"] is True
    assert f"`checkpoint-{STEP}` (EMA weights)" in card.text and "samples.png" in card.text


def test_export_no_ema_writes_the_training_weights(run, tmp_path, capsys):
    out = tmp_path / "training-weights"
    out.mkdir()  # an empty folder is a fine OUT
    assert export_main([str(run / f"checkpoint-{STEP}"), str(out), "--no-ema", "--num_samples", "0"]) == 0
    assert "(training weights)" in capsys.readouterr().out and not (out / "samples.png").exists()
    assert not list(tmp_path.glob(".*incomplete"))
    saved = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    training = load_file(run / f"checkpoint-{STEP}" / "model.safetensors")
    assert saved.keys() == training.keys() and all(torch.equal(saved[k], training[k]) for k in saved)


def one_error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_export_refuses_what_it_cannot_export(run, tmp_path, capsys):
    checkpoint = run / f"checkpoint-{STEP}"
    prog = "annotated-pipeline export"

    without_ema = tmp_path / "noema" / f"checkpoint-{STEP}"  # what a run without --use_ema writes: no unet_ema/
    shutil.copytree(checkpoint, without_ema, ignore=shutil.ignore_patterns("unet_ema", "ema.*"))
    assert export_main([str(without_ema), str(tmp_path / "a"), "--ema"], prog=prog) == 2
    assert one_error_line(capsys) == f"{prog}: error: {without_ema} has no EMA weights (the run was trained without --use_ema); use --no-ema"
    assert export_main([str(without_ema), str(tmp_path / "a"), "--num_samples", "0"], prog=prog) == 0  # default: theta
    assert "(training weights)" in capsys.readouterr().out

    incomplete = tmp_path / "run" / f".checkpoint-{STEP}.incomplete"
    shutil.copytree(checkpoint, incomplete)
    assert export_main([str(incomplete), str(tmp_path / "b")], prog=prog) == 2
    assert "is an incomplete checkpoint" in one_error_line(capsys)

    older = tmp_path / "old" / f"checkpoint-{STEP}"  # written before checkpoints held models
    shutil.copytree(checkpoint, older, ignore=shutil.ignore_patterns("unet", "unet_ema", "scheduler"))
    assert export_main([str(older), str(tmp_path / "c")], prog=prog) == 2
    assert "holds no unet/ folder" in one_error_line(capsys)
    assert missing_files(older) == []  # ... and still a complete checkpoint for --resume_from_checkpoint

    half = tmp_path / "half" / f"checkpoint-{STEP}"
    shutil.copytree(checkpoint, half, ignore=shutil.ignore_patterns("optimizer.bin"))
    assert export_main([str(half), str(tmp_path / "d")], prog=prog) == 2
    assert "is not a complete checkpoint (it has no optimizer.bin)" in one_error_line(capsys)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert export_main([str(checkpoint), str(taken)], prog=prog) == 2
    assert one_error_line(capsys) == f"{prog}: error: {taken} exists and is not an empty folder; give a new OUT folder"
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_export_refuses_a_sample_grid_that_cannot_fit_before_any_work(run, tmp_path, capsys):
    prog = "annotated-pipeline export"
    start = time.perf_counter()
    assert export_main([str(run / f"checkpoint-{STEP}"), str(tmp_path / "big"), "--num_samples", "100000"], prog=prog) == 2
    assert time.perf_counter() - start < 5
    assert one_error_line(capsys) == (f"{prog}: error: a grid of 100000 images of 28 px enlarged 4 times is 35504 px "
                                      "wide, over the 16383 px an image may have: lower --num_samples (at most 21316 "
                                      "images here)")
    assert not (tmp_path / "big").exists() and not (tmp_path / ".big.incomplete").exists()


def test_sample_command_reads_a_checkpoint_folder(run, tmp_path):
    checkpoint = run / f"checkpoint-{STEP}"
    output = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, "-m", "annotated_pipeline.commands.cli", "sample", str(checkpoint), "--num_images", "4",
         "--num_inference_steps", "3", "--scheduler", "dpmsolver", "--scale", "1", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=OFFLINE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 samples (dpmsolver, 3 steps, seed 0)" in result.stdout
    # The grid of the run's own (EMA) pipeline, drawn here with the same arguments.
    expected = sample_grid(AnnotatedDDPMPipeline.from_pretrained(run), 4, "dpmsolver", 3, 0, precision="auto")  # as the CLI
    np.testing.assert_array_equal(np.asarray(Image.open(output)), np.asarray(expected))


def test_evaluate_reads_a_checkpoint_folder(run, tmp_path, capsys):
    reference = tmp_path / "reference"
    reference.mkdir()
    table = pq.read_table(EMBEDDED)
    pq.write_table(table.slice(0, 16), reference / "test.parquet")
    pq.write_table(table.slice(100, 16), reference / "train.parquet")
    checkpoint = run / f"checkpoint-{STEP}"
    report_file = tmp_path / "report.json"
    assert evaluate_module.main([str(checkpoint), "--num_samples", "8", "--scheduler", "ddim", "--num_inference_steps",
                                 "2", "--batch_size", "8", "--data_root", str(reference), "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["num_samples"] == 8 and "label_accuracy" in report  # class-conditional: asked for labels
    assert "Frechet" in capsys.readouterr().out
    # What it evaluated: the checkpoint's EMA weights, i.e. the run's own pipeline (sampling is seeded, so the
    # same weights and scheduler give the same report).
    loaded = load_pipeline(checkpoint)
    saved = load_file(run / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(loaded.unet.state_dict()[k], saved[k]) for k in saved)
    saved_scheduler = AnnotatedDDPMPipeline.from_pretrained(run).scheduler.config  # the grid's sampler, same schedule
    assert all(loaded.scheduler.config[key] == saved_scheduler[key] for key in ("num_train_timesteps", "beta_schedule",
                                                                                "prediction_type", "timestep_spacing"))


def test_load_pipeline_chooses_the_weights(run):
    checkpoint = run / f"checkpoint-{STEP}"
    assert type(load_pipeline(checkpoint)) is AnnotatedDDPMPipeline
    theta = pipeline_from_checkpoint(checkpoint, ema=False).unet.state_dict()
    ema = pipeline_from_checkpoint(checkpoint).unet.state_dict()
    saved = load_file(run / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(ema[k], saved[k]) for k in saved)
    assert not all(torch.equal(theta[k], saved[k]) for k in saved)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of the size asked for (in bytes), as test_checkpointing.py mounts one for a full disk."""
    mounts = []

    def mount(size):
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_export_to_a_full_disk_names_the_file_it_could_not_write(run, tmp_path, small_disk, capsys):
    checkpoint, prog, page = str(run / f"checkpoint-{STEP}"), "annotated-pipeline export", 4096
    assert export_main([checkpoint, str(tmp_path / "whole"), "--num_samples", "0"], prog=prog) == 0
    capsys.readouterr()
    files = [path for path in (tmp_path / "whole").rglob("*") if path.is_file()]
    weights = tmp_path / "whole" / "unet" / "diffusion_pytorch_model.safetensors"
    # The weights (safetensors, written by Rust) do not fit: half their size.
    disk = small_disk(weights.stat().st_size // 2 // page * page)
    assert export_main([checkpoint, str(disk / "model"), "--num_samples", "0"], prog=prog) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"{prog}: error: could not write {disk / 'model' / 'unet' / 'diffusion_pytorch_model.safetensors'}: "
                           f"no space left on the device that holds {disk} (")
    assert line.endswith("MiB free); nothing was exported, free some space and run it again")
    assert os.listdir(disk) == []  # no half-written folder left behind
    # The pipeline fits (each file takes whole pages), samples.png (64 samples, enlarged: over a page) does not.
    pipeline_files = [path for path in files if path.name not in ("README.md", "card_inputs.json")]
    disk = small_disk(sum(-(-path.stat().st_size // page) * page for path in pipeline_files) + page)
    assert export_main([checkpoint, str(disk / "model"), "--num_samples", "64"], prog=prog) == 2
    err = capsys.readouterr().err  # the sampling's progress bar, then one line
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        f"{prog}: error: could not write {disk / 'model' / 'samples.png'}: no space left on the device")
    assert os.listdir(disk) == []
