"""Tests for annotated_pipeline.evaluation: Frechet math, the shipped classifier, the evaluate command.

Reference data is the embedded sample (data/fashion-mnist-sample/train.parquet, 2000 training
images), never the official files, so these tests run anywhere.
"""

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from annotated_pipeline.evaluation.classifier import FashionMNISTClassifier, load_default_classifier
from annotated_pipeline.evaluation import train_classifier
from annotated_pipeline.evaluation.evaluate import evaluate, format_report, main
from annotated_pipeline.evaluation.measures import class_coverage, distance_floor, embed
from annotated_pipeline.evaluation.reference import choose, load_reference_images, load_split, uint8_to_classifier_input
from annotated_pipeline.evaluation.samples import generate_samples
from annotated_pipeline.pipelines.samplers import set_scheduler
from annotated_pipeline.evaluation.frechet import feature_statistics, frechet_distance, frechet_distance_between

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "fashion-mnist-sample" / "train.parquet"


def random_spd(d, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------
# Frechet distance against closed forms


def test_identical_gaussians_have_zero_distance():
    mu, sigma = torch.randn(16, dtype=torch.float64), random_spd(16, 0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_one_dimensional_closed_form():
    # N(m1, s1^2) vs N(m2, s2^2): d^2 = (m1 - m2)^2 + (s1 - s2)^2
    for m1, s1, m2, s2 in [(1.0, 2.0, 3.0, 3.0), (-0.5, 0.1, 0.5, 4.0), (0.0, 1.0, 0.0, 1.0)]:
        t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        d2 = frechet_distance(t([m1]), t([[s1**2]]), t([m2]), t([[s2**2]]))
        assert d2 == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-10, abs=1e-12)


def test_diagonal_closed_form():
    # Diagonal covariances: d^2 = sum_i (m1_i - m2_i)^2 + (sqrt(v1_i) - sqrt(v2_i))^2
    g = torch.Generator().manual_seed(1)
    mu1, mu2 = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    v1, v2 = torch.rand(8, generator=g, dtype=torch.float64) + 0.1, torch.rand(8, generator=g, dtype=torch.float64) * 3
    expected = ((mu1 - mu2) ** 2 + (v1.sqrt() - v2.sqrt()) ** 2).sum().item()
    assert frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_eigenvalues_of_the_product():
    # An independent route: Tr((S1 S2)^(1/2)) = sum sqrt(eigenvalues of the non-symmetric S1 S2).
    s1, s2 = random_spd(12, 2), random_spd(12, 3, scale=2.0)
    mu1, mu2 = torch.zeros(12, dtype=torch.float64), torch.full((12,), 0.3, dtype=torch.float64)
    eig = torch.linalg.eigvals(s1 @ s2)
    assert eig.imag.abs().max() < 1e-8
    expected = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * eig.real.clamp_min(0).sqrt().sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected.item(), rel=1e-9)


def test_symmetric():
    mu1, mu2 = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    s1, s2 = random_spd(10, 4), random_spd(10, 5)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-10)


@pytest.mark.parametrize("n, d", [(2000, 32), (50, 128)])  # the second is rank deficient (N < D)
def test_feature_set_to_itself_is_zero(n, d):
    features = torch.randn(n, d, generator=torch.Generator().manual_seed(6)) * 3 + 1
    _, sigma = feature_statistics(features)
    assert frechet_distance_between(features, features) < 1e-6 * sigma.trace().item()


