"""Inpaint images with a saved pipeline, RePaint (Lugmayr et al. 2022), from the command line:

    annotated-pipeline inpaint pretrained/ddpm-fashion-mnist shirt.png --keep left --num_samples 4 --figure fig.png

Each IMAGE keeps the pixels where the mask is white (a `--mask` PNG of the model's size, 255 = keep,
0 = fill in; or `--keep left|right|top|bottom`, one half) and the model fills in the rest; see
annotated_pipeline/pipelines/pipeline_inpaint.py for the equations. Outputs: OUTPUT_DIR/STEM-K.png; the figure
has a row per input: the input, the mask, the completions. Without `--class_label` a class-conditional
model fills in with its "no class" embedding.
"""

import time
from pathlib import Path

import torch

from .editing import (InputError, editing_parser, figure, load_editing_pipeline, mask_to_pil, parse_editing_args, read_png,
                      save_pngs)
from ..utils.errors import run_reporting
from ..pipelines.pipeline_editing import PIL_MODES
from ..pipelines.samplers import describe_sampling
from ..pipelines.pipeline_inpaint import KEEP_SIDES, AnnotatedDDPMInpaintPipeline, half_mask


def main(argv=None, prog="python -m annotated_pipeline.commands.inpaint"):
    parser = editing_parser(prog, __doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG files of the model's size and mode")
    masks = parser.add_mutually_exclusive_group(required=True)
    masks.add_argument("--mask", help="a PNG mask of the model's size: white (255) keeps a pixel, black (0) fills it in")
    masks.add_argument("--keep", choices=KEEP_SIDES, help="keep this half of every image, fill in the other")
    parser.add_argument("--num_samples", type=int, default=4, help="completions per image")
    parser.add_argument("--jump_length", type=int, default=5, help="j: steps each resampling jump goes back up")
    parser.add_argument("--jump_n_sample", type=int, default=3, help="r: times each stretch of j steps is walked (1 = no resampling)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM's eta (with --scheduler ddim)")
    parser.add_argument("--class_label", type=int, default=None, help="fill in as this class (default: no class)")
    args = parse_editing_args(parser, argv)

    def body():
        pipe = load_editing_pipeline(AnnotatedDDPMInpaintPipeline, args.pipeline, args.scheduler, args)
        channels, height, width = pipe._expected_image_shape()
        mode = PIL_MODES.get(channels)
        if mode is None:
            raise InputError(f"the model has {channels} channels; PNG input needs 1 (L) or 3 (RGB)")
        images = [read_png(path, "image", mode) for path in args.images]
        mask = read_png(args.mask, "mask", "L") if args.mask else half_mask(args.keep, height, width)
        start = time.perf_counter()
        outputs = pipe(images, mask, num_inference_steps=args.num_inference_steps, jump_length=args.jump_length,
                       jump_n_sample=args.jump_n_sample, eta=args.eta, generator=torch.Generator().manual_seed(args.seed),
                       class_labels=args.class_label, guidance_scale=args.guidance_scale,
                       guidance_interval=args.guidance_interval, num_images_per_image=args.num_samples).images
        seconds = time.perf_counter() - start
        names = [f"{Path(path).stem}-{k}" for path in args.images for k in range(args.num_samples)]
        paths = save_pngs(outputs, args.output_dir, names)
        print(f"{len(outputs)} completions of {len(images)} image(s) ({describe_sampling(pipe, args)}, "
              f"j = {args.jump_length}, r = {args.jump_n_sample}, seed {args.seed}) in {seconds:.1f} s -> {paths[0].parent}/")
        if args.figure:
            mask_image = mask if args.mask else mask_to_pil(mask)
            n = args.num_samples
            rows = [[image, mask_image, *outputs[i * n:(i + 1) * n]] for i, image in enumerate(images)]
            figure(rows, args.scale).save(args.figure)
            print(f"figure (input, mask, {n} completions per row) -> {args.figure}")

    return run_reporting(prog, body)


if __name__ == "__main__":
    raise SystemExit(main())
