"""The `python -m annotated_pipeline.commands.sample` command: a deterministic grid from a saved pipeline."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.commands.sample import main, sample_grid


def test_sample_command_writes_a_deterministic_grid(tmp_path, capsys):
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2,
                                attention_heads=2, attention_head_dim=8)
    AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine")
                          ).save_pretrained(tmp_path / "pipe")
    args = [str(tmp_path / "pipe"), "--num_images", "6", "--num_inference_steps", "3", "--scale", "2",
            "--scheduler", "dpmsolver"]
    main(args + ["--output", str(tmp_path / "a.png")])
    assert "6 samples (dpmsolver, 3 steps, seed 0)" in capsys.readouterr().out
    grid = Image.open(tmp_path / "a.png")
    assert grid.mode == "L" and grid.size == (3 * 8 * 2, 2 * 8 * 2)  # 6 images: 2 rows of 3, enlarged 2x
    result = subprocess.run([sys.executable, "-m", "annotated_pipeline.commands.sample", *args, "--output", str(tmp_path / "b.png")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.asarray(grid), np.asarray(Image.open(tmp_path / "b.png")))
    other = sample_grid(str(tmp_path / "pipe"), num_images=6, scheduler="dpmsolver", num_inference_steps=3, seed=1)
    assert not np.array_equal(np.asarray(other), np.asarray(Image.open(tmp_path / "b.png").resize(other.size)))


def test_a_pipeline_passed_in_keeps_its_scheduler_and_dtype():
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2,
                                attention_heads=2, attention_head_dim=8)
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine")
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    grid = sample_grid(pipe, num_images=4, num_inference_steps=3, scheduler="ddim", precision="bf16")
    assert grid.size == (2 * 8, 2 * 8)
    assert pipe.scheduler is scheduler and pipe.unet.dtype == torch.float32


def test_guided_grid_of_a_class_conditional_pipeline(tmp_path, capsys):
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8, num_class_embeds=3, null_class_embed=True)
    AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine")
                          ).save_pretrained(tmp_path / "pipe")
    args = [str(tmp_path / "pipe"), "--num_images", "6", "--num_inference_steps", "3", "--scale", "1"]
    main(args + ["--guidance_scale", "2", "--output", str(tmp_path / "guided.png")])
    assert "6 samples (AnnotatedDDPMScheduler, 3 steps, guidance 2, seed 0)" in capsys.readouterr().out
    main(args + ["--guidance_scale", "2", "--guidance_interval", "10", "30", "--output", str(tmp_path / "limited.png")])
    assert "6 samples (AnnotatedDDPMScheduler, 3 steps, guidance 2 at t in 10..30, seed 0)" in capsys.readouterr().out
    main(args + ["--output", str(tmp_path / "plain.png")])
    guided, plain = (np.asarray(Image.open(tmp_path / name)) for name in ("guided.png", "plain.png"))
    assert guided.shape == plain.shape == (16, 24) and not np.array_equal(guided, plain)


def test_left_out_settings_come_from_the_folder(tmp_path, capsys):
    """No --scheduler, --num_inference_steps or --guidance_scale: the folder's scheduler and sampling defaults;
    each flag given wins."""
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8, num_class_embeds=3, null_class_embed=True)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine"))
    pipe.set_sampling_defaults(num_inference_steps=4, guidance_scale=3.0, guidance_interval=(10, 30))
    pipe.save_pretrained(tmp_path / "pipe")
    main([str(tmp_path / "pipe"), "--num_images", "3", "--output", str(tmp_path / "a.png")])
    assert "3 samples (AnnotatedDDPMScheduler, 4 steps, guidance 3 at t in 10..30, seed 0)" in capsys.readouterr().out
    main([str(tmp_path / "pipe"), "--num_images", "3", "--guidance_scale", "1", "--num_inference_steps", "2",
          "--output", str(tmp_path / "b.png")])
    assert "3 samples (AnnotatedDDPMScheduler, 2 steps, seed 0)" in capsys.readouterr().out


def test_sample_command_failures_are_one_line(tmp_path):
    """A typo in the path (exit 2) and a pipeline whose samples come out NaN (exit 1): one line, no traceback."""
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2,
                                attention_heads=2, attention_head_dim=8)
    with torch.no_grad():
        next(unet.parameters()).fill_(float("nan"))
    AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine")
                          ).save_pretrained(tmp_path / "broken")
    for path, code, message in ((str(tmp_path / "brokne"), 2, "No folder"),
                                (str(tmp_path / "broken"), 1, "4 of 4 samples hold NaN or inf")):
        result = subprocess.run([sys.executable, "-m", "annotated_pipeline.commands.sample", path, "--num_images", "4",
                                 "--num_inference_steps", "2", "--output", str(tmp_path / "grid.png")],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == code, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("python -m annotated_pipeline.commands.sample: error: ") and message in lines[-1]
        assert "Traceback" not in result.stderr and not (tmp_path / "grid.png").exists()


def saved_pipeline(folder, sample_size=28):
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=sample_size, dim=8, dim_mults=(1, 2), resnet_block_groups=2,
                                attention_heads=2, attention_head_dim=8)
    AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine")
                          ).save_pretrained(folder)
    return str(folder)


def test_a_grid_in_chunks_is_the_grid_of_one_batch(tmp_path):
    folder = saved_pipeline(tmp_path / "pipe", sample_size=8)
    args = [folder, "--num_images", "5", "--num_inference_steps", "3", "--scale", "1", "--scheduler", "dpmsolver"]
    assert main(args + ["--output", str(tmp_path / "one.png")]) == 0
    assert main(args + ["--output", str(tmp_path / "chunks.png"), "--batch_size", "2"]) == 0
    one, chunks = (np.asarray(Image.open(tmp_path / name)).astype(int) for name in ("one.png", "chunks.png"))
    assert np.abs(one - chunks).max() <= 1  # the same floats, up to the last bit of a batch's convolution: one grey level


def test_a_count_that_cannot_fit_is_refused_in_one_line_before_any_work(tmp_path, capsys):
    folder = saved_pipeline(tmp_path / "pipe")
    prog = "annotated-pipeline sample"
    start = time.perf_counter()
    assert main([folder, "--num_images", "100000", "--output", str(tmp_path / "grid.png")], prog=prog) == 2
    assert time.perf_counter() - start < 5
    line = capsys.readouterr().err.strip()
    assert line == (f"{prog}: error: a grid of 100000 images of 28 px enlarged 4 times is 35504 px wide, over the 16383 px "
                    "an image may have: lower --num_images or --scale (at most 21316 images here)")
    # As a process: exit 2, the same line, no traceback, nothing written.
    result = subprocess.run([sys.executable, "-m", "annotated_pipeline", "sample", folder, "--num_images", "100000",
                             "--output", str(tmp_path / "grid.png")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith("(at most 21316 images here)")
    assert "Traceback" not in result.stderr and not (tmp_path / "grid.png").exists()
    with pytest.raises(SystemExit) as exit_:
        main([folder, "--num_images", "1", "--batch_size", "0"], prog=prog)
    assert exit_.value.code == 2
    assert "--batch_size must be >= 1, got 0" in capsys.readouterr().err