def _centred_pair(n1, n2, d, seed):
    """Two random feature sets, the second with correlated dimensions, and their centred float64 matrices."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n1, d, generator=g, dtype=torch.float64) * 2 + 0.5
    mixing = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    y = torch.randn(n2, d, generator=g, dtype=torch.float64) @ mixing
    return x, y, x - x.mean(0), y - y.mean(0)


@pytest.mark.parametrize("n1, n2, d", [(300, 200, 16), (90, 40, 24)])  # full-rank covariances (N > D)
def test_trace_sqrt_nuclear_norm_equals_eigh_path(n1, n2, d, monkeypatch):
    """Tr((S1 S2)^(1/2)) two ways: eigh of the covariances, and ||A1 A2^T||_* / sqrt((N1-1)(N2-1)) (frechet.py)."""
    from annotated_pipeline.evaluation.frechet import trace_sqrt_product, trace_sqrt_product_of_features

    x, y, a1, a2 = _centred_pair(n1, n2, d, seed=11)
    by_eigh = trace_sqrt_product(a1.T @ a1 / (n1 - 1), a2.T @ a2 / (n2 - 1))
    assert trace_sqrt_product_of_features(a1, a2).item() == pytest.approx(by_eigh.item(), rel=1e-9)
    # and the whole distance: from the features (forced) against the covariance path
    from annotated_pipeline.evaluation import frechet

    by_statistics = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    assert not frechet.features_path_is_cheaper(n1, n2, d)  # by default: the eigh path
    monkeypatch.setattr(frechet, "features_path_is_cheaper", lambda *_: True)
    assert frechet_distance_between(x, y) == pytest.approx(by_statistics, rel=1e-9)


def test_fewer_rows_than_dimensions_takes_the_nuclear_norm_path():
    """N < D: the nuclear norm, whose value the eigh path reaches only to its round-off (sqrt of the ~1e-14
    eigenvalues it should find 0: ~1e-8 relative), and FID(X, X) = 0 to round-off."""
    from annotated_pipeline.evaluation.frechet import features_path_is_cheaper

    assert features_path_is_cheaper(50, 70, 128) and features_path_is_cheaper(2047, 2047, 2048)
    assert not features_path_is_cheaper(10_000, 10_000, 128)
    x, y, _, _ = _centred_pair(50, 70, 128, seed=12)
    by_statistics = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    assert frechet_distance_between(x, y) == pytest.approx(by_statistics, rel=1e-6)
    trace = feature_statistics(x)[1].trace().item()
    assert frechet_distance_between(x, x) <= 1e-12 * trace
    assert frechet_distance_between(x.float(), x.float()) <= 1e-12 * trace


def test_feature_statistics_match_numpy():
    features = torch.randn(100, 7, generator=torch.Generator().manual_seed(7))
    mu, sigma = feature_statistics(features)
    np.testing.assert_allclose(mu.numpy(), features.double().numpy().mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(features.double().numpy(), rowvar=False), rtol=1e-10)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        frechet_distance(torch.zeros(3), torch.eye(2), torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="same D"):
        frechet_distance_between(torch.zeros(5, 3), torch.zeros(5, 4))


# ----------------------------------------------------------------------------------------------------
# the shipped classifier on real images


@pytest.fixture(scope="module")
def sample():
    """The embedded 2000-image sample: uint8 images (N, 28, 28) and int64 labels, decoded here independently."""
    table = pq.read_table(SAMPLE)
    images = np.stack([np.asarray(Image.open(io.BytesIO(c["bytes"]))) for c in table.column("image").to_pylist()])
    return images, np.asarray(table.column("label").to_pylist(), dtype=np.int64)


@pytest.fixture(scope="module")
def classifier():
    return load_default_classifier()


def test_reference_loader_reads_the_parquet_sample(sample, tmp_path):
    shutil.copy(SAMPLE, tmp_path / "train.parquet")
    images = load_reference_images(tmp_path, "train")
    assert images.dtype == np.uint8 and images.shape == sample[0].shape
    np.testing.assert_array_equal(images, sample[0])
    np.testing.assert_array_equal(load_split(tmp_path, "train")[1], sample[1])


def test_shipped_classifier_is_accurate_on_the_sample(sample, classifier):
    images, labels = sample
    with torch.no_grad():
        predictions = classifier(uint8_to_classifier_input(images)).argmax(dim=1).numpy()
    assert (predictions == labels).mean() >= 0.85
    info = json.loads((Path(classifier.config._name_or_path) / "training_info.json").read_text())
    assert info["test_accuracy"] >= 0.85  # the test-split number reported by train_classifier.py


def test_training_script_is_seeded_and_reports_what_it_saved(sample, tmp_path):
    """A 1-epoch run on 512 sample images, twice: identical weights; the saved model scores the reported accuracy."""
    root = tmp_path / "data"
    root.mkdir()
    table = pq.read_table(SAMPLE)
    pq.write_table(table.slice(0, 512), root / "train.parquet")
    pq.write_table(table.slice(1000, 300), root / "test.parquet")
    for run in ("a", "b"):
        train_classifier.main(["--output_dir", str(tmp_path / run), "--data_root", str(root), "--epochs", "1", "--batch_size", "64",
                               "--pooling", "flatten"])  # the shipped weights' head
    a = FashionMNISTClassifier.from_pretrained(tmp_path / "a").eval()
    b = FashionMNISTClassifier.from_pretrained(tmp_path / "b").eval()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    info = json.loads((tmp_path / "a" / "training_info.json").read_text())
    with torch.no_grad():
        predictions = a(uint8_to_classifier_input(sample[0][1000:1300])).argmax(dim=1).numpy()
    assert info["test_accuracy"] == pytest.approx((predictions == sample[1][1000:1300]).mean(), abs=1e-4)
    assert info["test_accuracy"] > 0.3 and info["num_train_images"] == 512  # chance is 0.1
    assert "--epochs 1" in info["command"]
    assert f"{info['test_accuracy']:.2%}" in (tmp_path / "a" / "README.md").read_text()


def test_classifier_rejects_wrong_shapes(classifier):
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        classifier(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="kernel_size"):
        FashionMNISTClassifier(kernel_size=4)


def gaussian_blur(x, sigma):
    radius = 3
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def test_distance_grows_with_noise_and_blur(sample, classifier):
    x = uint8_to_classifier_input(sample[0])
    reference, judged = x[:400], x[1000:1400]
    reference_features, _ = embed(classifier, reference)

    def fd(images):
        return frechet_distance_between(embed(classifier, images)[0], reference_features)

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(judged.shape, generator=g)
    noisy = [fd(judged)] + [fd((judged + s * noise).clamp(-1, 1)) for s in (0.1, 0.2, 0.4, 0.8)]
    blurred = [fd(judged)] + [fd(gaussian_blur(judged, s)) for s in (0.5, 1.0, 1.5, 2.5)]
    assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy
    assert all(a < b for a, b in zip(blurred, blurred[1:])), blurred
    assert noisy[-1] > 10 * noisy[0] and blurred[-1] > 10 * blurred[0]


# ----------------------------------------------------------------------------------------------------
# floor and coverage


def test_distance_floor_is_the_distance_between_the_two_sets():
    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g) + 0.5
    assert distance_floor(a, b) == frechet_distance_between(a, b)
    assert distance_floor(a, b) == pytest.approx(16 * 0.25, rel=0.3)  # ||0.5 * 1||^2 plus sampling noise
    # The reference may be larger than the N training images (the whole test split against N = 1000).
    assert distance_floor(a, b[:200]) == frechet_distance_between(a, b[:200])
    with pytest.raises(ValueError, match="same D"):
        distance_floor(a, b[:, :8])


def test_class_coverage_counts():
    coverage = class_coverage(torch.tensor([0, 0, 1, 3, 3, 3, 9, 9]), num_classes=10)
    assert coverage["counts"] == [2, 1, 0, 3, 0, 0, 0, 0, 0, 2]
    assert math.fsum(coverage["shares"]) == pytest.approx(1.0)
    assert coverage["shares"][3] == pytest.approx(3 / 8)
    assert coverage["min_share"] == 0.0 and coverage["min_class"] == 2
    assert coverage["classes_covered"] == 4
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        class_coverage(torch.tensor([0, 10]))


# ----------------------------------------------------------------------------------------------------
# the evaluate command end to end, on a tiny untrained pipeline


def tiny_pipeline():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2"))


@pytest.fixture(scope="module")
def reference_root(sample, tmp_path_factory):
    """test.parquet = 16 sample images, train.parquet = 16 others, each split exactly N = 16 large."""
    return splits_from_sample(tmp_path_factory.mktemp("reference"), test=(0, 16), train=(100, 16))


def splits_from_sample(root, test, train):
    """test.parquet and train.parquet in `root`: the embedded sample's rows (offset, length) `test` and `train`."""
    table = pq.read_table(SAMPLE)
    pq.write_table(table.slice(*test), root / "test.parquet")
    pq.write_table(table.slice(*train), root / "train.parquet")
    return root


