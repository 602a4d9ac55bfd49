"""The `annotated-pipeline` command: one entry point, a subcommand per task.

    annotated-pipeline train --output_dir out --max_train_steps 200
    annotated-pipeline sample pretrained/ddpm-fashion-mnist --output grid.png
    annotated-pipeline evaluate pretrained/ddpm-fashion-mnist --num_samples 200

Each subcommand is the `main(argv, prog)` of its own module, so `python -m <module>` runs the same code;
`annotated-pipeline SUBCOMMAND --help` lists its options. A subcommand's `main` returns (or exits with)
its status: 0 done, 2 a bad option or input (one line on stderr), 1 a failure after the work started.
"""

import importlib
import sys

# name -> (module whose main(argv, prog) runs it, one line for the overview)
SUBCOMMANDS = {
    "train": ("annotated_pipeline.commands.train", "train a DDPM with Accelerate (Ho et al. 2020, Algorithm 1)"),
    "sample": ("annotated_pipeline.commands.sample", "sample a grid of images from a saved pipeline"),
    "export": ("annotated_pipeline.commands.export", "a training checkpoint as a saved pipeline folder (EMA weights by default)"),
    "evaluate": ("annotated_pipeline.evaluation.evaluate", "offline Frechet distance and KID of a pipeline (not an Inception FID)"),
    "fid": ("annotated_pipeline.evaluation.fid", "Inception FID (--kid: KID) of two image folders or .npz statistics, offline"),
    "train-classifier": ("annotated_pipeline.evaluation.train_classifier", "train the feature network of evaluate on a labelled image set"),
    "nearest": ("annotated_pipeline.evaluation.nearest", "samples beside their nearest training images: a memorisation check"),
    "shapes": ("annotated_pipeline.datasets.shapes", "draw a small labelled image set of shapes (CC0) into an image folder"),
    "inpaint": ("annotated_pipeline.commands.inpaint", "fill in the masked part of PNG images (RePaint, Lugmayr et al. 2022)"),
    "img2img": ("annotated_pipeline.commands.img2img", "noise PNG images part-way and denoise them (SDEdit, Meng et al. 2022)"),
    "interpolate": ("annotated_pipeline.commands.interpolate", "a row of images between two seeds and/or classes (slerp of x_T)"),
    "attention": ("annotated_pipeline.visualize.attention", "draw what the U-Net's attention looks at while sampling (PNG)"),
    "denoise": ("annotated_pipeline.visualize.denoising", "x_t and the predicted x_0 along the chain (GIF and PNG strip)"),
    "forward": ("annotated_pipeline.visualize.forward", "a real image under q(x_t | x_0) for each beta schedule (PNG)"),
    "demo": ("annotated_pipeline.commands.demo", "serve the browser demo (Gradio: pip install 'annotated-pipeline[demo]')"),
    "schedules": ("annotated_pipeline.visualize.schedules", "alpha_bar_t and log SNR of the beta schedules (PNG, matplotlib)"),
    "docs": ("annotated_pipeline.edition.build", "the annotated edition: a static site of notes beside the code, from this package"),
}


def usage():
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return ("usage: annotated-pipeline SUBCOMMAND [options]   (annotated-pipeline SUBCOMMAND --help for its options;"
            " --version)\n\n"
            "subcommands:\n" + "\n".join(lines))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        import torch

        from .. import __version__

        print(f"annotated-pipeline {__version__} (torch {torch.__version__})")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"annotated-pipeline: error: unknown subcommand {name!r} (choose from {', '.join(SUBCOMMANDS)})",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        status = module.main(rest, prog=f"annotated-pipeline {name}")
    except SystemExit as exit_:  # argparse's own errors and --help
        status = exit_.code
    return 0 if status is None else status


if __name__ == "__main__":
    sys.exit(main())
