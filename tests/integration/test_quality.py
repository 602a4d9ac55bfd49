"""A quality measure for any labelled data set: the shapes set, train-classifier, the KID, evaluate with
--classifier/--reference, and the nearest-neighbour memorisation check.

Everything runs on a shapes set the tests draw (annotated_pipeline.datasets.shapes, CC0), never on Fashion-MNIST.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotated_pipeline.datasets import labelled
from annotated_pipeline.evaluation.classifier import ImageClassifier, load_classifier
from annotated_pipeline.evaluation.evaluate import evaluate, format_report
from annotated_pipeline.evaluation.evaluate import main as evaluate_main
from annotated_pipeline.evaluation.kid import kernel_distance, mmd2_unbiased, polynomial_kernel
from annotated_pipeline.evaluation.nearest import main as nearest_main
from annotated_pipeline.evaluation.nearest import memorisation, nearest_check, run_check
from annotated_pipeline.evaluation.train_classifier import main as train_classifier_main
from annotated_pipeline.datasets.shapes import SHAPE_CLASSES, write_shapes

CLASSIFIER_ARGS = ["--epochs", "6", "--batch_size", "32", "--channels", "16,32", "--learning_rate", "3e-3"]


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """600 training and 150 test images, 32x32 RGB."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    write_shapes(root, num_images=600, num_test=150, seed=0)
    return root


