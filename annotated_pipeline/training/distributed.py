"""What a multi-process run does when a peer stops answering.

torch.distributed raises a RuntimeError (gloo: "Timed out waiting 10000ms for recv operation"; NCCL: a
watchdog "Timeout") when a collective operation waits longer than the process group's timeout, which
`--ddp_timeout` sets. Such an error can surface anywhere a collective runs: in the backward pass, in
`wait_for_everyone`, or inside `save_state`. Every place that wraps errors into its own message lets
this one through, so the run ends with the one line `train.main` prints for it.

A peer whose process is killed on a machine that stays up (its socket is closed) is noticed at once
instead (gloo: "Connection reset by peer" / "Connection closed by peer"); that error takes the same path
with its own line. A machine that is switched off or cut from the network closes nothing: its peers
wait until --ddp_timeout.

And how such a process ends: holding its process group to the last, then at once, without Python's
teardown. Whatever frees the last reference to a gloo group runs the group's destructor in that thread, holding
the GIL, and the destructor joins gloo's worker threads; one of them may still be freeing a finished
collective's tensors, which needs the GIL, so both wait forever (pytorch/pytorch#56297). Accelerate's
`end_training` destroys the group, after which DDP's Reducer holds the last reference: freed when the training
function returns (its frame goes) or in the teardown. So `keep_process_group` holds the group from the start,
and `end_process_without_teardown` ends the process without freeing anything.
"""

import logging
import os
import sys

PEER_LOST = ("connection reset by peer", "connection closed by peer")
KEPT_GROUPS = []  # this process's default group, held until the process ends (keep_process_group)


def in_process_group():
    """True while this process is in a process group (torch.distributed initialized)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def keep_process_group():
    """Hold this process's default process group until the process ends, so that no frame, no `del` and no
    teardown frees it (the deadlock above). Called as soon as the group exists."""
    import torch.distributed as dist

    if in_process_group() and not KEPT_GROUPS:
        KEPT_GROUPS.append(dist.group.WORLD)


def in_multi_process_run():
    """True in a process that joined a process group, even after `end_training` destroyed the group."""
    return bool(KEPT_GROUPS) or in_process_group()


def is_collective_timeout(error):
    """True for torch.distributed's error when a peer did not answer within the process group's timeout, or
    closed its connection (died) during a collective."""
    import torch.distributed as dist

    text = str(error).lower()
    return (in_process_group()
            and ("timed out" in text or "timeout" in text or isinstance(error, getattr(dist, "DistError", ()))
                 or any(lost in text for lost in PEER_LOST)))


def collective_timeout_message(error, timeout_s):
    """One line: which process waited, for whom, how long, and what to do next."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    others = ", ".join(str(r) for r in range(world) if r != rank)
    first_line = " ".join(str(error).splitlines()[:1])[:300]
    if any(lost in str(error).lower() for lost in PEER_LOST):
        return (f"process {rank} of {world} lost its connection to rank(s) {others} in a collective operation: a peer "
                f"died (one that hangs instead is given up after --ddp_timeout {timeout_s} s); the run stops here "
                f"(resume with --resume_from_checkpoint latest). {first_line}")
    return (f"process {rank} of {world} waited more than --ddp_timeout {timeout_s} s for rank(s) {others} in a "
            f"collective operation: a peer died or stopped responding; the run stops here (resume with "
            f"--resume_from_checkpoint latest). {first_line}")


def end_process_without_teardown(status):
    """Flush what Python would flush at exit (logging, stdout, stderr), then leave with `status` at once.

    Everything a run writes (checkpoints, the pipeline, the card, the trackers' files) is closed before this;
    what is skipped is the freeing of objects, where the deadlock above lies."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
