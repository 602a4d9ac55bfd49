"""What the editing subcommands (`inpaint`, `img2img`, `interpolate`) share: options, PNGs in and out, figures.

Each subcommand loads a saved pipeline (a folder or a Hub repo id) as its editing pipeline, swaps in
the `--scheduler` (`pipelines.samplers.set_scheduler`), reads PNG files, writes every output as a
PNG at the model's size into `--output_dir`, and with `--figure` one enlarged PNG with a row per input.
A bad option or input (a missing file, an image of the wrong size or mode, a value the pipeline
refuses) is one line on stderr, `PROG: error: ...`, and exit status 2.
"""

import argparse
from pathlib import Path

import PIL.Image
import torch

from ..pipelines.samplers import add_sampling_options, check_sampling_options, resolve_sampling_options, set_scheduler
from ..utils.options import SCALE_RANGE, number_in, span
from ..utils.outputs import IMAGE, output_file, output_folder


class InputError(ValueError):
    """A bad file or option, reported as one line and exit status 2."""


def editing_parser(prog, description, with_seed=True):
    """The options every editing subcommand takes: the sampling options of every sampling command
    (pipelines/samplers.py: left out, the folder's recommendation), `--seed` unless with_seed is False."""
    description = description.removesuffix(", from the command line:").removesuffix(":")  # the docstring's lead-in
    parser = argparse.ArgumentParser(prog=prog, description=description + ("" if description.endswith(".") else "."))
    parser.add_argument("pipeline", help="a saved pipeline folder or a Hub repo id")
    add_sampling_options(parser, class_labels=False, seed=with_seed)
    parser.add_argument("--output_dir", type=output_folder, default="edit-output",
                        help="every output image as a PNG at the model's size")
    parser.add_argument("--figure", type=output_file(IMAGE), default=None,
                        help="also write one enlarged PNG with a row per input")
    parser.add_argument("--scale", type=number_in(int, *SCALE_RANGE), default=4,
                        help=f"enlarge the figure this many times (nearest neighbour; {span(SCALE_RANGE)})")
    return parser


def parse_editing_args(parser, argv):
    """parse_args, then the sampling options' checks (exit status 2 before anything is loaded)."""
    args = parser.parse_args(argv)
    check_sampling_options(parser, args, class_labels=False)  # an edit's class options are its own
    return args


def load_editing_pipeline(pipeline_class, path, scheduler, args=None):
    """The edit on the pipeline saved at `path`, with `scheduler` built from its config ("default": the folder's
    own, or the one the edit chooses where it cannot use that, see `sampler_choice`). With `args`, the sampling
    options left out (None) are filled with the folder's recommendation (`resolve_sampling_options`); its guidance
    only where the edit has a class to guide towards."""
    from ..pipelines.pipeline import AnnotatedDDPMPipeline

    base = AnnotatedDDPMPipeline.from_pretrained(path)
    if scheduler == "default":
        pipe = pipeline_class.from_pipe(base)
    else:
        pipe = pipeline_class.from_pipe(base, scheduler=set_scheduler(base, scheduler).scheduler)
    pipe.set_progress_bar_config(disable=True)
    if args is not None:
        labels = getattr(args, "class_label", getattr(args, "class_labels", None))
        if args.guidance_scale is None and labels is None:  # guidance needs a class to guide towards
            args.guidance_scale, args.guidance_interval = 1.0, None
        resolve_sampling_options(pipe, args)
    return pipe


def read_png(path, what, mode):
    """The image file `path` as a PIL image of `mode` ("L" or "RGB"); a 1-bit PNG counts as "L" (0 or 255)."""
    try:
        image = PIL.Image.open(path)
        image.load()
    except (OSError, PIL.UnidentifiedImageError) as error:
        raise InputError(f"cannot read {what} {path!r}: {error}") from None
    if image.mode == "1" and mode == "L":
        image = image.convert("L")
    if image.mode != mode:
        raise InputError(f"{what} {path!r} is a {image.mode} image, but the model reads {mode} images; convert it "
                         f"first (e.g. PIL: Image.open(path).convert({mode!r}).save(path)).")
    return image


def save_pngs(images, output_dir, names):
    """Write PIL images as output_dir/NAME.png; return the paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [output_dir / f"{name}.png" for name in names]
    for image, path in zip(images, paths):
        image.save(path)
    return paths


def figure(rows, scale=4, gap=1):
    """Tile rows of equal-sized PIL images into one image, `gap` pixels of grey between tiles, enlarged `scale`
    times (nearest neighbour, so pixels stay sharp)."""
    if scale < 1:
        raise InputError(f"--scale must be >= 1, got {scale}")
    width, height = rows[0][0].size
    columns = max(len(row) for row in rows)
    mode = rows[0][0].mode
    canvas = PIL.Image.new(mode, (columns * (width + gap) - gap, len(rows) * (height + gap) - gap), 128 if mode == "L" else (128,) * 3)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas.paste(image, (c * (width + gap), r * (height + gap)))
    return canvas.resize((canvas.width * scale, canvas.height * scale), resample=PIL.Image.NEAREST)


def mask_to_pil(mask):
    """A (1, 1, H, W) or (1, H, W) mask in {0, 1} as an "L" image, 255 = keep."""
    return PIL.Image.fromarray((mask.reshape(mask.shape[-2:]) * 255).to(torch.uint8).numpy(), mode="L")
