"""The samplers a saved pipeline can be drawn with, by name: the one choice that the sample, evaluate,
train (its sample grids) and visualisation commands share.

    default     the pipeline's own scheduler, as its folder saved it (a training run's: AnnotatedDDPMScheduler,
                Ho et al. 2020, Algorithm 2; the shipped model's: DPM-Solver++, its recommended sampler)
    ddim        Song et al. 2021, eta = 0 unless asked: a deterministic chain of any length
    dpmsolver   DPM-Solver++(2M) (Lu et al. 2022), steps uniform in log-SNR: 20 steps are enough
    ddpm        diffusers' DDPMScheduler: ancestral sampling, as Algorithm 2
"""

import contextlib
from typing import Literal, get_args

from ..utils.options import number_in, span
from .pipeline_inputs import GUIDANCE_SCALE_RANGE

Sampler = Literal["default", "ddim", "dpmsolver", "ddpm"]
SCHEDULERS = get_args(Sampler)


def set_scheduler(pipeline, name: Sampler):
    """Swap the pipeline's sampler for one built from the same config (same betas, same timesteps).

    "default" keeps the pipeline's own scheduler; "ddim" (Song et al. 2021, eta = 0), "dpmsolver"
    (Lu et al. 2022, DPM-Solver++(2M) multistep) and "ddpm" (Ho et al. 2020, ancestral) are diffusers'.

    DPM-Solver++ places its steps uniformly in lambda_t = log(alpha_t / sigma_t), half the log-SNR
    (`use_lu_lambdas`, the spacing the DPM-Solver paper recommends), unless the current config already
    says otherwise. On the cosine schedule lambda runs from about -9.9 at t = 999 (-6.5 at t = 998) to about +5 at
    t = 0; steps uniform in t spend few of their number on either end, and with them the same 50 steps score
    worse (benchmarks/RESULTS.md, "Spacing DPM-Solver++'s steps in log-SNR").
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    classes = {"ddim": DDIMScheduler, "dpmsolver": DPMSolverMultistepScheduler, "ddpm": DDPMScheduler}
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")
    if name == "dpmsolver":
        config = pipeline.scheduler.config
        pipeline.scheduler = DPMSolverMultistepScheduler.from_config(
            config, use_lu_lambdas=config.get("use_lu_lambdas", True))
    elif name != "default":
        pipeline.scheduler = classes[name].from_config(pipeline.scheduler.config)
    return pipeline


@contextlib.contextmanager
def using_sampler(pipeline, name: Sampler):
    """Inside the block `pipeline` samples with `name` (as `set_scheduler` builds it); its own scheduler
    comes back afterwards, also when the block raises. The one way a command swaps a sampler for a call:

        with using_sampler(pipe, "dpmsolver"):
            images = pipe(batch_size=16).images
    """
    own = pipeline.scheduler
    set_scheduler(pipeline, name)
    try:
        yield pipeline
    finally:
        pipeline.scheduler = own


def add_sampling_options(parser, class_labels=True, seed=True):
    """The options every command that samples a saved pipeline shares, with one meaning: a setting left out is
    the folder's own recommendation (its scheduler component and `pipe.sampling_defaults`). A command with
    its own class or seed options (the editing commands) leaves `class_labels` or `seed` out."""
    if class_labels:
        parser.add_argument("--class_labels", type=int, nargs="+", default=None, metavar="Y",
                            help="one class for every image or one per image (default: the classes in turn)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="default",
                        help="'default': the folder's own scheduler; the others are built from its config")
    parser.add_argument("--num_inference_steps", type=int, default=None,
                        help="length of the chain (default: the folder's recommendation, else every training timestep)")
    if seed:
        parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance_scale", type=number_in(float, *GUIDANCE_SCALE_RANGE), default=None,
                        help=f"classifier-free guidance for class-conditional pipelines with a 'no class' embedding, "
                             f"in {span(GUIDANCE_SCALE_RANGE)} (1 = none; default: the folder's recommendation, with "
                             "its interval)")
    parser.add_argument("--guidance_interval", type=int, nargs=2, default=None, metavar=("T_LOW", "T_HIGH"),
                        help="guide only the steps with T_LOW <= t <= T_HIGH (training timesteps; default: every step)")


def check_sampling_options(parser, args, class_labels=True):
    """argparse errors (exit 2) for what the pipeline would refuse only after loading (`--num_images` and
    `--class_labels` where the command has them; `class_labels=False` for a command whose own --class_labels
    means something else, as interpolation's two ends)."""
    num_images = getattr(args, "num_images", 1)
    if num_images < 1:
        parser.error(f"--num_images must be >= 1, got {num_images}")
    if args.num_inference_steps is not None and args.num_inference_steps < 1:
        parser.error(f"--num_inference_steps must be >= 1, got {args.num_inference_steps}")
    if not hasattr(args, "num_images"):
        return
    labels = getattr(args, "class_labels", None) if class_labels else None
    if labels is not None and len(labels) not in (1, args.num_images):
        parser.error(f"--class_labels takes one class or one per image ({args.num_images}), got {len(args.class_labels)}")


def resolve_sampling_options(pipeline, args):
    """Fill the options left out (None) with what `pipeline` recommends, as `pipe()` would: the same rule
    (`AnnotatedDDPMPipeline.resolve_sampling`), written back to `args` so that a command can say what it used."""
    args.num_inference_steps, args.guidance_scale, interval = pipeline.resolve_sampling(
        args.num_inference_steps, args.guidance_scale, args.guidance_interval)
    args.guidance_interval = list(interval) if interval is not None else None
    return args


def describe_sampling(pipeline, args) -> str:
    """What a command sampled with, as it prints it: "DPMSolverMultistepScheduler, 20 steps, guidance 2 at t in
    200..700" (the sampler in the pipeline now, the options as `resolve_sampling_options` left them)."""
    text = f"{type(pipeline.scheduler).__name__}, {args.num_inference_steps} steps"
    if args.guidance_scale != 1.0:
        text += f", guidance {args.guidance_scale:g}"
        if args.guidance_interval is not None:
            text += " at t in {}..{}".format(*args.guidance_interval)
    return text
