"""The options of the figure commands: the sampling options every sampling command shares
(pipelines/samplers.py: a setting left out is the folder's recommendation, as in `sample`), the number of
images and the file written."""

import torch

from ..checkpoints import load_pipeline
from ..pipelines.samplers import add_sampling_options, resolve_sampling_options, set_scheduler
from ..utils.outputs import GIF, IMAGE, output_file


def add_figure_options(parser, num_images, output):
    parser.add_argument("pipeline", help="a saved pipeline folder, a Hub repo id, or a training checkpoint folder")
    parser.add_argument("--num_images", type=int, default=num_images)
    add_sampling_options(parser)
    parser.add_argument("--output", type=output_file(GIF if output.endswith(".gif") else IMAGE), default=output)


def load_for_figures(args):
    """The pipeline of `args.pipeline` with `args.scheduler` swapped in and no progress bar; the sampling
    options left out are filled with the folder's recommendation (`resolve_sampling_options`)."""
    pipe = load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    resolve_sampling_options(pipe, args)
    return set_scheduler(pipe, args.scheduler)


def sampling_kwargs(args):
    """What the pipeline call takes from the options (the seed becomes `seed=` for the figure functions)."""
    kwargs = dict(num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                  guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None, seed=args.seed)
    if args.class_labels is not None:
        kwargs["class_labels"] = args.class_labels[0] if len(args.class_labels) == 1 else args.class_labels
    return kwargs


def generator(seed):
    return torch.Generator().manual_seed(seed)
