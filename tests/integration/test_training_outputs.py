"""A training run's folder and an export sample as the run drew its grids (issue #33): the grid's sampler is the
folder's scheduler component, its steps are model_index.json's default, and samples.png is enlarged to be seen."""

import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, DDIMScheduler
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training_runs import TINY, small_parquet  # noqa: E402

from annotated_pipeline import AnnotatedDDPMPipeline  # noqa: E402
from annotated_pipeline.commands.export import main as export_main  # noqa: E402
from annotated_pipeline.commands.sample import main as sample_main  # noqa: E402
from annotated_pipeline.train import main as train_main  # noqa: E402


def steps_taken(pipe, **kwargs):
    """How many scheduler steps `pipe(...)` takes."""
    calls = []
    pipe.set_progress_bar_config(disable=True)
    pipe(batch_size=1, generator=torch.Generator().manual_seed(0), output_type="np",
         callback_on_step_end=lambda p, i, t, tensors: calls.append(int(t)) or {}, **kwargs)
    return len(calls)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("outputs")
    data = small_parquet(folder / "data", n=8)
    out = folder / "run"
    argv = ["--train_data_dir", str(data), "--output_dir", str(out), "--max_train_steps", "2",
            "--checkpointing_steps", "2", "--train_batch_size", "4", "--logger", "none",
            *TINY]  # TINY: 20 training timesteps, grids with 5 steps; precision auto, as the other in-process runs (one AcceleratorState)
    assert train_main(argv) == 0
    return out


@pytest.mark.slow
def test_a_training_output_samples_with_the_grid_sampler_and_steps(run, tmp_path, capsys):
    index = json.loads((run / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"]
    assert index["default_num_inference_steps"] == 5 and index["default_guidance_scale"] is None
    pipe = AnnotatedDDPMPipeline.from_pretrained(run)
    assert type(pipe.scheduler) is DPMSolverMultistepScheduler and pipe.scheduler.config.use_lu_lambdas
    assert pipe.scheduler.config.num_train_timesteps == 20  # the training schedule, in the solver's config
    assert steps_taken(pipe) == 5  # not all 20 training timesteps
    assert steps_taken(pipe, num_inference_steps=3) == 3  # an explicit argument wins
    pipe.set_sampling_defaults(num_inference_steps=7)  # README: how to change them, then save_pretrained
    assert steps_taken(pipe) == 7
    # The checkpoint keeps the training scheduler (Algorithm 2) for resuming.
    checkpoint_scheduler = json.loads((run / "checkpoint-2" / "scheduler" / "scheduler_config.json").read_text())
    assert checkpoint_scheduler["_class_name"] == "AnnotatedDDPMScheduler"
    # samples.png: 4 samples of 16 pixels in a 2 x 2 grid, each pixel 4 x 4.
    assert Image.open(run / "samples.png").size == (2 * 16 * 4, 2 * 16 * 4)
    assert sample_main([str(run), "--num_images", "2", "--output", str(tmp_path / "grid.png")]) == 0
    assert "2 samples (DPMSolverMultistepScheduler, 5 steps, seed 0)" in capsys.readouterr().out


@pytest.mark.slow
def test_an_export_samples_as_the_run_did(run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert export_main([str(run / "checkpoint-2"), str(out), "--num_samples", "4"]) == 0
    assert "Sample grid" in capsys.readouterr().err  # the grid's progress bar
    index = json.loads((out / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"] and index["default_num_inference_steps"] == 5
    assert Image.open(out / "samples.png").size == (2 * 16 * 4, 2 * 16 * 4)
    pipe = AnnotatedDDPMPipeline.from_pretrained(out)
    assert steps_taken(pipe) == 5
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # any sampler still swaps in
    assert steps_taken(pipe) == 5
