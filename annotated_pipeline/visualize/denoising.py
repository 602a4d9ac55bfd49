"""The denoising process: x_t and the model's x_0_hat along the chain, as an animated GIF and a PNG strip.

At each step of Ho et al. 2020, Algorithm 2 the network predicts eps from x_t, and with it the clean image

    x_0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_bar_t)          (eq. (15))

that the step moves towards (the posterior mean of eq. (7) mixes x_0_hat and x_t). Shown side by side, x_t
is noise that slowly clears while x_0_hat is a blurred average garment at high t that gains its shape first
and its detail (stripes, buttons, laces) last: the coarse-to-fine order of Ho et al. 2020, sec. 4.3 (Fig. 6).

`collect_trajectory` asks the pipeline for both through `callback_on_step_end` (tensor inputs "latents" and
"pred_original_sample"; for samplers whose step returns no x_0_hat, such as DPM-Solver++, the pipeline computes
it with eq. (15)), every `every` steps; x_t is the step's input (x_T, then each step's output), so x_t and
x_0_hat in one frame belong together. The samples are exactly those of `pipe(...)` with the same generator.
"""

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..utils.options import SCALE_RANGE, number_in, span

from .images import labelled_grid, to_pil
from ..pipelines.samplers import check_sampling_options
from .options import add_figure_options, generator, load_for_figures, sampling_kwargs


@dataclass
class Trajectory:
    """Every kept step: steps[i] (0-based index in the chain), timesteps[i], x_t[i] and x0_hat[i] (B, C, H, W);
    `samples` is the pipeline's final x_0 in [-1, 1]."""

    steps: list
    timesteps: list
    x_t: list
    x0_hat: list
    samples: torch.Tensor


def collect_trajectory(pipe, num_images=4, every=1, seed=0, on_step=None, **pipe_kwargs):
    """Sample `num_images` images and keep (x_t, x_0_hat) every `every` steps and at the last step.

    on_step(i, n): called after each of the chain's n steps (a progress bar, such as the demo's)."""
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    g = generator(seed)
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    # x_T drawn as the pipeline draws it (same generator, first draw), so the samples do not change.
    x_t = randn_tensor((num_images, pipe.unet.config.in_channels, height, width), generator=g, dtype=torch.float32)
    kept = Trajectory([], [], [], [], None)
    state = {"x_t": x_t * pipe.scheduler.init_noise_sigma}

    def callback(p, i, t, tensors):
        if i % every == 0 or i == len(p.scheduler.timesteps) - 1:
            kept.steps.append(i)
            kept.timesteps.append(int(t))
            kept.x_t.append(state["x_t"].float().cpu())
            kept.x0_hat.append(tensors["pred_original_sample"].float().cpu())
        state["x_t"] = tensors["latents"]
        if on_step is not None:
            on_step(i + 1, len(p.scheduler.timesteps))
        return tensors

    images = pipe(batch_size=num_images, generator=g, latents=x_t, output_type="pt", callback_on_step_end=callback,
                  callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"],
                  max_batch_size=num_images, **pipe_kwargs).images  # one chain, whose steps the callback keeps
    kept.samples = images * 2 - 1
    return kept


def _frame(x_t, x0_hat, label, scale):
    """Two rows, x_t above x_0_hat, one column per image."""
    return labelled_grid([[to_pil(x, scale) for x in x_t], [to_pil(x, scale) for x in x0_hat]],
                         [label] + [""] * (len(x_t) - 1), ["x_t", "x0_hat"])


def denoising_frames(pipe, num_images=4, every=1, scale=3, seed=0, trajectory=None, **pipe_kwargs):
    """One PIL frame per kept step, x_t beside (above) x_0_hat for every image, and a last frame with the
    final samples in both rows. Pass a `trajectory` from `collect_trajectory` to draw it instead of sampling."""
    tr = trajectory if trajectory is not None else collect_trajectory(pipe, num_images, every, seed, **pipe_kwargs)
    frames = [_frame(x, x0, f"t = {t}", scale) for t, x, x0 in zip(tr.timesteps, tr.x_t, tr.x0_hat)]
    frames.append(_frame(tr.samples, tr.samples, "x_0", scale))
    return frames


def denoising_strip(trajectory, num_columns=8, scale=2):
    """A PIL strip: for each image two rows (x_t, x_0_hat), one column per step, `num_columns` steps spread
    over the kept ones (first and last included), and the final sample in the last column."""
    n = len(trajectory.timesteps)
    picks = list(dict.fromkeys(np.linspace(0, n - 1, min(num_columns, n)).round().astype(int).tolist()))
    rows, labels = [], []
    for b in range(trajectory.samples.shape[0]):
        final = to_pil(trajectory.samples[b], scale)
        rows.append([to_pil(trajectory.x_t[i][b], scale) for i in picks] + [final])
        rows.append([to_pil(trajectory.x0_hat[i][b], scale) for i in picks] + [final])
        labels += ["x_t", "x0_hat"]
    return labelled_grid(rows, [f"t = {trajectory.timesteps[i]}" for i in picks] + ["x_0"], labels)


def save_gif(frames, path, duration_ms=120, hold_ms=1500):
    """An animated GIF that loops; the last frame (the samples) is held for `hold_ms`."""
    frames = [f.convert("L") if f.mode == "L" else f.convert("RGB") for f in frames]
    durations = [duration_ms] * (len(frames) - 1) + [hold_ms]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=True)


def main(argv=None, prog="python -m annotated_pipeline.visualize.denoising"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_figure_options(parser, num_images=6, output="denoising.gif")
    parser.add_argument("--every", type=int, default=1, help="keep x_t and x_0_hat every this many steps")
    parser.add_argument("--scale", type=number_in(int, *SCALE_RANGE), default=3,
                        help=f"enlarge each image this many times ({span(SCALE_RANGE)})")
    parser.add_argument("--strip", default=None, help="also write a PNG strip here (default: OUTPUT with .png)")
    parser.add_argument("--num_columns", type=int, default=8, help="steps shown in the strip")
    parser.add_argument("--frame_ms", type=int, default=120, help="milliseconds per GIF frame")
    args = parser.parse_args(argv)
    check_sampling_options(parser, args)
    if min(args.every, args.scale, args.num_columns, args.frame_ms) < 1:
        parser.error("--every, --scale, --num_columns and --frame_ms must be >= 1")
    start = time.perf_counter()
    try:
        pipe = load_for_figures(args)  # the options left out become the folder's recommendation
        kwargs = sampling_kwargs(args)
        seed = kwargs.pop("seed")
        trajectory = collect_trajectory(pipe, args.num_images, args.every, seed, **kwargs)
    except (ValueError, OSError) as error:  # bad settings, a folder that does not load
        parser.error(str(error))
    save_gif(denoising_frames(pipe, scale=args.scale, trajectory=trajectory), args.output, args.frame_ms)
    strip = args.strip or args.output[: -len(".gif")] + ".png"
    denoising_strip(trajectory, args.num_columns).save(strip)
    print(f"{len(trajectory.timesteps)} steps of {args.num_images} samples ({args.scheduler}, {args.num_inference_steps} "
          f"steps, seed {args.seed}) in {time.perf_counter() - start:.1f} s -> {args.output}, {strip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