def test_dpmsolver_steps_are_uniform_in_log_snr_unless_the_config_says_otherwise():
    """set_scheduler("dpmsolver") spaces the chain uniformly in lambda_t = log(alpha_t / sigma_t) (Lu et al.
    2022): the ratios sigma_k / sigma_(k+1) of DPM-Solver's sigmas = sqrt((1 - alpha_bar) / alpha_bar) are all equal,
    from t = T - 1 to t = 0. A DPM-Solver++ config that names the spacing keeps it."""
    from diffusers import DPMSolverMultistepScheduler

    pipe = tiny_pipeline()
    set_scheduler(pipe, "dpmsolver")
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler) and pipe.scheduler.config.use_lu_lambdas
    pipe.scheduler.set_timesteps(20)
    alphas_cumprod = pipe.scheduler.alphas_cumprod.double()
    sigma = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    log_sigmas = pipe.scheduler.sigmas[:-1].double().log()  # the last sigma is the final 0
    assert len(log_sigmas) == 20
    assert torch.allclose(log_sigmas.diff(), log_sigmas.diff()[0].expand(19), rtol=1e-4)
    assert math.isclose(log_sigmas[0], sigma[-1].log(), rel_tol=1e-4) and math.isclose(log_sigmas[-1], sigma[0].log(), rel_tol=1e-4)

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_lu_lambdas=False)
    set_scheduler(pipe, "dpmsolver")
    assert not pipe.scheduler.config.use_lu_lambdas


