"""What a newcomer's first mistakes get (issue #33): one line that names the option and what is allowed."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel, __version__
from annotated_pipeline.commands import cli
from annotated_pipeline.commands.sample import sample_grid


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8, num_class_embeds=3)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=20, beta_schedule="cosine"))
    pipe.set_progress_bar_config(disable=True)
    folder = tmp_path_factory.mktemp("conditional") / "pipe"
    pipe.save_pretrained(folder)
    return pipe, folder


def last_error(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("labels", ["9", ["1", "2"], 1.5, {0: 1}])
def test_class_labels_of_the_wrong_type_are_one_value_error(conditional, labels):
    pipe, _ = conditional
    with pytest.raises(ValueError, match="class_labels must be"):
        pipe(batch_size=2, class_labels=labels, num_inference_steps=2)


def test_sample_takes_class_labels(conditional, tmp_path, capsys):
    pipe, folder = conditional
    assert cli.main(["sample", str(folder), "--num_images", "2", "--class_labels", "2", "--num_inference_steps", "2",
                     "--precision", "fp32", "--scale", "1", "--output", str(tmp_path / "twos.png")]) == 0
    expected = sample_grid(pipe, 2, "default", 2, 0, "fp32", class_labels=2)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "twos.png")), np.asarray(expected))
    assert not np.array_equal(np.asarray(expected), np.asarray(sample_grid(pipe, 2, "default", 2, 0, "fp32")))
    assert cli.main(["sample", str(folder), "--num_images", "3", "--class_labels", "0", "1"]) == 2
    assert "--class_labels takes one class or one per image (3), got 2" in last_error(capsys)
    assert cli.main(["sample", str(folder), "--class_labels", "7", "--num_inference_steps", "2", "--scale", "1",
                     "--output", str(tmp_path / "sevens.png")]) == 2
    assert "class_labels must lie in 0..2" in last_error(capsys)


def test_num_images_zero_is_reported_under_its_own_name(conditional, capsys):
    _, folder = conditional
    assert cli.main(["sample", str(folder), "--num_images", "0"]) == 2
    assert last_error(capsys) == "annotated-pipeline sample: error: --num_images must be >= 1, got 0"


def test_version():
    result = subprocess.run([sys.executable, "-m", "annotated_pipeline.commands.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(f"annotated-pipeline {__version__} (torch ")


def test_export_help_is_whole_sentences(capsys):
    assert cli.main(["export", "--help"]) == 0
    help_text = capsys.readouterr().out
    description = help_text.split("\n\n")[1]
    assert description.rstrip().endswith(".") and "takes either:" not in help_text
    assert "examples:" in help_text
