"""StopOnSignal (training/interrupt.py): the first signal is recorded, the same one passed on by torchrun's agent
moments later is the same request, and a later second one stops the process at once."""

import os
import signal
import time
from types import SimpleNamespace

import pytest

from annotated_pipeline.training import interrupt
from annotated_pipeline.training.interrupt import StopOnSignal

ONE_PROCESS = SimpleNamespace(is_local_main_process=False, num_processes=1)


def test_a_repeat_within_the_window_is_the_same_request_and_a_later_one_stops_at_once(monkeypatch):
    monkeypatch.setattr(interrupt, "REPEAT_WINDOW_S", 0.5)
    with StopOnSignal(ONE_PROCESS) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # as torchrun's agent passes on the terminal's Ctrl-C
        assert stop.requested() == signal.SIGINT
        time.sleep(0.6)
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C pressed again: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


def test_another_signal_within_the_window_still_stops_at_once(monkeypatch):
    with StopOnSignal(ONE_PROCESS) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested() == signal.SIGINT
        handled = []
        monkeypatch.setattr(os, "kill", lambda pid, signum: handled.append(signum))  # the default action, recorded
        stop._handle(signal.SIGTERM, None)
    assert handled == [signal.SIGTERM]
