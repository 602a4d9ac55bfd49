"""The beta schedules side by side: alpha_bar_t and the log signal-to-noise ratio, for T = 1000 and T = 300.

With alpha_bar_t = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, eq. (4)), x_t holds sqrt(alpha_bar_t) of the
signal and sqrt(1 - alpha_bar_t) of noise, so

    SNR(t) = alpha_bar_t / (1 - alpha_bar_t)          (Kingma et al. 2021, eq. (2))

A good schedule ends with SNR(T) ~ 0, since sampling starts from pure noise. The cosine schedule (Nichol &
Dhariwal 2021, eq. (17)) does for any T; the linear and quadratic ones are tuned for T = 1000 and, with the
blog's T = 300, end with sqrt(alpha_bar_T) = 0.22 and 0.34: the model never sees the pure noise it is handed
first. Drawn with matplotlib (`pip install "annotated-pipeline[plots]"`).
"""

import argparse
import io
import time

import torch

from ..utils.outputs import IMAGE, output_file
from .forward import SCHEDULE_LABELS, SCHEDULES, schedule_scheduler

T_VALUES = (1000, 300)


def log_snr(alphas_cumprod):
    """log SNR(t) = log(alpha_bar_t / (1 - alpha_bar_t)), in float64 (alpha_bar_t ~ 1e-9 near T for the cosine schedule)."""
    a = alphas_cumprod.double()
    return torch.log(a) - torch.log1p(-a)


def schedules_figure(schedules=SCHEDULES, t_values=T_VALUES, dpi=100):
    """A PIL image of a 2 x len(t_values) grid of plots: alpha_bar_t (top) and log SNR (bottom) against t / T,
    one line per schedule, one column per T."""
    try:  # the object-oriented API: no pyplot, so no global backend is changed (a notebook keeps its inline plots)
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError('the schedule plots need matplotlib: pip install "annotated-pipeline[plots]"') from error
    from PIL import Image

    unknown = [s for s in schedules if s not in SCHEDULES]
    if unknown:
        raise ValueError(f"unknown schedules {unknown}; allowed: {', '.join(SCHEDULES)}")
    fig = Figure(figsize=(4.2 * len(t_values), 6))
    axes = fig.subplots(2, len(t_values), squeeze=False, sharex=True)
    for j, T in enumerate(t_values):
        for name in schedules:
            alpha_bar = schedule_scheduler(name, T).alphas_cumprod
            x = torch.arange(1, T + 1) / T
            label = f"{SCHEDULE_LABELS[name]} (sqrt(abar_T) = {alpha_bar[-1].sqrt():.2g})"
            axes[0, j].plot(x, alpha_bar, label=label)
            axes[1, j].plot(x, log_snr(alpha_bar), label=label)
        axes[0, j].set_title(f"T = {T}")
        axes[0, j].set_ylabel("alpha_bar_t")
        axes[1, j].set_ylabel("log SNR(t)")
        axes[1, j].set_xlabel("t / T")
        axes[0, j].legend(fontsize=7)
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def main(argv=None, prog="python -m annotated_pipeline.visualize.schedules"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=list(SCHEDULES))
    parser.add_argument("--num_train_timesteps", type=int, nargs="+", default=list(T_VALUES), metavar="T",
                        help="one column of plots per T (default: 1000 and the blog's 300)")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--output", type=output_file(IMAGE), default="schedules.png")
    args = parser.parse_args(argv)
    if min(args.num_train_timesteps) < 2 or args.dpi < 1:
        parser.error("every --num_train_timesteps must be >= 2 and --dpi >= 1")
    start = time.perf_counter()
    try:
        figure = schedules_figure(args.schedules, args.num_train_timesteps, args.dpi)
    except ImportError as error:
        print(f"{prog}: error: {error}", file=__import__("sys").stderr)
        return 2
    figure.save(args.output)
    print(f"alpha_bar_t and log SNR of {len(args.schedules)} schedules for T = "
          f"{', '.join(map(str, args.num_train_timesteps))} in {time.perf_counter() - start:.1f} s -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
