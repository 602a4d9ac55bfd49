"""Train an annotated DDPM (Ho et al. 2020, Algorithm 1) with Hugging Face Accelerate.

    accelerate launch -m annotated_pipeline.train --output_dir ddpm-fashion-mnist   # any number of processes
    annotated-pipeline train --max_train_steps 200 --dim 16 --output_dir out        # one process

`--help` lists every option. The loop itself lives in annotated_pipeline/training/loop.py.
"""

import os
import sys

from .training.args import TrainingConfigError, parse_args
from .training.checkpointing import CheckpointWriteError
from .training.loop import HubPushError
from .training.loop import main as train
from .training.safeguards import TrainingDiverged


def _collective_timeout(error):
    """True for torch.distributed's error when a peer did not answer within the process group's timeout."""
    import torch.distributed as dist

    text = str(error).lower()
    return (dist.is_available() and dist.is_initialized()
            and ("timed out" in text or "timeout" in text or isinstance(error, getattr(dist, "DistError", ()))))


def main(argv=None, prog=None):
    """Parse, train, and report a failure as one line on stderr, not a traceback. Returns the exit
    status: 0 trained, 2 a bad configuration (found before training), 1 a failure during or after it."""
    prog = prog or "annotated-pipeline train"
    try:
        args = parse_args(argv, prog=prog)
        train(args)
    except TrainingConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except (HubPushError, TrainingDiverged, CheckpointWriteError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        if not _collective_timeout(error):
            raise
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
        others = ", ".join(str(r) for r in range(world) if r != rank)
        print(f"{prog}: error: process {rank} of {world} waited more than --ddp_timeout {args.ddp_timeout} s for "
              f"rank(s) {others} in a collective operation: a peer died or stopped responding; the run stops here "
              f"(resume with --resume_from_checkpoint latest). {' '.join(str(error).splitlines()[:1])[:300]}",
              file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # destroying a process group whose peer hangs would block again
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m annotated_pipeline.train"))
