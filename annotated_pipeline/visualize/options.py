"""The sampling options the visualisation commands share, with the sample command's names and defaults.

    pipeline                a saved pipeline folder or a Hub repo id
    --scheduler             one of evaluation.evaluate.SCHEDULERS (default "dpmsolver", as `sample`)
    --num_inference_steps   the chain's length
    --seed                  one generator, seeded once
    --class_labels          one class for every image, or one per image (class-conditional pipelines)
    --guidance_scale, --guidance_interval   classifier-free guidance, as `sample`
    --output                the file written
"""

import torch

from ..evaluation import evaluate
from ..pipelines.samplers import SCHEDULERS, set_scheduler
from ..utils.outputs import GIF, IMAGE, output_file


def add_sampling_options(parser, num_images, num_inference_steps, output):
    parser.add_argument("pipeline", help="a saved pipeline folder or a Hub repo id")
    parser.add_argument("--num_images", type=int, default=num_images)
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="dpmsolver")
    parser.add_argument("--num_inference_steps", type=int, default=num_inference_steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class_labels", type=int, nargs="+", default=None, metavar="Y",
                        help="one class for every image or one per image (default: the classes in turn)")
    parser.add_argument("--guidance_scale", type=float, default=1.0,
                        help="classifier-free guidance for class-conditional pipelines with a 'no class' embedding (1 = none)")
    parser.add_argument("--guidance_interval", type=int, nargs=2, default=None, metavar=("T_LOW", "T_HIGH"),
                        help="guide only the steps with T_LOW <= t <= T_HIGH (training timesteps; default: every step)")
    parser.add_argument("--output", type=output_file(GIF if output.endswith(".gif") else IMAGE), default=output)


def check_sampling_options(parser, args):
    """argparse errors (exit 2) for values the pipeline would refuse only after loading."""
    if args.num_images < 1:
        parser.error(f"--num_images must be >= 1, got {args.num_images}")
    if args.num_inference_steps < 1:
        parser.error(f"--num_inference_steps must be >= 1, got {args.num_inference_steps}")
    if args.class_labels is not None and len(args.class_labels) not in (1, args.num_images):
        parser.error(f"--class_labels takes one class or one per image ({args.num_images}), got {len(args.class_labels)}")


def load_for_figures(args):
    """The pipeline of `args.pipeline` with `args.scheduler` swapped in and no progress bar."""
    pipe = evaluate.load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
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
