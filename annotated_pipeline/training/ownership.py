"""A run owns its --output_dir: one writer at a time, and no run silently replaces another's work.

    claim_output_dir(args)   before anything is built: the lock, then the folder's contents

The lock. `OUTPUT_DIR/.train.lock` holds the owner's pid, host and start time, and the owner holds an
exclusive `flock` on it for the whole run. The kernel drops that lock when the process ends, however
it ends, so a second `train` on the folder is refused (one line, exit 2) exactly while the first one
lives; a lock file left by a dead process is taken over, with a note naming it. (flock is per host: on
a network file system shared by several machines, give each run its own --output_dir.)

The folder. A folder that already holds a run (a saved pipeline, `model_index.json`, or checkpoints)
is refused unless the command says what to do with it:

    --resume_from_checkpoint latest|PATH   continue it (resume.py). `latest` with no complete checkpoint
                                           starts afresh only where no saved pipeline would be overwritten;
                                           beside a saved pipeline it is refused like any other run
    --overwrite_output_dir                 delete what a run writes there (RUN_FILES, checkpoints, logs)
                                           and train anew; other files in the folder are left alone

A run refused before training leaves nothing behind: `OutputDirClaim.abandon()` removes the lock and,
when this run created the folder, the folder.
"""

import fcntl
import glob
import json
import logging
import os
import shutil
import socket
import time

from .args import TrainingConfigError
from .posthoc_ema import SNAPSHOT_FOLDER, list_snapshots
from .checkpointing import CHECKPOINT_PREFIX, list_checkpoints, missing_files, recover_leftovers

LOCK_FILE = ".train.lock"
# What a finished run writes at the top of --output_dir (sampling.save_output_folder, hub.write_model_card,
# quality.py's best/, loop.py's posthoc_ema/), besides checkpoint-N/ and --logging_dir.
RUN_FILES = ("model_index.json", "pipeline.py", "unet", "scheduler", "samples.png", "README.md", "card_inputs.json",
             "best", ".best.incomplete", "posthoc_ema")

logger = logging.getLogger(__name__)


class OutputDirClaim:
    """This process's claim on --output_dir: the open, flocked lock file, and whether this run made the folder."""

    def __init__(self, output_dir, handle, created):
        self.output_dir = output_dir
        self.handle = handle
        self.created = created
        self.training_started = False  # from then on, nothing of the folder is ever removed here

    def release(self):
        """End of the run: delete the lock file and drop the lock (idempotent)."""
        if self.handle is None:
            return
        try:
            os.unlink(os.path.join(self.output_dir, LOCK_FILE))
        except FileNotFoundError:
            pass
        self.handle.close()  # closing drops the flock
        self.handle = None

    def abandon(self):
        """A refused run: release, and remove the folder if this run created it (nothing else is in it)."""
        self.release()
        if self.created and not self.training_started:
            shutil.rmtree(self.output_dir, ignore_errors=True)


def _owner():
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _read_owner(handle):
    handle.seek(0)
    try:
        return json.loads(handle.read() or "null")
    except json.JSONDecodeError:
        return None


def _describe(owner):
    if not isinstance(owner, dict):
        return "a run that left no pid"
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"


def acquire_lock(output_dir):
    """Create `output_dir` if needed and lock it for this process; returns the OutputDirClaim.
    TrainingConfigError naming the owner while another process holds the lock."""
    created = not os.path.exists(output_dir)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise TrainingConfigError(f"--output_dir {output_dir!r} cannot be written: {error.strerror or error}") from None
    path = os.path.join(output_dir, LOCK_FILE)
    while True:
        try:
            handle = open(path, "a+", encoding="utf-8")
        except OSError as error:
            if created:
                shutil.rmtree(output_dir, ignore_errors=True)
            raise TrainingConfigError(f"--output_dir {output_dir!r} cannot be written: {error.strerror or error}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(handle)
            handle.close()
            raise TrainingConfigError(
                f"--output_dir {output_dir} is in use by another train run ({_describe(owner)}); wait for it to "
                "finish or stop it, or choose another --output_dir") from None
        try:
            same_file = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        handle.close()  # the previous owner deleted the file while we opened it: lock the new one
    previous = _read_owner(handle)
    if previous is not None:
        logger.warning(f"--output_dir {output_dir}: took over the lock of a run that is no longer running "
                       f"({_describe(previous)})")
    handle.seek(0)
    handle.truncate()
    json.dump(_owner(), handle)
    handle.flush()
    return OutputDirClaim(output_dir, handle, created)


def previous_run(output_dir):
    """What in `output_dir` another run left (names, for a message): a saved pipeline, checkpoints
    (complete or not)."""
    found = [name for name in RUN_FILES[:1] if os.path.exists(os.path.join(output_dir, name))]
    found += [os.path.basename(path) for path in list_checkpoints(output_dir)]
    if list_snapshots(output_dir):  # post-hoc EMA snapshots of a run stopped before its first checkpoint
        found.append(SNAPSHOT_FOLDER)
    found += sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(output_dir), f".{CHECKPOINT_PREFIX}*")))
    return found


def remove_previous_run(output_dir, logging_dir):
    """--overwrite_output_dir: delete what a run writes in `output_dir` (RUN_FILES, checkpoints, half-written
    ones, the tracker's --logging_dir); anything else stays."""
    names = [*RUN_FILES, logging_dir]
    names += [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(output_dir), "checkpoint-*"))]
    names += [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(output_dir), f".{CHECKPOINT_PREFIX}*"))]
    removed = []
    for name in names:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        else:
            continue
        removed.append(name)
    return removed


def check_previous_run(args):
    """Refuse to train into a folder that holds another run's work unless the command says what to do
    (module docstring); with --overwrite_output_dir delete it, saying what went."""
    found = previous_run(args.output_dir)
    if not found:
        return
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    if args.overwrite_output_dir:
        removed = remove_previous_run(args.output_dir, args.logging_dir)
        logger.warning(f"--overwrite_output_dir: removed the previous run's {', '.join(removed)} from {args.output_dir}")
        return
    if args.resume_from_checkpoint is not None:
        complete = [path for path in list_checkpoints(args.output_dir) if not missing_files(path)]
        if args.resume_from_checkpoint != "latest" or complete or "model_index.json" not in found:
            return  # resume.py takes it from here
        raise TrainingConfigError(
            f"--resume_from_checkpoint latest: {args.output_dir} holds no complete checkpoint to resume, but a saved "
            f"pipeline ({shown}) that a fresh run would overwrite; pass --overwrite_output_dir to replace it, or "
            "choose another --output_dir")
    raise TrainingConfigError(
        f"--output_dir {args.output_dir} already holds a run ({shown}); pass --resume_from_checkpoint latest to "
        "continue it, --overwrite_output_dir to replace it, or choose another --output_dir")


def claim_output_dir(args):
    """Lock --output_dir for this run and check what is in it; returns the OutputDirClaim (release it at
    the end, abandon it when the run is refused before training)."""
    claim = acquire_lock(args.output_dir)
    try:
        for note in recover_leftovers(args.output_dir):  # ours now: no other run is writing them
            logger.warning(f"--output_dir {args.output_dir}: {note}")
        check_previous_run(args)
    except BaseException:
        claim.abandon()
        raise
    return claim
