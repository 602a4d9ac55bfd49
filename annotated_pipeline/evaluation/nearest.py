"""Nearest training images: does the model draw new images, or copies of the ones it was trained on?

    annotated-pipeline nearest PIPELINE --train_data DATA [--classifier FOLDER] --output nearest.png

A small data set is easy to memorise, and a low Frechet distance does not tell a copy from a new
image. So: for samples s_1..s_n and training images x_1..x_M, in a space with a distance d (pixels:
||a - b||_2 of the images in [-1, 1]; features: ||phi(a) - phi(b)||_2 with the classifier's phi),

    d_NN(s_i)  = min_j d(s_i, x_j)              how far a sample lies from its nearest training image
    d_LOO(x_j) = min_{k != j} d(x_j, x_k)       how far a training image lies from its nearest other one
    tau        = the q-quantile of d_LOO(x_1..x_M)                                    (q = 0.05)

    memorised share = (1/n) #{ i : d_NN(s_i) <= tau }

the share of samples that lie closer to a training image than all but a fraction q of the training
images lie to each other. A model that draws new images from the data distribution places a sample
about as far from the training set as a held-out image, i.e. as a training image lies from the
others, so about q of its samples count; a model that returns training images scores 1 (d_NN = 0);
images unlike the data (noise) lie far from everything and score about 0. The report gives the share
in both spaces, tau, and the medians of d_NN and d_LOO.

The figure: for `num_show` samples a row with the sample, its k nearest training images in pixels
and its k nearest in features (with a classifier). The training set is the train split of DATA
(at most `max_train_images` of them, a seeded choice: d_NN and d_LOO are computed on that same set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from annotated_pipeline.utils.errors import run_reporting
from annotated_pipeline.utils.outputs import IMAGE, JSON, output_file


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """||a_i - b_j||_2 for (n, D) and (m, D) in float64: sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0)), in row chunks."""
    a, b = a.flatten(1).to(torch.float64), b.flatten(1).to(torch.float64)
    b_sq = (b * b).sum(dim=1)
    rows = []
    for start in range(0, len(a), chunk):
        part = a[start:start + chunk]
        squared = (part * part).sum(dim=1, keepdim=True) + b_sq - 2.0 * part @ b.T
        rows.append(squared.clamp_min(0).sqrt())
    return torch.cat(rows)


def leave_one_out_distances(train: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """d_LOO(x_j) = min_{k != j} ||x_j - x_k||_2 for every row, a chunk of rows at a time (M x M never in memory)."""
    d_loo = []
    from tqdm.auto import tqdm

    # A bar at a terminal (disable=None: not in logs): 10,000 training images take a while.
    for start in tqdm(range(0, len(train), chunk), desc="Nearest neighbours", unit="chunk", disable=None, leave=False):
        block = pairwise_distances(train[start:start + chunk], train)
        rows = torch.arange(len(block))
        block[rows, rows + start] = float("inf")  # a training image is not its own neighbour
        d_loo.append(block.min(dim=1).values)
    return torch.cat(d_loo)


def memorisation(samples: torch.Tensor, train: torch.Tensor, quantile: float = 0.05, k: int = 3) -> dict:
    """The memorised share (module docstring) of `samples` (n, ...) against `train` (M >= 2, ...), and the
    indices of each sample's k nearest training vectors."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    if len(train) < 2 or len(samples) < 1:
        raise ValueError(f"need >= 2 training vectors and >= 1 sample, got {len(train)} and {len(samples)}")
    to_train = pairwise_distances(samples, train)
    d_nn, nearest = to_train.topk(min(k, len(train)), dim=1, largest=False)
    d_loo = leave_one_out_distances(train)
    tau = float(torch.quantile(d_loo, quantile))
    return {
        "memorised_share": float((d_nn[:, 0] <= tau).double().mean()),
        "threshold": tau,
        "quantile": quantile,
        "median_sample_nn_distance": float(d_nn[:, 0].median()),
        "median_train_loo_distance": float(d_loo.median()),
        "nearest_indices": nearest.tolist(),
    }


def nearest_check(samples: torch.Tensor, train_images: torch.Tensor, classifier=None, quantile: float = 0.05,
                  k: int = 3) -> dict:
    """`memorisation` in pixels and (with a classifier) in its features. samples, train_images: (N, C, S, S) in [-1, 1]."""
    if tuple(samples.shape[1:]) != tuple(train_images.shape[1:]):
        raise ValueError(f"samples are {tuple(samples.shape[1:])} images, the training images "
                         f"{tuple(train_images.shape[1:])}")
    report = {"num_samples": len(samples), "num_train_images": len(train_images),
              "pixels": memorisation(samples, train_images, quantile, k)}
    if classifier is not None:
        from annotated_pipeline.evaluation.measures import embed

        report["features"] = memorisation(embed(classifier, samples)[0], embed(classifier, train_images)[0], quantile, k)
    return report


