"""The forward process: a real image destroyed step by step, q(x_t | x_0), for each beta schedule.

Ho et al. 2020, eq. (4): x_t can be drawn from x_0 in one shot,

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I),   alpha_bar_t = prod_{s<=t} (1 - beta_s)

(`losses.q_sample`, the scheduler's `add_noise`). The figure uses one eps for every cell, so the rows differ
only by the schedule's alpha_bar_t: the linear schedule (Ho et al.) has turned the image into mostly noise by t ~ T/2, the
cosine one (Nichol & Dhariwal 2021, eq. (17)) keeps it visible longer and only reaches pure noise at T.
With T = 300 the linear and quadratic schedules (the blog's trap) still show the garment at t = T - 1.
"""

import argparse
import time

import torch

from ..losses import q_sample
from ..utils.outputs import IMAGE, output_file
from ..utils.options import SCALE_RANGE, number_in, span
from ..scheduler import AnnotatedDDPMScheduler
from ..scheduler.schedules import BETA_SCHEDULES
from .images import labelled_grid, to_pil

SCHEDULES = tuple(BETA_SCHEDULES)  # diffusers' names: linear, scaled_linear (the blog's quadratic), cosine, sigmoid
SCHEDULE_LABELS = {"linear": "linear", "scaled_linear": "quadratic", "squaredcos_cap_v2": "cosine", "sigmoid": "sigmoid"}
FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # of T - 1: the default columns


def schedule_scheduler(name, num_train_timesteps):
    """Our scheduler with schedule `name` and its default beta range; the warning about signal left at t = T is
    what the figures show, so it is not repeated here."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return AnnotatedDDPMScheduler(beta_schedule=name, num_train_timesteps=num_train_timesteps)


def embedded_image(index=0):
    """Image `index` of the embedded 2,000-image Fashion-MNIST sample as x_0 in [-1, 1], (1, 28, 28), and its class name."""
    from ..datasets.loading import image_to_tensor, load_training_dataset
    from ..datasets.fashion_mnist import FASHION_MNIST_CLASSES
    from ..training.build import EMBEDDED_SAMPLE

    data = load_training_dataset(train_data_dir=EMBEDDED_SAMPLE)
    if not 0 <= index < len(data):
        raise ValueError(f"index must lie in 0..{len(data) - 1} (the embedded sample's images), got {index}")
    row = data[index]
    return image_to_tensor(row["image"].convert("L")), FASHION_MNIST_CLASSES[row["label"]]


def default_timesteps(num_train_timesteps):
    return sorted({round(f * (num_train_timesteps - 1)) for f in FRACTIONS})


def forward_process_figure(x0, timesteps=None, schedules=SCHEDULES, num_train_timesteps=1000, seed=0, scale=3):
    """A PIL grid: one row per schedule, one column per timestep, each cell x_t ~ q(x_t | x_0) with the same eps.

    x0: (C, H, W) in [-1, 1]. timesteps default to 0, 5%, 10%, 20%, 30%, 50%, 70% and 100% of T - 1."""
    timesteps = default_timesteps(num_train_timesteps) if timesteps is None else list(timesteps)
    bad = [t for t in timesteps if not 0 <= t < num_train_timesteps]
    if bad:
        raise ValueError(f"timesteps must lie in 0..{num_train_timesteps - 1}, got {bad}")
    unknown = [s for s in schedules if s not in SCHEDULES]
    if unknown:
        raise ValueError(f"unknown schedules {unknown}; allowed: {', '.join(SCHEDULES)}")
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor(timesteps)
    rows, labels = [], []
    for name in schedules:
        scheduler = schedule_scheduler(name, num_train_timesteps)
        x_t = q_sample(x0.expand(len(t), *x0.shape), t, noise=eps.expand(len(t), *x0.shape), scheduler=scheduler)
        rows.append([to_pil(x, scale) for x in x_t])
        labels.append(f"{SCHEDULE_LABELS[name]}  sqrt(abar_T) = {scheduler.terminal_signal_level:.2g}")
    return labelled_grid(rows, [f"t = {s}" for s in timesteps], labels)


def main(argv=None, prog="python -m annotated_pipeline.visualize.forward"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=None, help="a picture file (converted to grayscale, 28 x 28) instead of the embedded sample")
    parser.add_argument("--index", type=int, default=0, help="which image of the embedded Fashion-MNIST sample")
    parser.add_argument("--timesteps", type=int, nargs="+", default=None, help="training timesteps (default: 0 .. T - 1 in 8 steps)")
    parser.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=list(SCHEDULES))
    parser.add_argument("--num_train_timesteps", type=int, default=1000, help="T (300 is the blog's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the one eps every cell shares")
    parser.add_argument("--scale", type=number_in(int, *SCALE_RANGE), default=3,
                        help=f"enlarge each cell ({span(SCALE_RANGE)})")
    parser.add_argument("--output", type=output_file(IMAGE), default="forward.png")
    args = parser.parse_args(argv)
    if args.num_train_timesteps < 1 or args.scale < 1:
        parser.error("--num_train_timesteps and --scale must be >= 1")
    start = time.perf_counter()
    try:
        if args.image is not None:
            from PIL import Image

            from ..datasets.loading import image_to_tensor

            x0, what = image_to_tensor(Image.open(args.image).convert("L").resize((28, 28), Image.BILINEAR)), args.image
        else:
            x0, what = embedded_image(args.index)
        figure = forward_process_figure(x0, args.timesteps, args.schedules, args.num_train_timesteps, args.seed, args.scale)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    figure.save(args.output)
    print(f"q(x_t | x_0) of {what} for {len(args.schedules)} schedules, T = {args.num_train_timesteps}, "
          f"in {time.perf_counter() - start:.1f} s -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
