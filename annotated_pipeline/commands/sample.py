"""Sample a grid of images from a saved pipeline (a folder or a Hub repo id), from the command line:

    python -m annotated_pipeline.commands.sample pretrained/ddpm-fashion-mnist

Left out, the sampler, the number of steps and the guidance are the folder's own (its scheduler and
`sampling_defaults`): for the shipped model DPM-Solver++ (Lu et al. 2022, steps uniform in log-SNR),
20 steps, guidance 2 at t = 200..700, which score 7.2 against DDIM's 10.1 with 50 steps (Frechet
distance to the whole test split at N = 1000; benchmarks/RESULTS.md). `--scheduler` swaps in one
built from the same config: "ddim" (Song et al. 2021), "dpmsolver", or "ddpm" (Ho et al. 2020,
Algorithm 2, one step per training timestep).
"""

import argparse
import sys
import time

import torch

from ..utils.errors import run_reporting
from ..checkpoints import load_pipeline
from ..utils.memory import check_sampling_memory
from ..utils.hardware import PRECISION_HELP, PRECISIONS, resolve_precision, weights_in
from ..utils.outputs import IMAGE, output_file
from ..utils.options import SCALE_RANGE, number_in, span
from ..pipelines.samplers import add_sampling_options, check_sampling_options, using_sampler
from ..pipelines.pipeline_inputs import DEFAULT_MAX_BATCH_SIZE
from ..training.outputs import check_grid, to_grid


def sample_grid(pipeline_or_path, num_images=16, scheduler="default", num_inference_steps=None, seed=0, precision=None,
                guidance_scale=None, guidance_interval=None, class_labels=None, batch_size=None):
    """A PIL grid of `num_images` samples; deterministic for a seed. A class-conditional pipeline draws
    the classes in turn (0, 1, ..., K - 1, 0, ...) unless `class_labels` (one, or one per image) says which, with
    classifier-free guidance `guidance_scale`
    (at the timesteps in `guidance_interval` only, if given). None: the pipeline's `sampling_defaults`.
    precision: "bf16" holds the U-Net's weights in bfloat16, "auto" where that is native (hardware.py); None or
    "fp32": as they are. batch_size: images per U-Net call (None: the pipeline's chunk, DEFAULT_MAX_BATCH_SIZE);
    the grid is the same for any batch_size with a deterministic sampler (pipeline.py, `max_batch_size`).

    A pipeline passed in leaves with the scheduler and U-Net dtype it came with."""
    pipe = load_pipeline(pipeline_or_path)  # a pipeline, a saved folder, a Hub repo id or a checkpoint-N folder
    with using_sampler(pipe, scheduler), weights_in(pipe.unet, None if precision is None else resolve_precision(precision, pipe.device)):
        images = pipe(batch_size=num_images, generator=torch.Generator().manual_seed(seed),
                      num_inference_steps=num_inference_steps, output_type="np", guidance_scale=guidance_scale,
                      guidance_interval=guidance_interval, class_labels=class_labels, max_batch_size=batch_size).images
    return to_grid(images)


def main(argv=None, prog="python -m annotated_pipeline.commands.sample"):
    parser = argparse.ArgumentParser(prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description="Sample a grid of images from a saved pipeline (a folder, a Hub "
                                                 "repo id or a training checkpoint); settings left out are its own.")
    parser.add_argument("pipeline", help="a saved pipeline folder, a Hub repo id, or a training checkpoint folder")
    parser.add_argument("--num_images", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help="images per U-Net call: more are drawn in chunks of this many, so memory grows with "
                             "--num_images by the images only")
    add_sampling_options(parser)  # pipelines/samplers.py: left out = the folder's recommendation
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument("--bf16", action="store_const", const="bf16", dest="precision",
                        help="the same as --precision bf16 (its older spelling)")
    parser.add_argument("--output", type=output_file(IMAGE), default="samples-grid.png",
                        help="the grid image (its folder must exist; .png, .jpg, .webp, ...)")
    parser.add_argument("--scale", type=number_in(int, *SCALE_RANGE), default=4,
                        help=f"enlarge the grid this many times (nearest neighbour; {span(SCALE_RANGE)})")
    args = parser.parse_args(argv)
    check_sampling_options(parser, args)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    return run_reporting(prog, lambda: _run(args))


def _run(args):
    pipe = load_pipeline(args.pipeline)
    steps, scale, interval = pipe.resolve_sampling(args.num_inference_steps, args.guidance_scale,
                                                   args.guidance_interval)
    # What cannot fit is refused before any step: the one grid image, then the images and one chunk in memory.
    check_grid(args.num_images, pipe.unet.config.sample_size, args.scale, "--num_images or --scale")
    check_sampling_memory(pipe.unet, args.num_images, args.batch_size, scale != 1.0, pipe.device,
                          "lower --num_images or --batch_size")
    sampler = type(pipe.scheduler).__name__ if args.scheduler == "default" else args.scheduler
    start = time.perf_counter()
    precision = resolve_precision(args.precision, pipe.device)
    labels = None if args.class_labels is None else args.class_labels[0] if len(args.class_labels) == 1 else args.class_labels
    grid = sample_grid(pipe, args.num_images, args.scheduler, steps, args.seed, precision, scale, interval, labels,
                       args.batch_size)
    grid = grid.resize((grid.width * args.scale, grid.height * args.scale), resample=0)
    grid.save(args.output)
    guidance = f", guidance {scale:g}" if scale != 1.0 else ""
    if scale != 1.0 and interval is not None:
        guidance += " at t in {}..{}".format(*interval)
    print(f"{args.num_images} samples ({sampler}, {steps} steps{guidance}, seed {args.seed}) "
          f"in {time.perf_counter() - start:.1f} s, {precision} -> {args.output}")


if __name__ == "__main__":
    sys.exit(main())