@pytest.fixture(scope="module")
def shapes_classifier(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier") / "classifier"
    assert train_classifier_main([str(shapes), "--output_dir", str(out), *CLASSIFIER_ARGS],
                                 prog="annotated-pipeline train-classifier") == 0
    return out


# ----------------------------------------------------------------------------------------------------
# the shapes set


def test_shapes_layout_labels_and_determinism(shapes, tmp_path):
    for split, count in (("train", 600), ("test", 150)):
        assert sorted(p.name for p in (shapes / split).iterdir()) == list(SHAPE_CLASSES)
        for k, shape in enumerate(SHAPE_CLASSES):
            files = sorted((shapes / split / shape).glob("*.png"))
            assert len(files) == count // len(SHAPE_CLASSES)  # balanced
            image = Image.open(files[0])
            assert image.mode == "RGB" and image.size == (32, 32)
    assert "CC0" in (shapes / "README.md").read_text()
    # The training data reader sees the splits and the class names as labels, in SHAPE_CLASSES order.
    train = labelled.open_split(shapes, "train")
    assert len(train) == 600 and labelled.class_names_of(train, "label") == SHAPE_CLASSES
    first = train[0]
    assert SHAPE_CLASSES[first["label"]] in train.info.features["label"].names
    assert len(labelled.open_split(shapes, "test")) == 150
    # Same seed, same bytes; another seed, other images.
    write_shapes(tmp_path / "a", num_images=20, num_test=5, seed=3)
    write_shapes(tmp_path / "b", num_images=20, num_test=5, seed=3)
    write_shapes(tmp_path / "c", num_images=20, num_test=5, seed=4)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b") != tree_digest(tmp_path / "c")
    with pytest.raises(ValueError, match="not empty"):
        write_shapes(tmp_path / "a", num_images=20)
    result = subprocess.run([sys.executable, "-m", "annotated_pipeline.datasets.shapes", str(tmp_path / "d"), "--num_images", "10",
                             "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "wrote 10 training and 2 test images" in result.stdout, result.stderr


# ----------------------------------------------------------------------------------------------------
# the classifier on the shapes set


def test_train_classifier_on_shapes_is_accurate_and_saves_a_folder(shapes, shapes_classifier):
    info = json.loads((shapes_classifier / "training_info.json").read_text())
    assert info["held_out"].startswith("the test split") and info["num_test_images"] == 150
    assert info["test_accuracy"] >= 0.85, info  # chance is 0.2
    model = load_classifier(shapes_classifier)
    assert model.class_names == SHAPE_CLASSES and model.input_shape == (3, 32, 32)
    config = json.loads((shapes_classifier / "config.json").read_text())
    assert config["class_names"] == list(SHAPE_CLASSES) and config["num_classes"] == 5
    # The reported accuracy is what the saved weights score on the test split.
    x, y = labelled.to_tensors(labelled.open_split(shapes, "test"), 32, 3, label_column="label")
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).double().mean().item()
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-4)
    print(f"shapes classifier: held-out accuracy {info['test_accuracy']:.4f} in {info['train_seconds']} s")


def test_without_a_test_split_a_seeded_share_is_held_out(shapes, tmp_path):
    out = tmp_path / "classifier"
    train_classifier_main([str(shapes / "train"), "--output_dir", str(out), "--epochs", "1", "--batch_size", "64",
                           "--channels", "4,8", "--holdout_fraction", "0.2", "--max_train_samples", "100"])
    info = json.loads((out / "training_info.json").read_text())
    assert info["num_test_images"] == 120 and "seeded 0.2 of the training split" in info["held_out"]
    kept, held = labelled.holdout_indices(600, 0.2, 0)
    assert len(held) == 120 and not set(kept) & set(held) and len(kept) + len(held) == 600


def test_the_shipped_weights_still_load_as_before():
    from annotated_pipeline.evaluation.classifier import FashionMNISTClassifier, load_default_classifier

    model = load_default_classifier()
    assert FashionMNISTClassifier is ImageClassifier and model.config.pooling == "flatten"
    assert model.input_shape == (1, 28, 28) and model.class_names[9] == "Ankle boot"
    assert model.fc_features.in_features == 64 * 7 * 7


# ----------------------------------------------------------------------------------------------------
# KID


class Flatten(torch.nn.Module):
    """The feature extractor handed to torchmetrics: the 'images' are already feature vectors."""

    def forward(self, x):
        return x.flatten(1)


@pytest.mark.parametrize("subset_size", [40, 25])
def test_kid_matches_torchmetrics(subset_size):
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(0)
    real = torch.randn(40, 6, generator=g, dtype=torch.float64)
    fake = torch.randn(50, 6, generator=g, dtype=torch.float64) * 1.3 + 0.2
    metric = KernelInceptionDistance(feature=Flatten(), subsets=7, subset_size=subset_size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(5)  # torchmetrics draws its subsets from the global generator, real set first
    expected_mean, expected_std = metric.compute()
    ours = kernel_distance(real, fake, num_subsets=7, subset_size=subset_size, seed=5)
    assert ours["kid"] == pytest.approx(float(expected_mean), rel=1e-9, abs=1e-12)
    assert ours["kid_std"] == pytest.approx(float(expected_std), rel=1e-7, abs=1e-12)
    assert ours["kid_subset_size"] == subset_size and ours["kid"] > 0


def test_kid_closed_forms():
    # Each set a single point repeated: MMD^2_u = k(u, u) + k(v, v) - 2 k(u, v) exactly.
    u, v = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([[-1.0, 0.5]], dtype=torch.float64)
    k = lambda a, b: (float(a @ b.T) / 2 + 1) ** 3  # noqa: E731
    assert mmd2_unbiased(u.repeat(5, 1), v.repeat(7, 1)) == pytest.approx(k(u, u) + k(v, v) - 2 * k(u, v), rel=1e-12)
    assert polynomial_kernel(u, v).item() == pytest.approx(k(u, v))
    # By hand, D = 1: x = {0, 1}, y = {2, 3}: within x 2 k(0, 1) / 2, within y k(2, 3), across the mean of 4 values.
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]])
    kk = lambda a, b: (a * b + 1) ** 3  # noqa: E731
    by_hand = kk(0, 1) + kk(2, 3) - 2 * (kk(0, 2) + kk(0, 3) + kk(1, 2) + kk(1, 3)) / 4
    assert mmd2_unbiased(x, y) == pytest.approx(by_hand, rel=1e-12)
    # Unbiased: two samples of one distribution average to 0 (within a few standard errors) and may go below it.
    g = torch.Generator().manual_seed(1)
    values = [mmd2_unbiased(torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g)) for _ in range(200)]
    assert abs(np.mean(values)) < 4 * np.std(values) / np.sqrt(len(values)) and min(values) < 0
    # Subsets as large as both sets are the sets themselves: one value, no spread.
    a, b = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    whole = kernel_distance(a, b, num_subsets=50, subset_size=1000)
    assert whole["kid_num_subsets"] == 1 and whole["kid_std"] == 0 and whole["kid_subset_size"] == 12
    assert whole["kid"] == pytest.approx(mmd2_unbiased(a, b), rel=1e-12)
    with pytest.raises(ValueError, match="same D"):
        kernel_distance(torch.zeros(5, 3), torch.zeros(5, 4))


