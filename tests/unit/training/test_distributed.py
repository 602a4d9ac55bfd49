"""training/distributed.py: which errors mean "a peer is gone", and the one line each gets."""

import pytest
import torch.distributed as dist

from annotated_pipeline.training.distributed import collective_timeout_message, is_collective_timeout

RESET = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:12179: Connection reset by peer. "
                     "This is typically caused by a remote worker hanging")
CLOSED = RuntimeError("[gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:29500")
TIMEOUT = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms for recv operation")


@pytest.fixture
def group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
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
