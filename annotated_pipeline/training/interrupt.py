"""Ctrl-C (SIGINT) and SIGTERM stop a run cleanly: the optimizer step in progress finishes, a checkpoint
of it is written, and the command exits with 128 + the signal's number (130, 143), saying in one line
how to go on (`train.main`).

    with StopOnSignal(accelerator) as stop:   handlers for SIGINT and SIGTERM for the run
        ... after each optimizer step:
        if stop.requested():                  on every process at the same step (one all-gather)
            ... write checkpoint-N, raise TrainingInterrupted

A second signal while the first is being handled stops the process at once, as the signal would
without this module, unless it is the same signal within REPEAT_WINDOW_S of the first: Ctrl-C signals a
terminal's whole foreground process group, so each DDP worker of `accelerate launch` (torchrun) gets it
from the terminal and again, milliseconds later, from torchrun's agent, which passes on the signal it got.
(The agent then waits its shutdown timeout, 30 s by default, for the workers before it kills them: a
checkpoint that takes longer to write is lost, and the previous one stands.)
"""

import os
import signal
import sys
import time

import torch


class TrainingInterrupted(RuntimeError):
    """The run stopped on a signal after writing a checkpoint of its last step."""

    def __init__(self, signum, step, checkpoint, announce=True):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.announce = announce  # False on every process but the main one: the run says it once
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; saved {checkpoint}. To go on, "
                         "run the same command with --resume_from_checkpoint latest")

    @property
    def exit_status(self):
        return 128 + self.signum


REPEAT_WINDOW_S = 2.0  # the same signal again within this many seconds is the same request (see above)


class StopOnSignal:
    """Record SIGINT/SIGTERM instead of dying mid-step; `requested()` asks after a step."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.signum = None
        self._first_at = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum == signum and time.monotonic() - self._first_at < REPEAT_WINDOW_S:
            return  # the terminal's signal passed on by torchrun's agent
        if self.signum is not None:  # the second one: do what the signal does by default, now
            self.__exit__()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.signum, self._first_at = signum, time.monotonic()
        if self.accelerator.is_local_main_process:
            print(f"\n{signal.Signals(signum).name}: stopping after this step, once its checkpoint is written "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals keep their default meaning
                pass
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def requested(self):
        """The signal number if any process got a signal (the same answer on every process), else None."""
        signum = self.signum or 0
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([signum], device=self.accelerator.device)
            signum = int(self.accelerator.gather(flag).max().item())
        return signum or None
