"""A checkpoint is data, never code: resuming reads every file as safetensors, JSON or
`torch.load(weights_only=True)` (annotated_pipeline/training/run_state.py).

Each crafted file below would create a marker file when unpickled in full; resuming from it must
refuse with one line and leave no marker. With --trust_checkpoint the same folder (in the format
checkpoints had before, where accelerate pickled the noise generator and the EMA) resumes, and the
payload does run, which shows the crafted files are real.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: training_runs

from annotated_pipeline.training.run_state import UnsafeCheckpointError, load_pickle  # noqa: E402
from annotated_pipeline.unet import AnnotatedUNet2DModel  # noqa: E402
from train_accelerate import cli  # noqa: E402
from training_runs import TINY, small_parquet  # noqa: E402

pytestmark = pytest.mark.slow
PROG = "train_accelerate.py: error: "


class WritesMarker:
    """Unpickled in full, this opens (creates) `path`: any code could run instead."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"))


def train(capsys, data_dir, out, *extra):
    code = cli(["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
                "--checkpointing_steps", "2", "--logger", "none", "--use_ema", "--max_train_steps", "4", *extra])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """An uninterrupted 4-step run with EMA: checkpoint-2 to resume from, checkpoint-4 to compare with."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert cli(["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
                "--checkpointing_steps", "2", "--logger", "none", "--use_ema", "--max_train_steps", "4"]) == 0
    return out


def copy_checkpoint(reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir(parents=True)
    shutil.copytree(reference / "checkpoint-2", out / "checkpoint-2")
    return out


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.startswith(PROG)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("name", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
def test_a_crafted_pickle_is_refused_and_never_runs(capsys, reference, data_dir, tmp_path, name):
    out = copy_checkpoint(reference, tmp_path)
    marker = tmp_path / "marker"
    state = torch.load(out / "checkpoint-2" / name, weights_only=False)  # the real content, plus a payload
    torch.save({**state, "payload": WritesMarker(marker)}, out / "checkpoint-2" / name)

    code, err = train(capsys, data_dir, out, "--resume_from_checkpoint", "latest")
    assert code == 2
    line = one_error_line(err)
    assert f"checkpoint-2/{name} is a pickle that can run code" in line and "--trust_checkpoint" in line
    assert not marker.exists()
    assert not (out / "checkpoint-4").exists()


def test_an_old_format_checkpoint_resumes_exactly_and_a_crafted_one_only_when_trusted(capsys, reference, data_dir,
                                                                                      tmp_path):
    """The noise generator and the EMA as accelerate pickled them before run_state.py (custom_checkpoint_0.pkl,
    _1.pkl): plain tensors load without a flag; with a payload they are refused unless trusted."""
    checkpoint = reference / "checkpoint-2"
    names = [n for n, _ in AnnotatedUNet2DModel.from_pretrained(checkpoint / "unet").named_parameters()]
    generator = {"rng_state": load_file(checkpoint / "noise_generator_0.safetensors")["rng_state"]}
    shadow = load_file(checkpoint / "ema.safetensors")
    ema = {**json.loads((checkpoint / "ema.json").read_text()), "shadow_params": [shadow[n] for n in names]}

    def old_format(folder, payload=None):
        out = copy_checkpoint(reference, folder)
        legacy = out / "checkpoint-2"
        for name in ("noise_generator_0.safetensors", "ema.safetensors", "ema.json"):
            (legacy / name).unlink()
        torch.save(generator if payload is None else {**generator, "payload": payload}, legacy / "custom_checkpoint_0.pkl")
        torch.save(ema, legacy / "custom_checkpoint_1.pkl")
        return out

    plain = old_format(tmp_path / "plain")
    code, err = train(capsys, data_dir, plain, "--resume_from_checkpoint", "latest")
    assert code == 0, err[-3000:]

    marker = tmp_path / "marker"
    crafted = old_format(tmp_path / "crafted", WritesMarker(marker))
    code, err = train(capsys, data_dir, crafted, "--resume_from_checkpoint", "latest")
    assert code == 2 and "custom_checkpoint_0.pkl is a pickle that can run code" in one_error_line(err)
    assert not marker.exists()
    code, err = train(capsys, data_dir, crafted, "--resume_from_checkpoint", "latest", "--trust_checkpoint")
    assert code == 0, err[-3000:]
    assert marker.exists()  # trusted: unpickled in full, payload and all

    expected = reference / "checkpoint-4"
    for out in (plain, crafted):  # bit-identical to the uninterrupted run, weights and EMA
        for name in ("model.safetensors", "ema.safetensors"):
            a, b = load_file(expected / name), load_file(out / "checkpoint-4" / name)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (out, name)
        assert json.loads((out / "checkpoint-4" / "ema.json").read_text())["optimization_step"] == 4


def test_load_pickle_reads_tensors_and_rng_states_and_refuses_objects(tmp_path):
    import numpy as np

    plain = tmp_path / "plain.pkl"
    torch.save({"step": 3, "numpy": np.random.get_state(), "torch": torch.get_rng_state()}, plain)
    loaded = load_pickle(plain)
    assert loaded["step"] == 3 and torch.equal(loaded["torch"], torch.get_rng_state())
    crafted = tmp_path / "crafted.pkl"
    torch.save([WritesMarker(tmp_path / "marker")], crafted)
    with pytest.raises(UnsafeCheckpointError, match="crafted.pkl is a pickle that can run code"):
        load_pickle(crafted)
    assert not (tmp_path / "marker").exists()
