"""Edit images with a saved pipeline, SDEdit (Meng et al. 2022), from the command line:

    annotated-pipeline img2img pretrained/ddpm-fashion-mnist sketch.png --strength 0.25 0.5 0.75 --figure fig.png

Each IMAGE is noised to t = strength * T (q(x_t | x_0), Ho et al. 2020 eq. (4)) and denoised by the
chain from there; see annotated_pipeline/pipelines/pipeline_img2img.py. Small strengths keep the input, strength 1
is a fresh sample. Outputs: OUTPUT_DIR/STEM-sSTRENGTH-K.png; the figure has a row per input: the
input, then the edits at each strength. Without `--class_label` a class-conditional model edits
with its "no class" embedding.
"""

import time
from pathlib import Path

import torch

from .editing import InputError, editing_parser, figure, load_editing_pipeline, parse_editing_args, read_png, save_pngs
from ..utils.errors import run_reporting
from ..pipelines.pipeline_editing import PIL_MODES
from ..pipelines.samplers import describe_sampling
from ..pipelines.pipeline_img2img import AnnotatedDDPMImg2ImgPipeline


def main(argv=None, prog="python -m annotated_pipeline.commands.img2img"):
    parser = editing_parser(prog, __doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG files of the model's size and mode")
    parser.add_argument("--strength", type=float, nargs="+", default=[0.5],
                        help="t_0 in (0, 1]: the fraction of the chain walked (one edit per value)")
    parser.add_argument("--num_samples", type=int, default=1, help="edits per image and strength")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM's eta (with --scheduler ddim)")
    parser.add_argument("--class_label", type=int, default=None, help="edit towards this class (default: no class)")
    args = parse_editing_args(parser, argv)

    def body():
        pipe = load_editing_pipeline(AnnotatedDDPMImg2ImgPipeline, args.pipeline, args.scheduler, args)
        mode = PIL_MODES.get(pipe._expected_image_shape()[0])
        if mode is None:
            raise InputError("PNG input needs a model with 1 (L) or 3 (RGB) channels")
        images = [read_png(path, "image", mode) for path in args.images]
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)
        edits = {}  # strength -> outputs, image by image
        for strength in args.strength:
            edits[strength] = pipe(images, strength=strength, num_inference_steps=args.num_inference_steps,
                                   generator=generator, class_labels=args.class_label, guidance_scale=args.guidance_scale,
                                   guidance_interval=args.guidance_interval, eta=args.eta,
                                   num_images_per_image=args.num_samples).images
        seconds = time.perf_counter() - start
        n = args.num_samples
        outputs, names, rows = [], [], []
        for i, path in enumerate(args.images):
            row = [images[i]]
            for strength, edited in edits.items():
                for k in range(n):
                    outputs.append(edited[i * n + k])
                    names.append(f"{Path(path).stem}-s{strength:g}-{k}")
                    row.append(edited[i * n + k])
            rows.append(row)
        paths = save_pngs(outputs, args.output_dir, names)
        print(f"{len(outputs)} edits of {len(images)} image(s) at strength {', '.join(f'{s:g}' for s in args.strength)} "
              f"({describe_sampling(pipe, args)}, seed {args.seed}) in {seconds:.1f} s -> {paths[0].parent}/")
        if args.figure:
            figure(rows, args.scale).save(args.figure)
            print(f"figure (input, then the edits by strength, per row) -> {args.figure}")

    return run_reporting(prog, body)


if __name__ == "__main__":
    raise SystemExit(main())
