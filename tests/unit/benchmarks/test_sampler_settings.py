"""benchmarks/sampler_settings.py: every named setting runs, and each one samples with the settings it names.

A tiny untrained pipeline and 16 reference images (the embedded sample); the numbers are meaningless,
the checks are on what was sampled.
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

import sampler_settings  # noqa: E402


def tiny_pipeline():
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=28, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=4)
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=100, beta_schedule="cosine", timestep_spacing="trailing",
                                       thresholding=True, sample_max_value=1.0)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    table = pq.read_table(ROOT / "data" / "fashion-mnist-sample" / "train.parquet")
    pq.write_table(table.slice(0, 16), root / "test.parquet")
    pq.write_table(table.slice(100, 16), root / "train.parquet")
    return dict(num_samples=16, batch_size=16, data_root=root, classifier=load_default_classifier())


@pytest.mark.slow  # 28 s: every sampler setting of the benchmark, in full
def test_every_setting_runs_and_restores_the_scheduler(setup):
    pipe = tiny_pipeline()
    reports = {name: sampler_settings.run_setting(pipe, name, **setup) for name in sampler_settings.SETTINGS}
    assert type(pipe.scheduler).__name__ == "AnnotatedDDPMScheduler"
    for name, report in reports.items():
        assert report["num_samples"] == 16 and report["frechet_distance"] > 0, name
        assert report["num_inference_steps"] == (20 if name.endswith("-20") else 50), name
    # the settings differ in what they sample
    distances = {round(r["frechet_distance"], 6) for r in reports.values()}
    assert len(distances) >= len(reports) - 2


def test_project_default_is_the_setting_it_claims(setup):
    """The pipeline's own defaults (trailing, bounded x_0_hat, eps from the clipped x_0_hat) with DDIM swapped
    in give exactly the "ddim-trailing-clip-eps-from-clipped" setting, and DPM-Solver++ "dpmsolver-logsnr-bound-20"
    (steps uniform in log-SNR), not "dpmsolver-trailing-bound-20"."""
    pipe = tiny_pipeline()
    named = sampler_settings.run_setting(pipe, "ddim-trailing-clip-eps-from-clipped", **setup)
    plain = evaluate(pipe, scheduler="ddim", num_inference_steps=50, **setup)
    assert plain["frechet_distance"] == named["frechet_distance"]
    unclipped_eps = sampler_settings.run_setting(pipe, "ddim-trailing-clip", **setup)
    assert unclipped_eps["frechet_distance"] != named["frechet_distance"]
    dpm = evaluate(pipe, scheduler="dpmsolver", num_inference_steps=20, **setup)
    assert dpm["frechet_distance"] == sampler_settings.run_setting(pipe, "dpmsolver-logsnr-bound-20", **setup)["frechet_distance"]
    assert dpm["frechet_distance"] != sampler_settings.run_setting(pipe, "dpmsolver-trailing-bound-20", **setup)["frechet_distance"]


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="unknown setting 'ddim-fast'"):
        sampler_settings.run_setting(tiny_pipeline(), "ddim-fast", 16)
