"""`python -m annotated_pipeline.train`: what `accelerate launch -m annotated_pipeline.train` starts in each
process. The command itself is annotated_pipeline/commands/train.py; the run, annotated_pipeline/training/."""

import sys

from .commands.train import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m annotated_pipeline.train"))