def test_class_conditional_pipeline_is_asked_for_balanced_labels(classifier, reference_root, monkeypatch):
    """A U-Net with num_class_embeds gets the labels 0..K-1 in turn, across batches; the report has
    label_accuracy (the share of samples classified as their label), an unconditional one has none."""
    from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=28, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=4, num_class_embeds=10)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=20))
    asked = []
    original_call = type(pipe).__call__

    def recording_call(self, *args, **kwargs):
        asked.extend(kwargs["class_labels"])
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", recording_call)
    report = evaluate(pipe, num_samples=16, scheduler="ddim", num_inference_steps=2, batch_size=6,
                      data_root=reference_root, classifier=classifier)
    assert asked == [k % 10 for k in range(16)]
    assert 0.0 <= report["label_accuracy"] <= 1.0
    assert "label accuracy" in format_report(report)
    unconditional = evaluate(tiny_pipeline(), num_samples=16, scheduler="ddim", num_inference_steps=2, batch_size=16,
                             data_root=reference_root, classifier=classifier)
    assert "label_accuracy" not in unconditional


def test_guidance_scale_reaches_the_pipeline_and_the_report(classifier, reference_root, monkeypatch):
    from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=28, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=4, num_class_embeds=10, null_class_embed=True)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=20))
    scales, intervals = [], []
    original_call = type(pipe).__call__

    def recording_call(self, *args, **kwargs):
        scales.append(kwargs.get("guidance_scale", 1.0))
        intervals.append(kwargs.get("guidance_interval"))
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", recording_call)
    kwargs = dict(num_samples=12, scheduler="ddim", num_inference_steps=2, batch_size=6, data_root=reference_root,
                  classifier=classifier)
    guided = evaluate(pipe, guidance_scale=2.0, **kwargs)
    assert scales == [2.0, 2.0] and guided["guidance_scale"] == 2.0
    assert "guidance 2," in format_report(guided)
    plain = evaluate(pipe, **kwargs)
    assert plain["guidance_scale"] == 1.0 and "guidance" not in format_report(plain).split("\n")[0]
    assert plain["frechet_distance"] != guided["frechet_distance"]
    with pytest.raises(ValueError, match="null_class_embed"):
        evaluate(tiny_pipeline(), guidance_scale=2.0, **kwargs)
    with pytest.raises(ValueError, match=r"guidance_scale must be a number in 0..50 \(1 = no guidance"):
        evaluate(pipe, guidance_scale=-1.0, **kwargs)
    scales.clear(), intervals.clear()
    limited = evaluate(pipe, guidance_scale=2.0, guidance_interval=(5, 15), **kwargs)
    assert intervals == [(5, 15), (5, 15)] and limited["guidance_interval"] == [5, 15]
    assert "guidance 2 at t in 5..15," in format_report(limited)
    assert limited["frechet_distance"] not in (plain["frechet_distance"], guided["frechet_distance"])
    with pytest.raises(ValueError, match="says where to guide, but guidance_scale is 1"):
        evaluate(pipe, guidance_interval=(5, 15), **kwargs)


