"""Train an annotated DDPM (Ho et al. 2020) with Hugging Face Accelerate, from a clone of the project.

    accelerate launch train_accelerate.py --output_dir ddpm-fashion-mnist       # any number of processes
    python train_accelerate.py --max_train_steps 200 --dim 16 --output_dir out  # one process

The same as `annotated-pipeline train` and `accelerate launch -m annotated_pipeline.train` from an
installed package (annotated_pipeline/train.py). `--help` lists every option.
"""

import sys

from annotated_pipeline.train import main


def cli(argv=None):
    """Train; returns the exit status (0 trained, 2 a bad configuration, 1 a failed push)."""
    return main(argv, prog="train_accelerate.py")


if __name__ == "__main__":
    sys.exit(cli())