# ----------------------------------------------------------------------------------------------------
# evaluate --classifier --reference


def tiny_shapes_pipeline(sample_size=32, in_channels=3):
    from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=sample_size, in_channels=in_channels, dim=8, dim_mults=(1, 2),
                                resnet_block_groups=2, attention_heads=2, attention_head_dim=4, num_class_embeds=5)
    return AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=20))


def test_evaluate_with_classifier_and_reference(shapes, shapes_classifier, tmp_path, capsys):
    pipeline_dir = tmp_path / "pipeline"
    tiny_shapes_pipeline().save_pretrained(pipeline_dir)
    args = [str(pipeline_dir), "--classifier", str(shapes_classifier), "--reference", str(shapes), "--num_samples", "20",
            "--scheduler", "ddim", "--num_inference_steps", "2", "--batch_size", "10", "--kid_subsets", "10",
            "--kid_subset_size", "20", "--json", str(tmp_path / "report.json")]
    assert evaluate_main(args, prog="annotated-pipeline evaluate") == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_reference"] == 150 and report["reference_split"] == "test images"
    assert report["class_names"] == list(SHAPE_CLASSES) and "triangle" in printed and "KID" in printed
    # An untrained model is far from the data; 20 real training images are not (both numbers, both floors).
    assert report["kid"] > report["kid_floor"] + 3 * report["kid_std"]
    assert report["frechet_distance"] > 2 * report["frechet_distance_floor"]
    assert sum(report["class_coverage"]["counts"]) == 20 and len(report["class_coverage"]["shares"]) == 5
    # The floor against an independent computation: 20 seeded training images vs the test split.
    from annotated_pipeline.evaluation.measures import embed
    from annotated_pipeline.evaluation.reference import choose
    from annotated_pipeline.evaluation.frechet import frechet_distance_between

    model = load_classifier(shapes_classifier)
    test_x, _ = labelled.to_tensors(labelled.open_split(shapes, "test"), 32, 3)
    train_x, _ = labelled.to_tensors(labelled.open_split(shapes, "train"), 32, 3)
    floor = frechet_distance_between(embed(model, choose(train_x, 20, 1))[0], embed(model, test_x)[0])
    assert report["frechet_distance_floor"] == pytest.approx(floor, rel=1e-6)  # oneDNN may sum in another order
    assert "shipped" not in report["note"] and "NOT" in report["note"]


def test_shape_mismatches_are_one_error_before_sampling(shapes, shapes_classifier, capsys):
    calls = []
    pipe = tiny_shapes_pipeline(sample_size=16)
    original = type(pipe).__call__
    type(pipe).__call__ = lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    kwargs = dict(num_samples=10, num_inference_steps=2, batch_size=10)
    try:
        with pytest.raises(ValueError, match=r"classifier reads \(3, 32, 32\).*makes \(3, 16, 16\)"):
            evaluate(pipe, classifier=shapes_classifier, reference=shapes, **kwargs)
        with pytest.raises(ValueError, match="3-channel 32x32 images; the classifier reads 1-channel 28x28"):
            evaluate(tiny_shapes_pipeline(28, 1), reference=shapes, **kwargs)  # the shipped Fashion-MNIST classifier
        with pytest.raises(ValueError, match="pipeline makes 3-channel 16x16"):
            run_check(pipe, shapes, num_samples=4)
    finally:
        type(pipe).__call__ = original
    assert calls == []
    with pytest.raises(SystemExit) as exit_:
        evaluate_main(["x", "--reference", str(shapes), "--data_root", str(shapes)])
    assert exit_.value.code == 2 and "error: --reference and --data_root" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# nearest neighbours


