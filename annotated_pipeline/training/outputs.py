"""What a training run shows and leaves behind: sample grids and the saved pipeline folder.

Samples are drawn with Ho et al. 2020, Algorithm 2 (`AnnotatedDDPMPipeline`). When an exponential
moving average of the weights is kept,

    theta_ema <- decay * theta_ema + (1 - decay) * theta,   decay = min(max_decay, 1 - (1 + step / inv_gamma) ** -power)

(the warmup form of diffusers' `EMAModel`), the samples and the saved pipeline use theta_ema: the
training weights are stored, overwritten with theta_ema, used, and put back (`ema_weights`).

The saved folder (`output_dir`) holds the pipeline (`save_pretrained`: model_index.json, unet/,
scheduler/, the code files), `samples.png` (a grid of `eval_batch_size` samples, enlarged
`SAMPLES_SCALE` times) and `README.md` (the model card with the training configuration). Only the
main process writes. The folder samples as the run drew its grids (`sampling_recommended`): its
scheduler component is the grid's sampler (`--grid_scheduler`, DPM-Solver++ by default) and
model_index.json says `--ddpm_num_inference_steps` (20), so `pipe()` and `annotated-pipeline sample`
on it take seconds, not all T steps of Algorithm 2. The checkpoints keep the training scheduler.
"""

import contextlib
import math
import os

import numpy as np
import torch
from diffusers.utils import make_image_grid

from ..pipelines.pipeline import AnnotatedDDPMPipeline
from ..pipelines.samplers import set_scheduler, using_sampler
from .args import args_for_model_card

SAMPLES_FILE = "samples.png"
SAMPLES_SCALE = 4  # samples.png: each pixel 4x4 (nearest neighbour), so a 28-pixel sample shows at 112 pixels
MAX_GRID_SIDE = 16383  # pixels: the most a WebP side may have, and far more than a screen shows


def check_grid(num_images, sample_size, scale, lower):
    """A ValueError, before any sampling, for a grid image (`to_grid`, enlarged `scale` times) wider than
    MAX_GRID_SIDE; `lower` names the options that shrink it."""
    side = math.ceil(math.sqrt(num_images)) * max(np.atleast_1d(sample_size)) * scale
    if side > MAX_GRID_SIDE:
        most = (MAX_GRID_SIDE // (max(np.atleast_1d(sample_size)) * scale)) ** 2
        raise ValueError(f"a grid of {num_images} images of {sample_size} px enlarged {scale} times is {side} px wide, "
                         f"over the {MAX_GRID_SIDE} px an image may have: lower {lower} (at most {most} images here)")


@contextlib.contextmanager
def ema_weights(model, ema):
    """Inside the block `model` carries the EMA weights; the training weights come back afterwards."""
    if ema is None:
        yield model
        return
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield model
    finally:
        ema.restore(model.parameters())


def make_pipeline(unet, noise_scheduler):
    """A sampling pipeline around the (unwrapped) U-Net; no progress bar inside the training one."""
    pipeline = AnnotatedDDPMPipeline(unet=unet, scheduler=noise_scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def draw_samples(pipeline, batch_size, num_inference_steps, seed, scheduler="default", progress=False):
    """`batch_size` samples with the sampler `scheduler` (`samplers.SCHEDULERS`; the pipeline's own one is
    put back afterwards); a fixed seed so grids are comparable over training. A class-conditional model
    draws the classes in turn (the pipeline's `class_labels=None`). With `progress`, a progress bar counts
    the steps.

    Returns a float array (B, H, W, C) in [0, 1].
    """
    pipeline.set_progress_bar_config(disable=not progress, desc="Sample grid", leave=False)
    try:
        with using_sampler(pipeline, scheduler):
            return pipeline(batch_size=batch_size, generator=torch.Generator(device="cpu").manual_seed(seed),
                            num_inference_steps=num_inference_steps, output_type="np", guidance_scale=1.0).images
    finally:
        pipeline.set_progress_bar_config(disable=True)


def sampling_recommended(pipeline, scheduler, num_inference_steps):
    """A pipeline on the same U-Net whose scheduler component is `scheduler` (`samplers.SCHEDULERS`, built from the
    pipeline's scheduler config) and whose `sampling_defaults` say `num_inference_steps`, unguided: what a saved
    folder should sample with, since its grids were drawn so. `pipeline` itself is left as it is."""
    recommended = AnnotatedDDPMPipeline(unet=pipeline.unet, scheduler=pipeline.scheduler)
    set_scheduler(recommended, scheduler)
    return recommended.set_sampling_defaults(num_inference_steps)


def samples_image(images, scale=SAMPLES_SCALE):
    """`to_grid(images)` enlarged `scale` times (nearest neighbour: the pixels stay sharp), as samples.png."""
    grid = to_grid(images)
    return grid.resize((grid.width * scale, grid.height * scale), resample=0)


def to_grid(images):
    """Tile (B, H, W, C) floats in [0, 1] into one PIL image, as square as the batch allows."""
    from diffusers.utils import numpy_to_pil

    pil_images = numpy_to_pil(np.asarray(images))
    cols = math.ceil(math.sqrt(len(pil_images)))
    rows = math.ceil(len(pil_images) / cols)
    if rows * cols > len(pil_images):  # pad with black tiles so make_image_grid gets a full grid
        blank = pil_images[0].copy()
        blank.paste(0, (0, 0, *blank.size))
        pil_images = pil_images + [blank] * (rows * cols - len(pil_images))
    # make_image_grid pastes onto an RGB canvas; grayscale samples stay one channel.
    return make_image_grid(pil_images, rows=rows, cols=cols).convert(pil_images[0].mode)


def log_samples(accelerator, logger_name, images, step):
    """Send a sample batch to the tracker: an image grid in TensorBoard, a list of images in W&B."""
    if logger_name == "tensorboard":
        accelerator.get_tracker("tensorboard").log_images({"samples": images}, step=step, dataformats="NHWC")
    elif logger_name == "wandb":
        accelerator.get_tracker("wandb").log_images({"samples": list(images)}, step=step)


def save_output_folder(pipeline, images, args, global_step, dataset_description):
    """Write the pipeline, samples.png and the model card into `args.output_dir` (main process only).

    The model card gets the training configuration without the Hub token.
    """
    from ..hub import write_model_card

    os.makedirs(args.output_dir, exist_ok=True)
    sampling_recommended(pipeline, args.grid_scheduler, args.ddpm_num_inference_steps).save_pretrained(args.output_dir)
    samples_image(images).save(os.path.join(args.output_dir, SAMPLES_FILE))
    training_args = args_for_model_card(args)
    training_args["global_step"] = global_step
    write_model_card(
        args.output_dir,
        training_args=training_args,
        dataset_name=dataset_description,
        samples_file=SAMPLES_FILE,
    )
