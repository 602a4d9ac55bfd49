"""training/distributed.py: which errors mean "a peer is gone", and the one line each gets."""

import pytest
import torch
import torch.distributed as dist

from annotated_pipeline.training.distributed import collective_timeout_message, is_collective_timeout

RESET = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:12179: Connection reset by peer. "
                     "This is typically caused by a remote worker hanging")
CLOSED = RuntimeError("[gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:29500")
TIMEOUT = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms for recv operation")


@pytest.fixture
def group(tmp_path, monkeypatch):
    """A one-process gloo group, and an empty list of kept groups (what keep_process_group fills)."""
    from annotated_pipeline.training import distributed

    monkeypatch.setattr(distributed, "KEPT_GROUPS", [])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_closed_connection_is_a_lost_peer_with_its_own_line(group):
    for error in (RESET, CLOSED):
        assert is_collective_timeout(error)
        message = collective_timeout_message(error, 30)
        assert message.startswith("process 0 of 1 lost its connection to rank(s)  in a collective operation: a peer died")
        assert "given up after --ddp_timeout 30 s" in message and "--resume_from_checkpoint latest" in message
    assert collective_timeout_message(TIMEOUT, 30).startswith("process 0 of 1 waited more than --ddp_timeout 30 s")


def test_other_errors_are_not_a_lost_peer(group):
    assert not is_collective_timeout(RuntimeError("CUDA out of memory"))
    assert not is_collective_timeout(OSError("No space left on device"))


def test_without_a_process_group_nothing_is_a_lost_peer():
    assert not is_collective_timeout(RESET) and not is_collective_timeout(TIMEOUT)


# ------------------------------------------------------------------------------------------------
# How a process of a multi-process run ends: with its status, flushed, without Python's teardown
# ------------------------------------------------------------------------------------------------

ENDS = """
import logging, sys, threading
from annotated_pipeline.training.distributed import end_process_without_teardown

logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.info("a logged line")
print("a printed line")                  # stdout is a pipe here: block-buffered until flushed
print("an error line", file=sys.stderr)
threading.Thread(target=threading.Event().wait, daemon=False).start()  # a teardown would wait for it forever
end_process_without_teardown(3)
"""


def test_ending_without_teardown_keeps_the_status_and_what_was_printed(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", ENDS], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stdout == "a printed line\n" and result.stderr == "a logged line\nan error line\n"


def test_the_train_command_ends_a_process_of_a_group_so_with_its_exit_status(group, monkeypatch):
    from annotated_pipeline.commands import train as command

    ended = []
    monkeypatch.setattr(command, "end_process_without_teardown", ended.append)
    monkeypatch.setattr(command, "train", lambda args: None)
    assert command.main(["--output_dir", "out", "--logger", "none"]) == 0
    assert command.main(["--output_dir", "out", "--learning_rate", "-1"]) == 2
    assert ended == [0, 2]


def test_an_unexpected_error_in_a_process_of_a_group_prints_its_traceback_and_ends_with_1(group, monkeypatch, capsys):
    from annotated_pipeline.commands import train as command

    def fails(args):
        raise KeyError("an unforeseen key")

    ended = []
    monkeypatch.setattr(command, "end_process_without_teardown", ended.append)
    monkeypatch.setattr(command, "train", fails)
    command.main(["--output_dir", "out", "--logger", "none"])
    assert ended == [1]
    error = capsys.readouterr().err
    assert error.startswith("Traceback (most recent call last):") and "KeyError: 'an unforeseen key'" in error


def test_the_group_is_kept_past_end_training_and_the_process_still_ends_without_teardown(group, monkeypatch):
    """Accelerate's end_training destroys the group; DDP's Reducer would then free it (a deadlock, see
    distributed.py) when the training function returns. The group stays held, and the train command still
    knows the process was part of a multi-process run."""
    from accelerate.state import PartialState
    from annotated_pipeline.commands import train as command
    from annotated_pipeline.training import distributed

    world = dist.group.WORLD
    distributed.keep_process_group()
    distributed.keep_process_group()  # once is enough
    assert distributed.KEPT_GROUPS == [world]

    def trains_and_ends(args):
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        model(torch.ones(1, 2)).sum().backward()
        PartialState().destroy_process_group()  # what end_training does
        assert not distributed.in_process_group() and distributed.in_multi_process_run()

    ended = []
    monkeypatch.setattr(command, "end_process_without_teardown", ended.append)
    monkeypatch.setattr(command, "train", trains_and_ends)
    assert command.main(["--output_dir", "out", "--logger", "none"]) == 0
    assert ended == [0] and distributed.KEPT_GROUPS[0] is world


def test_a_single_process_run_returns_as_usual(monkeypatch):
    from annotated_pipeline.commands import train as command

    monkeypatch.setattr(command, "end_process_without_teardown", lambda status: pytest.fail("ended the process"))
    monkeypatch.setattr(command, "train", lambda args: None)
    assert command.main(["--output_dir", "out", "--logger", "none"]) == 0


def test_an_unexpected_error_in_a_single_process_run_is_raised_as_usual(monkeypatch):
    from annotated_pipeline.commands import train as command

    def fails(args):
        raise KeyError("an unforeseen key")

    monkeypatch.setattr(command, "end_process_without_teardown", lambda status: pytest.fail("ended the process"))
    monkeypatch.setattr(command, "train", fails)
    with pytest.raises(KeyError, match="an unforeseen key"):
        command.main(["--output_dir", "out", "--logger", "none"])