def test_evaluate_is_deterministic_and_reports_the_floor(sample, classifier, reference_root):
    kwargs = dict(num_samples=16, scheduler="ddim", num_inference_steps=2, batch_size=8, seed=3, data_root=reference_root)
    pipe = tiny_pipeline()
    first = evaluate(pipe, classifier=classifier, **kwargs)
    assert type(pipe.scheduler).__name__ == "DDPMScheduler"  # the caller's pipeline keeps its scheduler
    second = evaluate(tiny_pipeline(), classifier=classifier, **kwargs)
    for key in ("frechet_distance", "frechet_distance_floor", "class_coverage"):
        assert first[key] == second[key], key
    # With N equal to each split's size, the floor is the distance between the two whole splits.
    x = uint8_to_classifier_input(sample[0])
    expected_floor = frechet_distance_between(embed(classifier, x[0:16])[0], embed(classifier, x[100:116])[0])
    assert first["frechet_distance_floor"] == pytest.approx(expected_floor, rel=1e-9)
    assert first["frechet_distance"] > 0 and first["class_coverage"]["counts"] and sum(first["class_coverage"]["counts"]) == 16
    assert "NOT comparable" in first["note"]
    # the seconds name the processor they were measured on
    from annotated_pipeline.utils.hardware import describe_processor
    assert first["processor"] == describe_processor("cpu") and first["processor"].startswith("CPU ")
    assert f"s on {first['processor']}" in next(line for line in format_report(first).splitlines()
                                                 if line.startswith("total time"))
    with pytest.raises(ValueError, match="only 16"):
        evaluate(tiny_pipeline(), classifier=classifier, **{**kwargs, "num_samples": 17})
    with pytest.raises(ValueError, match="unknown scheduler"):
        evaluate(tiny_pipeline(), classifier=classifier, **{**kwargs, "scheduler": "euler"})
    with pytest.raises(ValueError, match="eta is DDIM's parameter"):
        evaluate(tiny_pipeline(), classifier=classifier, **{**kwargs, "scheduler": "dpmsolver", "eta": 1.0})
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
        evaluate(tiny_pipeline(), classifier=classifier, **{**kwargs, "eta": 2.0})
    wrong_size = tiny_pipeline()
    wrong_size.unet.register_to_config(sample_size=32)
    with pytest.raises(ValueError, match="sample_size"):
        evaluate(wrong_size, classifier=classifier, **kwargs)


@pytest.fixture(scope="module")
def whole_split_root(sample, tmp_path_factory):
    """test.parquet = 40 sample images, train.parquet = 16 others: a reference larger than N = 16."""
    return splits_from_sample(tmp_path_factory.mktemp("whole-split"), test=(200, 40), train=(100, 16))


