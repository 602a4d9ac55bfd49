"""Train an annotated DDPM (Ho et al. 2020, Algorithm 1) with Hugging Face Accelerate.

    accelerate launch -m annotated_pipeline.train --output_dir ddpm-fashion-mnist   # any number of processes
    annotated-pipeline train --max_train_steps 200 --dim 16 --output_dir out        # one process

`--help` lists every option. The loop itself lives in annotated_pipeline/training/loop.py.
"""

import sys

from .training.args import TrainingConfigError, parse_args
from .training.loop import HubPushError
from .training.loop import main as train


def main(argv=None, prog=None):
    """Parse, train, and report a configuration problem or a failed push as one line, not a traceback.
    Returns the exit status: 0 trained, 2 a bad configuration, 1 a failed push."""
    prog = prog or "annotated-pipeline train"
    try:
        train(parse_args(argv, prog=prog))
    except TrainingConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except HubPushError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m annotated_pipeline.train"))
