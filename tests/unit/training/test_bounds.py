"""Bounds before work (training/bounds.py, unet/config.py, the scheduler): what cannot fit is refused as
a configuration, in one line, before anything is allocated or trained."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: training_runs

from annotated_pipeline import AnnotatedDDPMScheduler, AnnotatedUNet2DModel  # noqa: E402
from annotated_pipeline.train import main as train_main  # noqa: E402
from annotated_pipeline.training.bounds import training_memory_bytes  # noqa: E402
from training_runs import EMBEDDED  # noqa: E402

PROG = "annotated-pipeline train"


def test_the_estimate_is_parameters_plus_activations():
    # 10 parameters: weights, gradient, two AdamW moments, EMA; one level of 2 x 4 x 4 values per image.
    assert training_memory_bytes(10, 3, 4, 2, (1,), use_ema=True, gradient_checkpointing=False) == 4 * 10 * 5 + 64 * 3 * 32
    assert training_memory_bytes(10, 3, 4, 2, (1,), use_ema=False, gradient_checkpointing=True) == 4 * 10 * 4 + 64 * 3 * 32 / 4


@pytest.mark.parametrize("extra", [["--train_batch_size", "100000"], ["--resolution", "2048", "--train_batch_size", "64"]])
def test_a_run_that_cannot_fit_in_memory_is_refused_before_training(tmp_path, capsys, extra):
    out = tmp_path / "out"
    code = train_main(["--train_data_dir", str(EMBEDDED.parent), "--output_dir", str(out), "--max_train_steps", "1",
                       "--logger", "none", *extra], prog=PROG)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"{PROG}: error: this run needs about ") and "GiB of RAM: lower --train_batch_size" in line
    assert not out.exists()  # a refused run leaves nothing behind


def test_configs_that_ask_for_absurd_sizes_are_refused_as_configs(tmp_path):
    with pytest.raises(ValueError, match="num_train_timesteps must be at most 100000, got 100000000"):
        AnnotatedDDPMScheduler(num_train_timesteps=10**8)
    folder = tmp_path / "scheduler"
    AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2").save_pretrained(folder)
    config = json.loads((folder / "scheduler_config.json").read_text())
    (folder / "scheduler_config.json").write_text(json.dumps({**config, "num_train_timesteps": 10**8}))
    with pytest.raises(ValueError, match="num_train_timesteps must be at most 100000"):
        AnnotatedDDPMScheduler.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"dim \* max\(dim_mults\) = 1000000 with 3 levels exceeds"):
        AnnotatedUNet2DModel(sample_size=32, dim=10**6, dim_mults=(1, 1, 1))
    with pytest.raises(ValueError, match="sample_size must be at most 4096, got 1048576"):
        AnnotatedUNet2DModel(sample_size=2**20, dim=8, dim_mults=(1, 2))
