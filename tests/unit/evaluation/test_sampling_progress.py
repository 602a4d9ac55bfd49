"""evaluate's and nearest's samples (evaluation/sampling.py) count the images on stderr where the pipeline shows
progress, and say nothing where it does not (training's quality check); the pipeline's own setting comes back."""

import torch

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.evaluation.samples import generate_samples


def tiny():
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8)
    return AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=20, beta_schedule="cosine"))


def test_a_bar_of_images_where_the_pipeline_shows_progress(capsys):
    pipe = tiny()  # diffusers' default: progress shown
    samples = generate_samples(pipe, 5, 2, 2, seed=0)
    err = capsys.readouterr().err
    assert samples.shape == (5, 1, 8, 8) and "Sampling" in err and "5/5" in err
    assert "2/2" not in err.replace("5/5", "")  # no bar of steps per batch
    assert pipe._progress_bar_config.get("disable", False) is False  # the pipeline's setting came back


def test_silent_where_the_pipeline_is(capsys):
    pipe = tiny()
    pipe.set_progress_bar_config(disable=True)
    first = generate_samples(pipe, 3, 2, 2, seed=0)
    assert capsys.readouterr().err == "" and pipe._progress_bar_config["disable"] is True
    pipe.set_progress_bar_config(disable=False)
    torch.testing.assert_close(generate_samples(pipe, 3, 2, 2, seed=0), first, rtol=0, atol=0)  # the same samples