def test_the_reference_is_the_whole_test_split_unless_num_reference_chooses(sample, classifier, whole_split_root):
    """By default N samples and the floor's N training images are both judged against all 40 test images;
    num_reference=M judges them against a seeded choice of M (M = N: the first definition)."""
    kwargs = dict(num_samples=16, scheduler="ddim", num_inference_steps=2, batch_size=8, seed=3,
                  data_root=whole_split_root, classifier=classifier)
    pipe = tiny_pipeline()
    set_scheduler(pipe, "ddim")
    sample_features = embed(classifier, generate_samples(pipe, 16, 2, 8, 3) * 2 - 1)[0]
    x = uint8_to_classifier_input(sample[0])
    whole_test, train = embed(classifier, x[200:240])[0], embed(classifier, x[100:116])[0]

    whole = evaluate(tiny_pipeline(), **kwargs)
    assert whole["num_reference"] == 40 and whole["reference_is_whole_split"] is True
    assert whole["frechet_distance"] == pytest.approx(frechet_distance_between(sample_features, whole_test), rel=1e-9)
    assert whole["frechet_distance_floor"] == pytest.approx(frechet_distance_between(whole_test, train), rel=1e-9)
    assert "40 test images (the whole split)" in format_report(whole)

    chosen = evaluate(tiny_pipeline(), num_reference=16, **kwargs)
    some_test = embed(classifier, uint8_to_classifier_input(choose(sample[0][200:240], 16, 3)))[0]
    assert chosen["num_reference"] == 16 and chosen["reference_is_whole_split"] is False
    assert chosen["frechet_distance"] == pytest.approx(frechet_distance_between(sample_features, some_test), rel=1e-9)
    assert chosen["frechet_distance_floor"] == pytest.approx(frechet_distance_between(some_test, train), rel=1e-9)
    assert chosen["frechet_distance"] != whole["frechet_distance"]
    assert "16 test images (a seeded choice)" in format_report(chosen)

    with pytest.raises(ValueError, match="only 40"):
        evaluate(tiny_pipeline(), num_reference=41, **kwargs)
    for bad in (1, True, 2.5):
        with pytest.raises(ValueError, match="num_reference must be None"):
            evaluate(tiny_pipeline(), num_reference=bad, **kwargs)


def test_ddim_eta_makes_the_sampler_stochastic(classifier, reference_root):
    """eta = 1 draws fresh noise at every step: other samples than eta = 0 from the same x_T, same seed."""
    kwargs = dict(num_samples=16, scheduler="ddim", num_inference_steps=3, batch_size=8, seed=3, data_root=reference_root)
    deterministic = evaluate(annotated_tiny_pipeline(), classifier=classifier, **kwargs)
    stochastic = evaluate(annotated_tiny_pipeline(), classifier=classifier, eta=1.0, **kwargs)
    assert stochastic["eta"] == 1.0 and deterministic["eta"] == 0.0
    assert stochastic["frechet_distance"] != deterministic["frechet_distance"]
    again = evaluate(annotated_tiny_pipeline(), classifier=classifier, eta=1.0, **kwargs)
    assert again["frechet_distance"] == stochastic["frechet_distance"]  # seeded: deterministic given the seed


def annotated_tiny_pipeline():
    from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(
        sample_size=28, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2, attention_head_dim=4
    )
    return AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=100, beta_schedule="cosine"))


