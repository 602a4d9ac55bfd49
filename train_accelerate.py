"""Train an annotated DDPM (Ho et al. 2020) with Hugging Face Accelerate.

    accelerate launch train_accelerate.py --output_dir ddpm-fashion-mnist       # any number of processes
    python train_accelerate.py --max_train_steps 200 --dim 16 --output_dir out  # one process

`--help` lists every option. The loop itself (Algorithm 1) lives in annotated_pipeline/training/loop.py.
"""

import sys

from annotated_pipeline.training.args import TrainingConfigError, parse_args
from annotated_pipeline.training.loop import HubPushError, main


def cli(argv=None):
    """Parse, train, and report a configuration problem or a failed push as one line, not a traceback."""
    try:
        main(parse_args(argv))
    except TrainingConfigError as error:
        print(f"train_accelerate.py: error: {error}", file=sys.stderr)
        return 2
    except HubPushError as error:
        print(f"train_accelerate.py: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
