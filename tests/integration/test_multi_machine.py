"""Two "machines" on localhost: two `accelerate launch --num_machines 2 --machine_rank R` commands, one process each.

As README "Train" shows for real machines: one command per machine, the same --main_process_ip and
--main_process_port, CPU processes joined over gloo (ACCELERATE_USE_CPU=1), the output folder shared
(a cluster's shared file system). Checked, on a tiny U-Net for 12 optimizer steps:

    same weights    the two machines end with bit-identical weights to one machine running 2 processes
                    with the same seed (the same 2 ranks see the same batches and noise)
    a killed one    killing machine 1's processes is reported by machine 0 at once (its connection closed),
                    and both machines relaunched with --resume_from_checkpoint latest resume and finish with the
                    uninterrupted run's weights (each rank resumes its own t/eps generator, run_state.py)
    a silent one    a machine that stops answering without closing its connections (SIGSTOP: as a machine
                    that loses power or network) is given up by machine 0 after --ddp_timeout
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training_runs import REPO, SCRIPT, TINY, launch, small_parquet  # noqa: E402

pytestmark = pytest.mark.slow
STEPS = 12
RUN = [*TINY, "--train_batch_size", "2", "--max_train_steps", str(STEPS), "--checkpointing_steps", "2",
       "--logger", "none", "--seed", "3", "--mixed_precision", "no"]  # fp32 everywhere: "auto" would pick bf16 where native
LAUNCH = ["--multi_gpu", "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(hf_home):
    return dict(os.environ, ACCELERATE_USE_CPU="1", HF_HUB_OFFLINE="1", HF_HOME=str(hf_home), CUDA_VISIBLE_DEVICES="",
                OMP_NUM_THREADS="1")


def start_machines(root, data, out, port, extra=()):
    """Machine 0 and machine 1 (each its own `accelerate launch`); returns their Popen objects and log paths."""
    machines = []
    for rank in (0, 1):
        log = root / f"machine{rank}.log"
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *LAUNCH, "--num_machines", "2",
               "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
               SCRIPT, "--train_data_dir", str(data), "--output_dir", str(out), *RUN, *extra]
        with open(log, "w") as stderr:
            machines.append((subprocess.Popen(cmd, env=environment(root / f"hf_home{rank}"), cwd=REPO,
                                              stdout=subprocess.DEVNULL, stderr=stderr), log))
    return machines


def processes_of(machine):
    """The launcher and every process under it (torchrun starts its workers in sessions of their own)."""
    try:
        root = psutil.Process(machine.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def describe(process):
    try:
        return f"{process.pid} {process.status()} {' '.join(process.cmdline()[-3:])}"
    except psutil.Error:
        return f"{process.pid} gone"


EXIT_LIMIT = 420  # seconds a launch may take to end: above torchrun's exit barrier (300 s), see finish()


def finish(machines, timeout=EXIT_LIMIT):
    """Wait for every machine; kill what is left of any (only processes these tests started). A machine
    still running `timeout` seconds after the wait began fails the test with every machine's processes and the
    end of its log.

    The limit is above torchrun's exit barrier (300 s): when the agents race on the TCP store at exit
    (pytorch/pytorch#69520), machine 0's agent waits out that barrier after its worker has finished,
    logs "Error waiting on exit barrier" and exits with the workers' code."""
    deadline = time.monotonic() + timeout  # for all machines together
    try:
        for machine, _ in machines:
            try:
                machine.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                report = []
                for rank, (other, log) in enumerate(machines):
                    alive = [describe(process) for process in processes_of(other)]
                    report.append(f"machine {rank} (exit {other.poll()}), processes {alive}:\n{log.read_text()[-4000:]}")
                pytest.fail(f"a machine ran past {timeout} s\n" + "\n".join(report))
    finally:
        for machine, _ in machines:
            for process in processes_of(machine):
                process.kill()


def wait_for(path, machines, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline and all(m.poll() is None for m, _ in machines):
        time.sleep(0.1)
    assert path.exists(), f"{path} was not written"


def weights(checkpoint):
    return load_file(Path(checkpoint) / "model.safetensors")


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("one")
    env = environment(root / "hf_home")
    result = launch([*LAUNCH, "--num_machines", "1", "--main_process_port", str(free_port())],
                    ["--train_data_dir", str(data), "--output_dir", str(root / "out"), *RUN], root / "hf_home", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out"


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("two")
    machines = start_machines(root, data, root / "out", free_port())
    finish(machines)
    return root / "out", [(m.returncode, log.read_text()) for m, log in machines]


def test_two_machines_end_with_the_weights_of_one_machine_with_two_processes(one_machine, two_machines):
    out, machines = two_machines
    for rank, (returncode, log) in enumerate(machines):
        assert returncode == 0, f"machine {rank}: {log[-3000:]}"
    assert "Processes = 2" in machines[0][1] and f"Finished training: {STEPS} optimizer steps" in machines[0][1]
    # one process group across both machines: each rank wrote its own random state into the shared folder
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in (out / f"checkpoint-{STEPS}").iterdir()}
    assert_same_weights(out / f"checkpoint-{STEPS}", one_machine / f"checkpoint-{STEPS}")


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, data):
    """Machine 1 killed (launcher and worker) once checkpoint-2 exists; then both relaunched with
    --resume_from_checkpoint latest."""
    root = tmp_path_factory.mktemp("killed")
    out = root / "out"
    machines = start_machines(root, data, out, free_port(), ["--ddp_timeout", "30"])
    try:
        wait_for(out / "checkpoint-2", machines)
        killed_at = time.monotonic()
        for process in processes_of(machines[1][0]):  # the whole machine: launcher and worker
            process.kill()
        machines[0][0].wait(timeout=120)
        took = time.monotonic() - killed_at
    finally:
        finish(machines)
    killed = (machines[0][0].returncode, machines[0][1].read_text(), took)
    (root / "resumed").mkdir()
    resumed = start_machines(root / "resumed", data, out, free_port(),
                             ["--ddp_timeout", "30", "--resume_from_checkpoint", "latest"])
    finish(resumed)
    return out, killed, [(m.returncode, log.read_text()) for m, log in resumed]


def test_a_killed_machine_is_reported_at_once(killed_and_resumed):
    _, (returncode, log, took), _ = killed_and_resumed
    assert returncode != 0 and "Finished training" not in log, log[-3000:]
    assert "process 0 of 2 lost its connection to rank(s) 1" in log, log[-3000:]
    assert "resume with --resume_from_checkpoint latest" in log and took < 30  # at once, not after --ddp_timeout


def test_both_machines_relaunched_resume_from_the_latest_checkpoint_and_finish(killed_and_resumed):
    out, _, resumed = killed_and_resumed
    for rank, (returncode, log) in enumerate(resumed):
        assert returncode == 0, f"machine {rank}: {log[-3000:]}"
    assert "Resumed from checkpoint-" in resumed[0][1] and f"Finished training: {STEPS} optimizer steps" in resumed[0][1]
    assert (out / f"checkpoint-{STEPS}" / "model.safetensors").exists()


def test_the_resumed_run_ends_with_the_weights_of_the_uninterrupted_one(killed_and_resumed, two_machines):
    out, _, _ = killed_and_resumed
    assert_same_weights(out / f"checkpoint-{STEPS}", two_machines[0] / f"checkpoint-{STEPS}")


def test_a_machine_that_stops_answering_is_given_up_after_the_ddp_timeout(tmp_path, data):
    out = tmp_path / "out"
    machines = start_machines(tmp_path, data, out, free_port(), ["--ddp_timeout", "10"])
    stopped = []
    try:
        wait_for(out / "checkpoint-2", machines)
        stopped = processes_of(machines[1][0])
        for process in stopped:
            process.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        machines[0][0].wait(timeout=150)
        took = time.monotonic() - stopped_at
    finally:
        for process in stopped:
            if process.is_running():
                process.kill()
        finish(machines)
    log = machines[0][1].read_text()
    assert machines[0][0].returncode != 0
    assert "process 0 of 2 waited more than --ddp_timeout 10 s for rank(s) 1" in log, log[-3000:]
    assert 9 < took < 120, took


FAKE_SRUN = """#!/usr/bin/env bash
# srun on one machine: the task once per node, SLURM_NODEID = 0 .. SLURM_NNODES - 1, all at once
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node "$@" > "$FAKE_SLURM_LOGS/node$node.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


def test_the_slurm_template_runs_one_launch_per_machine_with_the_same_result(tmp_path, data, two_machines):
    """scripts/slurm_train.sbatch under a stand-in srun that runs its task for node 0 and node 1 on this machine
    (scontrol names 127.0.0.1 as the first node): the weights of the two-machine run above."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    # the first node by address, as the other multi-machine tests name it ("localhost" may resolve to ::1 first)
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nprintf '127.0.0.1\\n127.0.0.1\\n'\n")
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    env = {**environment(tmp_path / "hf_home"), "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node[1-2]",
           "MAIN_PORT": str(free_port()), "MIXED_PRECISION": "no", "SLURM_CPUS_ON_NODE": "1",
           "FAKE_SLURM_LOGS": str(tmp_path), "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("ACCELERATE_USE_CPU")  # the template sets it on a node without GPUs
    out = tmp_path / "out"
    # its own session, so that a run past the limit is stopped whole (srun's tasks, their launchers, the workers)
    # and the test reports where each node was, rather than leaving processes behind for the tests after it
    job = subprocess.Popen(["bash", str(REPO / "scripts" / "slurm_train.sbatch"), "--train_data_dir", str(data),
                            "--output_dir", str(out), *RUN], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = job.communicate(timeout=EXIT_LIMIT)
    except subprocess.TimeoutExpired:
        left = processes_of(job)  # torchrun's workers are in sessions of their own: killed one by one
        alive = [describe(process) for process in left]
        os.killpg(job.pid, signal.SIGKILL)
        for process in left:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        job.communicate()
        logs = "\n".join(f"node {n}:\n{(tmp_path / f'node{n}.log').read_text()[-3000:]}" for n in (0, 1)
                         if (tmp_path / f"node{n}.log").exists())
        pytest.fail(f"the template ran past {EXIT_LIMIT} s; processes {alive}\n{logs}")
    node0 = (tmp_path / "node0.log").read_text()
    assert job.returncode == 0, stderr[-2000:] + node0[-3000:] + (tmp_path / "node1.log").read_text()[-2000:]
    assert "slurm_train.sbatch: 2 machines x 1 processes, main 127.0.0.1" in stderr
    assert "Processes = 2" in node0 and f"Finished training: {STEPS} optimizer steps" in node0
    assert_same_weights(out / f"checkpoint-{STEPS}", two_machines[0] / f"checkpoint-{STEPS}")


def test_the_slurm_template_parses_and_wants_the_training_arguments(tmp_path):
    template = REPO / "scripts" / "slurm_train.sbatch"
    assert subprocess.run(["bash", "-n", str(template)]).returncode == 0
    result = subprocess.run(["bash", str(template)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "give the training arguments" in result.stderr