def test_evaluate_command_left_to_itself_samples_as_the_folder_recommends_and_says_so(tmp_path, reference_root, capsys):
    """Settings left out are the folder's (its scheduler component, its default steps), as in `sample`; the report
    records what was used, so that numbers stay comparable."""
    from diffusers import DDIMScheduler

    pipe = annotated_tiny_pipeline()
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_sampling_defaults(num_inference_steps=3)
    pipe.save_pretrained(tmp_path / "pipeline")
    main([str(tmp_path / "pipeline"), "--num_samples", "8", "--batch_size", "8", "--data_root", str(reference_root),
          "--json", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scheduler"] == "default (DDIMScheduler)" and report["num_inference_steps"] == 3
    assert report["guidance_scale"] == 1.0 and report.get("guidance_interval") is None
    assert "(default (DDIMScheduler), 3 steps, seed 0" in capsys.readouterr().out
    main([str(tmp_path / "pipeline"), "--num_samples", "8", "--batch_size", "8", "--data_root", str(reference_root),
          "--scheduler", "dpmsolver", "--num_inference_steps", "2", "--json", str(tmp_path / "e.json")])
    explicit = json.loads((tmp_path / "e.json").read_text())
    assert (explicit["scheduler"], explicit["num_inference_steps"]) == ("dpmsolver", 2)  # explicit options win


def test_evaluate_command_runs_end_to_end(tmp_path, reference_root, capsys):
    """The command on a saved AnnotatedDDPMPipeline: once as a subprocess, once through main(); same numbers."""
    pipeline_dir = tmp_path / "pipeline"
    annotated_tiny_pipeline().save_pretrained(pipeline_dir)
    args = [str(pipeline_dir), "--num_samples", "16", "--scheduler", "dpmsolver", "--num_inference_steps", "2",
            "--batch_size", "8", "--data_root", str(reference_root)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "annotated_pipeline.evaluation.evaluate", *args, "--json", str(tmp_path / "a.json")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    main([*args, "--json", str(tmp_path / "b.json")])
    printed = capsys.readouterr().out
    for stdout in (result.stdout, printed):
        assert "Frechet distance" in stdout and "NOT an Inception FID" in stdout and "T-shirt/top" in stdout
    reports = [json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json")]
    assert reports[0]["frechet_distance"] == reports[1]["frechet_distance"] > 0
    assert reports[0]["frechet_distance_floor"] == reports[1]["frechet_distance_floor"]
    assert reports[0]["class_coverage"] == reports[1]["class_coverage"]
    assert reports[0]["num_samples"] == 16 and reports[0]["scheduler"] == "dpmsolver"
    assert reports[0]["num_reference"] == 16 and reports[0]["reference_is_whole_split"] is True
    main([*args, "--num_reference", "8", "--json", str(tmp_path / "c.json")])
    chosen = json.loads((tmp_path / "c.json").read_text())
    assert chosen["num_reference"] == 8 and chosen["reference_is_whole_split"] is False
    assert chosen["frechet_distance"] != reports[0]["frechet_distance"]


def test_a_broken_pipeline_stops_at_its_first_batch(classifier, reference_root):
    """NaN weights: evaluate stops at batch 1 with one message, before sampling the rest."""
    from annotated_pipeline.pipelines.pipeline import NonFiniteSampleError

    for pipe in (tiny_pipeline(), annotated_tiny_pipeline()):  # diffusers' DDPMPipeline, and ours
        with torch.no_grad():
            next(pipe.unet.parameters()).fill_(float("nan"))
        calls = []
        original = type(pipe).__call__
        type(pipe).__call__ = lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
        try:
            with pytest.raises(NonFiniteSampleError, match="NaN or inf"):
                evaluate(pipe, num_samples=12, scheduler="ddim", num_inference_steps=2, batch_size=4,
                         data_root=reference_root, classifier=classifier)
        finally:
            type(pipe).__call__ = original
        assert calls == [1]


def test_the_shipped_classifier_is_checked_against_its_recorded_hash(tmp_path):
    import shutil

    from annotated_pipeline.evaluation.classifier import DEFAULT_WEIGHTS_DIR, WEIGHTS_FILE, load_default_classifier

    tampered = tmp_path / "weights"
    shutil.copytree(DEFAULT_WEIGHTS_DIR, tampered)
    load_default_classifier(weights_dir=tampered)  # an exact copy loads
    data = bytearray((tampered / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (tampered / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="do not match the recorded SHA-256"):
        load_default_classifier(weights_dir=tampered)


def test_pipeline_kwargs_reach_every_call_and_the_report(classifier, reference_root, monkeypatch):
    """pipeline_kwargs are passed to every pipeline call: DDIM's use_clipped_model_output changes what a clipping
    scheduler samples (True is our pipeline's own default there, so it scores as no argument does); the report
    records them; the call arguments evaluate sets itself are refused by name."""
    pipe = annotated_tiny_pipeline()
    seen = []
    original_call = type(pipe).__call__

    def recording_call(self, *args, **kwargs):
        seen.append(kwargs.get("use_clipped_model_output", "absent"))
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", recording_call)
    kwargs = dict(num_samples=12, scheduler="ddim", num_inference_steps=3, batch_size=6, data_root=reference_root,
                  classifier=classifier)
    model_eps = evaluate(pipe, pipeline_kwargs={"use_clipped_model_output": False}, **kwargs)
    assert seen == [False, False] and model_eps["pipeline_kwargs"] == {"use_clipped_model_output": False}
    clipped_eps = evaluate(pipe, pipeline_kwargs={"use_clipped_model_output": True}, **kwargs)
    default = evaluate(pipe, **kwargs)
    assert seen[2:] == [True, True, "absent", "absent"] and "pipeline_kwargs" not in default
    assert clipped_eps["frechet_distance"] == default["frechet_distance"] != model_eps["frechet_distance"]
    with pytest.raises(ValueError, match="pipeline_kwargs may not set eta, num_inference_steps: evaluate passes"):
        evaluate(pipe, pipeline_kwargs={"num_inference_steps": 5, "eta": 1.0}, **kwargs)