def nearest_figure(samples: torch.Tensor, train_images: torch.Tensor, report: dict, num_show: int = 8, scale: int = 2):
    """A PIL image: one row per sample: the sample, its k nearest training images in pixels, then in features."""
    from diffusers.utils import make_image_grid, numpy_to_pil
    from PIL import Image

    rows = []
    for i in range(min(num_show, len(samples))):
        row = [samples[i]] + [train_images[j] for j in report["pixels"]["nearest_indices"][i]]
        if "features" in report:
            row += [train_images[j] for j in report["features"]["nearest_indices"][i]]
        rows.append(torch.stack(row))
    tiles = torch.cat(rows).add(1).div(2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    images = [image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
              for image in numpy_to_pil(tiles)]
    return make_image_grid(images, rows=len(rows), cols=len(images) // len(rows)).convert(images[0].mode)


def format_report(report: dict) -> str:
    lines = [f"samples              {report['num_samples']} against {report['num_train_images']} training images"]
    for space in ("pixels", "features"):
        if space in report:
            r = report[space]
            lines.append(f"memorised ({space:<8}) {r['memorised_share']:.3f}   (samples with d_NN <= tau = {r['threshold']:.4f}, "
                         f"the {r['quantile']:g}-quantile of the train-to-train d_LOO; median d_NN "
                         f"{r['median_sample_nn_distance']:.4f}, median d_LOO {r['median_train_loo_distance']:.4f})")
    lines.append("a model that draws new images scores about the quantile; one that copies its training images, 1")
    return "\n".join(lines)


def main(argv=None, prog="python -m annotated_pipeline.evaluation.nearest") -> int:
    from annotated_pipeline.pipelines.samplers import add_sampling_options, check_sampling_options

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="a saved pipeline folder, a Hub repo id, or a training checkpoint folder")
    parser.add_argument("--train_data", required=True, help="the training data (image folder, parquet folder, Hub id)")
    parser.add_argument("--classifier", default=None, help="a classifier folder: also compare in its features")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--num_samples", type=int, default=64)
    parser.add_argument("--num_show", type=int, default=8, help="rows of the figure")
    parser.add_argument("--k", type=int, default=3, help="nearest training images shown per space")
    parser.add_argument("--quantile", type=float, default=0.05, help="q: tau is this quantile of d_LOO")
    parser.add_argument("--max_train_images", type=int, default=10000, help="a seeded choice of at most this many")
    add_sampling_options(parser, class_labels=False)  # left out: the folder's recommendation, printed
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--output", type=output_file(IMAGE), default="nearest.png", help="the figure (PNG)")
    parser.add_argument("--json", type=output_file(JSON), default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    check_sampling_options(parser, args)
    for name in ("num_samples", "num_show", "k", "max_train_images", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0.0 < args.quantile < 1.0:
        parser.error(f"--quantile must lie in (0, 1), got {args.quantile}")
    return run_reporting(prog, lambda: _run(args))


def _run(args):
    from annotated_pipeline.checkpoints import load_pipeline
    from annotated_pipeline.pipelines.samplers import describe_sampling, resolve_sampling_options, using_sampler

    pipeline = load_pipeline(args.pipeline)
    resolve_sampling_options(pipeline, args)  # what was left out: the folder's sampler, steps and guidance
    with using_sampler(pipeline, args.scheduler):
        print(f"samples              {args.num_samples} ({describe_sampling(pipeline, args)}, seed {args.seed})")
    report, samples, train_images = run_check(pipeline, args.train_data, args.classifier, args.num_samples,
                                              args.quantile, args.k, args.max_train_images, args.scheduler,
                                              args.num_inference_steps, args.batch_size, args.seed, args.image_column,
                                              args.guidance_scale, args.guidance_interval)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    nearest_figure(samples, train_images, report, args.num_show).save(args.output)
    print(format_report(report))
    print(f"figure               {args.output} (each row: a sample, its {args.k} nearest training images in pixels"
          f"{', then in features' if 'features' in report else ''})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def run_check(pipeline, train_data, classifier=None, num_samples=64, quantile=0.05, k=3, max_train_images=10000,
              scheduler="dpmsolver", num_inference_steps=20, batch_size=64, seed=0, image_column="image",
              guidance_scale=1.0, guidance_interval=None):
    """Sample `pipeline` (a pipeline or its folder) and check its samples against DATA's train split
    (classifier-free guidance `guidance_scale` at `guidance_interval` where the pipeline has a "no class").
    Returns (report, samples, training images); the data is loaded and checked before any sampling."""
    from annotated_pipeline.datasets import labelled
    from annotated_pipeline.evaluation.classifier import load_classifier
    from annotated_pipeline.checkpoints import load_pipeline
    from annotated_pipeline.evaluation.evaluate import check_pipeline_shape
    from annotated_pipeline.evaluation.samples import conditioning_labels, generate_samples
    from annotated_pipeline.pipelines.samplers import using_sampler

    pipeline = load_pipeline(pipeline)
    unet_config = pipeline.unet.config
    size = unet_config.sample_size if isinstance(unet_config.sample_size, int) else unet_config.sample_size[0]
    classifier = load_classifier(classifier) if isinstance(classifier, (str, os.PathLike)) else classifier
    if classifier is not None:
        check_pipeline_shape(pipeline, classifier)
    train_set = labelled.open_split(train_data, "train")
    if train_set is None:
        raise ValueError(f"{train_data} has no train split")
    found_c, found_size = labelled.image_shape_of(train_set, image_column)
    if (found_c, found_size) != (unet_config.in_channels, size):
        raise ValueError(f"the training data holds {found_c}-channel {found_size}x{found_size} images; the pipeline "
                         f"makes {unet_config.in_channels}-channel {size}x{size} images")
    if len(train_set) > max_train_images:
        chosen = np.sort(np.random.default_rng(seed).choice(len(train_set), size=max_train_images, replace=False))
        train_set = train_set.select(chosen.tolist())
    train_images, _ = labelled.to_tensors(train_set, size, found_c, image_column)
    with using_sampler(pipeline, scheduler):
        samples = generate_samples(pipeline, num_samples, num_inference_steps, batch_size, seed,
                                   class_labels=conditioning_labels(pipeline, num_samples), guidance_scale=guidance_scale,
                                   guidance_interval=None if guidance_interval is None else tuple(guidance_interval)
                                   ) * 2.0 - 1.0
    return nearest_check(samples, train_images, classifier, quantile, k), samples, train_images


if __name__ == "__main__":
    sys.exit(main())
