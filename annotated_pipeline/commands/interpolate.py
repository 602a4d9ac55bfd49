"""Interpolate between seeds and classes with a saved pipeline, from the command line:

    annotated-pipeline interpolate pretrained/ddpm-fashion-mnist --seeds 0 1 --class_labels 0 9 --figure fig.png

A row of `--num_images` images from (seed A, class A) to (seed B, class B): x_T by spherical
interpolation (slerp), the class embedding mixed linearly; see annotated_pipeline/pipelines/pipeline_interpolate.py.
The sampler must be deterministic (dpmsolver, the default, or ddim). `--seeds` takes one pair per row
(`--seeds 0 1 2 3`: two rows); `--class_labels` one label (the same class at both ends) or two, for
every row. Outputs: OUTPUT_DIR/rowR-I.png, written as each row is done; the figure has the rows.
"""

import time

from .editing import InputError, editing_parser, figure, load_editing_pipeline, parse_editing_args, save_pngs
from ..utils.errors import run_reporting
from ..pipelines.pipeline_inputs import DEFAULT_MAX_BATCH_SIZE
from ..pipelines.pipeline_interpolate import AnnotatedDDPMInterpolationPipeline, check_deterministic
from ..pipelines.samplers import describe_sampling, set_scheduler
from ..training.outputs import MAX_GRID_SIDE
from ..utils.memory import check_sampling_memory


def check_sizes(pipe, args, num_rows):
    """InputError, before any step, where the rows cannot fit in memory or the figure exceeds MAX_GRID_SIDE."""
    check_sampling_memory(pipe.unet, args.num_images * num_rows, args.batch_size, args.guidance_scale != 1.0, pipe.device,
                          "lower --num_images, the --seeds pairs or --batch_size")
    size = max(pipe.unet.config.sample_size if isinstance(pipe.unet.config.sample_size, (list, tuple))
               else [pipe.unet.config.sample_size])
    side = max(args.num_images, num_rows) * (size + 1) * args.scale
    if args.figure and side > MAX_GRID_SIDE:
        raise InputError(f"a figure of {num_rows} row(s) of {args.num_images} images of {size} px enlarged {args.scale} "
                         f"times is {side} px on a side, over the {MAX_GRID_SIDE} px an image may have: lower "
                         "--num_images or --scale, or leave out --figure")


def main(argv=None, prog="python -m annotated_pipeline.commands.interpolate"):
    parser = editing_parser(prog, __doc__.split("\n\n")[0], with_seed=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="SEED_A SEED_B [SEED_A SEED_B ...]: a row per pair")
    parser.add_argument("--class_labels", type=int, nargs="+", default=None,
                        help="Y (both ends) or Y_A Y_B, for class-conditional models (default: no class)")
    parser.add_argument("--num_images", type=int, default=8, help="images per row, end points included")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help="images per U-Net call: a longer row is drawn in chunks of this many (the same images)")
    args = parse_editing_args(parser, argv)

    def body():
        if len(args.seeds) % 2:
            raise InputError(f"--seeds takes pairs SEED_A SEED_B, got {len(args.seeds)} numbers")
        if args.class_labels is not None and len(args.class_labels) > 2:
            raise InputError(f"--class_labels takes one label or two, got {len(args.class_labels)}")
        labels = None if args.class_labels is None else (
            args.class_labels[0] if len(args.class_labels) == 1 else tuple(args.class_labels))
        if args.batch_size < 1:
            raise InputError(f"--batch_size must be >= 1, got {args.batch_size}")
        pipe = load_editing_pipeline(AnnotatedDDPMInterpolationPipeline, args.pipeline, args.scheduler, args)
        deterministic_sampler(pipe, args.scheduler)
        pairs = [tuple(args.seeds[i:i + 2]) for i in range(0, len(args.seeds), 2)]
        check_sizes(pipe, args, len(pairs))
        start = time.perf_counter()
        rows, paths = [], []
        for r, pair in enumerate(pairs):  # each row's PNGs as soon as it is drawn: an interrupted run keeps them
            row = pipe(seeds=pair, class_labels=labels, num_images=args.num_images, num_inference_steps=args.num_inference_steps,
                       guidance_scale=args.guidance_scale, guidance_interval=args.guidance_interval,
                       max_batch_size=args.batch_size).images
            paths += save_pngs(row, args.output_dir, [f"row{r}-{i}" for i in range(len(row))])
            rows.append(row)
        seconds = time.perf_counter() - start
        print(f"{len(rows)} row(s) of {args.num_images} images ({describe_sampling(pipe, args)}) "
              f"in {seconds:.1f} s -> {paths[0].parent}/")
        if args.figure:
            figure(rows, args.scale).save(args.figure)
            print(f"figure (one row per seed pair) -> {args.figure}")

    return run_reporting(prog, body)


def deterministic_sampler(pipe, scheduler):
    """Left to the folder (`--scheduler default`), a sampler that is not deterministic (a training run's ancestral
    AnnotatedDDPMScheduler) cannot interpolate: DPM-Solver++ built from its config takes its place, and a line
    says so. A sampler asked for by name is kept (the pipeline's call then names the ones it takes)."""
    if scheduler != "default":
        return
    try:
        check_deterministic(pipe.scheduler)
    except ValueError:
        own = type(pipe.scheduler).__name__
        set_scheduler(pipe, "dpmsolver")
        print(f"the folder's {own} adds fresh noise at each step, which interpolation cannot use: "
              f"sampling with {type(pipe.scheduler).__name__} built from its config instead")


if __name__ == "__main__":
    raise SystemExit(main())
