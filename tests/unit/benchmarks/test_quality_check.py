"""benchmarks/quality_check.py: both checks run through the library (evaluate, training_step) on tiny models.

The numbers of a tiny untrained model mean nothing; the checks are on what was measured: the sampling
check's reports are evaluate's own for the same arguments, bfloat16 changes the samples a little and
nothing else, the training check is deterministic and its two curves differ only by the precision.
"""

import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.evaluation.classifier import load_default_classifier
from annotated_pipeline.evaluation.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, os.fspath(ROOT / "benchmarks"))

import quality_check  # noqa: E402

TINY = dict(dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2, attention_head_dim=4)


@pytest.fixture(scope="module")
def reference_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    table = pq.read_table(ROOT / "data" / "fashion-mnist-sample" / "train.parquet")
    pq.write_table(table.slice(0, 16), root / "test.parquet")
    pq.write_table(table.slice(100, 16), root / "train.parquet")
    return root


def test_sampling_check_reports_evaluate_for_both_precisions(reference_root, capsys):
    torch.manual_seed(0)
    pipe = AnnotatedDDPMPipeline(unet=AnnotatedUNet2DModel(sample_size=28, **TINY),
                                 scheduler=AnnotatedDDPMScheduler(num_train_timesteps=100, beta_schedule="cosine"))
    classifier = load_default_classifier()
    args = dict(num_samples=8, steps=2, batch_size=8, seed=0, data_root=reference_root)
    weights = {name: value.clone() for name, value in pipe.unet.state_dict().items()}
    result = quality_check.check_sampling(pipe, **args, classifier=classifier, compare_samples=4)
    assert type(pipe.scheduler) is AnnotatedDDPMScheduler  # the pipeline leaves as it came, weights unrounded
    assert all(torch.equal(value, weights[name]) for name, value in pipe.unet.state_dict().items())
    direct = evaluate(pipe, num_samples=8, scheduler="ddim", num_inference_steps=2, batch_size=8, seed=0,
                      data_root=reference_root, classifier=classifier)
    assert result["fp32"]["frechet_distance"] == direct["frechet_distance"]
    assert result["fp32"]["frechet_distance_floor"] == result["bf16"]["frechet_distance_floor"]
    assert result["bf16"]["frechet_distance"] != result["fp32"]["frechet_distance"]
    assert 0 < result["mean_pixel_difference"] < 0.1
    out = capsys.readouterr().out
    assert "over the first 4 samples" in out and "Frechet distance floor (N = 8 training images vs 16 test images)" in out


def test_training_check_is_deterministic_and_differs_only_by_precision(capsys):
    args = dict(steps=3, batch=4, seed=0, window=2, model_config=dict(sample_size=16, **TINY))
    curves = quality_check.check_training(**args)
    assert quality_check.check_training(**args) == curves
    fp32, bf16 = torch.tensor(curves["fp32"]), torch.tensor(curves["bf16"])
    assert len(fp32) == 3 and torch.isfinite(fp32).all() and torch.isfinite(bf16).all()
    assert not torch.equal(fp32, bf16) and ((fp32 - bf16).abs() / fp32).max() < 0.05
    assert "huber loss, mean over windows of 2 steps" in capsys.readouterr().out