@pytest.fixture(scope="module")
def shape_tensors(shapes):
    train, _ = labelled.to_tensors(labelled.open_split(shapes, "train"), 32, 3)
    test, _ = labelled.to_tensors(labelled.open_split(shapes, "test"), 32, 3)
    return train, test


def test_memorisation_known_truth(shape_tensors, shapes_classifier):
    train, test = shape_tensors
    model = load_classifier(shapes_classifier)
    copies = nearest_check(train[:60], train, model)
    assert copies["pixels"]["memorised_share"] == 1.0 and copies["features"]["memorised_share"] == 1.0
    assert copies["pixels"]["nearest_indices"][7][0] == 7  # its own training image
    noise = nearest_check(torch.rand(60, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1, train, model)
    assert noise["pixels"]["memorised_share"] == 0.0 and noise["features"]["memorised_share"] <= 0.05
    fresh = nearest_check(test[:100], train, model)  # new images of the same distribution: about q = 0.05
    assert fresh["pixels"]["memorised_share"] <= 0.2 and fresh["features"]["memorised_share"] <= 0.2
    # A near copy (a training image with slight noise) still counts; the threshold is the LOO quantile.
    near = train[:30] + 0.01 * torch.randn(30, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert memorisation(near, train)["memorised_share"] == 1.0
    with pytest.raises(ValueError, match="quantile"):
        memorisation(near, train, quantile=1.0)
    # The chunked leave-one-out distances against the full matrix with its diagonal removed.
    from annotated_pipeline.evaluation.nearest import leave_one_out_distances, pairwise_distances

    full = torch.cdist(train[:50].flatten(1).double(), train[:50].flatten(1).double()).fill_diagonal_(float("inf"))
    assert torch.allclose(leave_one_out_distances(train[:50], chunk=16), full.min(dim=1).values, rtol=1e-9)
    assert torch.allclose(pairwise_distances(train[:5], train[5:9]),
                          torch.cdist(train[:5].flatten(1).double(), train[5:9].flatten(1).double()), rtol=1e-9)


class CopyingPipeline:
    """A 'model' that returns its training images: the known-memorising case, end to end."""

    def __init__(self, images, unet):
        from diffusers import DDPMScheduler

        self.images, self.unet, self.scheduler, self.served = images, unet, DDPMScheduler(num_train_timesteps=20), 0

    def __call__(self, batch_size, generator=None, num_inference_steps=1, output_type="pt", **kwargs):
        from types import SimpleNamespace

        out = self.images[self.served:self.served + batch_size].add(1).div(2)
        self.served += batch_size
        return SimpleNamespace(images=out)


def test_nearest_command_and_copying_model(shapes, shapes_classifier, shape_tensors, tmp_path, capsys):
    train, _ = shape_tensors
    copying = CopyingPipeline(train[10:26], tiny_shapes_pipeline().unet)
    report, samples, _ = run_check(copying, shapes, shapes_classifier, num_samples=16, batch_size=8)
    assert report["pixels"]["memorised_share"] == 1.0 and report["features"]["memorised_share"] == 1.0
    pipeline_dir = tmp_path / "pipeline"
    tiny_shapes_pipeline().save_pretrained(pipeline_dir)
    figure = tmp_path / "nearest.png"
    assert nearest_main([str(pipeline_dir), "--train_data", str(shapes), "--classifier", str(shapes_classifier),
                         "--num_samples", "12", "--num_show", "4", "--k", "2", "--num_inference_steps", "2",
                         "--output", str(figure), "--json", str(tmp_path / "nearest.json")]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "nearest.json").read_text())
    assert saved["pixels"]["memorised_share"] == 0.0  # an untrained model draws noise, not training images
    assert "memorised (pixels  )" in printed and "memorised (features)" in printed
    assert "samples              12 (AnnotatedDDPMScheduler, 2 steps, seed 0)" in printed  # the folder's sampler, said
    image = Image.open(figure)
    assert image.size == ((1 + 2 + 2) * 64, 4 * 64) and image.mode == "RGB"  # 2x tiles: sample, 2 + 2 neighbours


# ----------------------------------------------------------------------------------------------------
# during training


def test_training_logs_quality_and_keeps_the_best(shapes, shapes_classifier, tmp_path):
    """6 steps of a tiny model on the shapes, measured every 3: quality/... scalars in TensorBoard, best/ = the lower KID."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    command = [sys.executable, "-m", "annotated_pipeline.train", "--train_data_dir", str(shapes), "--label_column", "label",
               "--resolution", "32", "--dim", "8", "--dim_mults", "1,2", "--ddpm_num_steps", "20",
               "--ddpm_num_inference_steps", "2", "--eval_batch_size", "10", "--lr_warmup_steps", "2",
               "--learning_rate", "1e-3", "--train_batch_size", "8", "--max_train_steps", "6",
               "--checkpointing_steps", "100", "--eval_steps", "3", "--eval_num_samples", "10",
               "--eval_classifier", str(shapes_classifier), "--eval_reference", str(shapes), "--save_best",
               "--output_dir", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                                     "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    event_files = list((out / "logs" / "train_accelerate").glob("events.out.tfevents.*"))  # (hparams: a sub-folder)
    assert len(event_files) == 1, event_files
    events = EventAccumulator(str(event_files[0]), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for name in ("frechet_distance", "kid", "kid_std", "kid_floor", "frechet_distance_floor", "min_share", "label_accuracy"):
        assert f"quality/{name}" in tags["scalars"], tags["scalars"]
    kid = {e.step: e.value for e in events.Scalars("quality/kid")}
    assert sorted(kid) == [3, 6]
    assert "quality_samples" in tags["images"] and "samples" in tags["images"]
    best = json.loads((out / "best" / "quality.json").read_text())
    assert best["step"] == min(kid, key=kid.get)
    assert best["kid"] == pytest.approx(kid[best["step"]], rel=1e-6)  # TensorBoard stores float32
    assert not (out / ".best.incomplete").exists() and not (out / ".best.old").exists()
    from annotated_pipeline import AnnotatedDDPMPipeline

    pipe = AnnotatedDDPMPipeline.from_pretrained(out / "best")
    assert pipe.unet.config.sample_size == 32 and pipe.unet.config.num_class_embeds == 5


def test_training_quality_options_are_checked_before_training(shapes, shapes_classifier, tmp_path):
    from annotated_pipeline.training.args import TrainingConfigError, parse_args
    from annotated_pipeline.training.quality import QualityCheck, resolve_sources

    base = ["--output_dir", str(tmp_path / "out"), "--train_data_dir", str(shapes), "--label_column", "label"]
    with pytest.raises(TrainingConfigError, match="--save_best need --eval_steps"):
        parse_args([*base, "--save_best"])
    with pytest.raises(TrainingConfigError, match="--eval_num_samples >= 2"):
        parse_args([*base, "--eval_steps", "5", "--eval_num_samples", "1"])
    with pytest.raises(TrainingConfigError, match="needs --eval_classifier FOLDER"):
        resolve_sources(parse_args([*base, "--eval_steps", "5"]))
    # Fashion-MNIST training data (the embedded sample) defaults to the shipped classifier and the official test split.
    fashion = parse_args(["--output_dir", str(tmp_path / "out"), "--eval_steps", "5", "--eval_num_samples", "20"])
    assert resolve_sources(fashion) == (None, {"data_root": "/usr/share/datasets/fashion-mnist"})  # .ci/run installs it
    check = QualityCheck.from_args(fashion, channels=1)
    assert check.classifier.class_names[0] == "T-shirt/top"
    assert check.reference_features.shape == (10000, 128) and check.floor_features.shape == (20, 128)
    wrong_size = parse_args([*base, "--eval_steps", "5", "--resolution", "16", "--eval_classifier", str(shapes_classifier),
                             "--eval_reference", str(shapes)])
    with pytest.raises(TrainingConfigError, match=r"classifier reads \(3, 32, 32\).*trained on \(3, 16, 16\)"):
        QualityCheck.from_args(wrong_size, channels=3)
    assert QualityCheck.from_args(parse_args(base), channels=3) is None
