"""Train an annotated DDPM (Ho et al. 2020, Algorithm 1) with Hugging Face Accelerate.

    accelerate launch -m annotated_pipeline.train --output_dir ddpm-fashion-mnist   # any number of processes
    annotated-pipeline train --max_train_steps 200 --dim 16 --output_dir out        # one process

`--help` lists every option. The run itself lives in annotated_pipeline/training/loop.py.
"""

import sys
import traceback

from ..utils.tokens import redact
from ..training.args import TrainingConfigError, parse_args
from ..training.checkpointing import CheckpointWriteError
from ..training.interrupt import TrainingInterrupted
from ..training.distributed import (collective_timeout_message, end_process_without_teardown, in_multi_process_run,
                                   is_collective_timeout)
from ..training.push import HubPushError
from ..training.loop import main as train
from ..training.safeguards import TrainingDiverged


def main(argv=None, prog=None):
    """Parse, train, and report a failure as one line on stderr, not a traceback. Returns the exit
    status: 0 trained, 2 a bad configuration (found before training), 1 a failure during or after it,
    130/143 stopped by SIGINT/SIGTERM after checkpointing the step in progress. A process of a multi-process
    run ends here with that status, skipping Python's teardown (training/distributed.py says why); an
    unexpected error there is printed as its traceback and ends the process with status 1."""
    try:
        status = run(argv, prog)
    except Exception:
        if not in_multi_process_run():
            raise
        traceback.print_exc()
        status = 1
    if in_multi_process_run():
        end_process_without_teardown(status)
    return status


def run(argv, prog):
    """Parse the arguments and train; each expected failure becomes one line on stderr and its exit status."""
    prog = prog or "annotated-pipeline train"
    try:
        args = parse_args(argv, prog=prog)
        train(args)
    except TrainingConfigError as error:
        print(f"{prog}: error: {redact(error)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as error:  # SIGINT/SIGTERM: the step finished and was checkpointed
        if error.announce:  # one line for the run, not one per process
            print(f"{prog}: {error}", file=sys.stderr)
        return error.exit_status
    except (HubPushError, TrainingDiverged, CheckpointWriteError) as error:
        print(f"{prog}: error: {redact(error)}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        if not is_collective_timeout(error):
            raise
        print(f"{prog}: error: {collective_timeout_message(error, args.ddp_timeout)}", file=sys.stderr)
        end_process_without_teardown(1)  # destroying a process group whose peer hangs would block again
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m annotated_pipeline.train"))
