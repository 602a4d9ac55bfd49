"""Evaluate a diffusion pipeline offline: a Frechet distance, the KID, their floors, class coverage.

    python -m annotated_pipeline.evaluation.evaluate PATH_OR_REPO --num_samples 1000 \\
        --scheduler ddim --num_inference_steps 50 [--json out.json]
    annotated-pipeline evaluate PATH_OR_REPO --classifier FOLDER --reference DATA     # any labelled image set

What is measured. Draw N samples x_1..x_N from the pipeline. Embed them, and the official test
split's 10,000 images y_1..y_M, with phi, the 128-d penultimate layer of our Fashion-MNIST classifier
(classifier.py); fit a Gaussian to each set and report their Frechet distance (frechet.py):

    FD = ||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2))

The estimate is biased upwards for finite sets: two independent sets of *real* images do not score
0, and the bias grows as each set shrinks. So we also report the floor: the same distance between N
images of the training split (a seeded choice) and the same reference. A perfect generator scores
about the floor; only FD minus the floor is the model's fault, and only distances computed with the
same N, reference, classifier and seed can be compared.

The reference is the whole test split, as an FID takes the statistics of its whole reference set:
with M = 10,000 the reference adds a tenth of the bias and the noise that N = 1000 samples add.
`num_reference=M` compares against a seeded choice of M test images instead; M = N is this module's
first definition (N test images against N samples), which every distance in benchmarks/RESULTS.md
measured before the section "The whole test split as the reference" used. At N = 1000 that choice
moved the floor between 7.5 and 14.5 with the seed (3.9-8.4 against the whole split).

The KID (kid.py, Binkowski et al. 2018) is the unbiased squared MMD between the same two feature
sets under the kernel k(x, y) = (x . y / D + 1)^3, averaged over seeded subsets: its expectation is 0
for real data at any N, so it is the number to trust at small N. It gets the same floor (N training
images against the reference).

Any data set. `classifier` (`--classifier FOLDER`, from `annotated-pipeline train-classifier`) and
`reference` (`--reference DATA`: an image folder, parquet folder or Hub data set, see labelled.py)
replace the shipped Fashion-MNIST classifier and the test split: the reference is DATA's test split
and the floor's N images come from its train split; a DATA without a test split is cut into two
seeded halves (reference, floor pool) and the report says so. Pipeline, classifier and reference
must agree on channels and image size: a mismatch is one error, before any sampling.

Class coverage: the classifier labels every sample; the share of samples per predicted class shows
mode dropping (Fashion-MNIST is balanced, so each share should be near 1/10), and the smallest share
summarises it.

Class-conditional pipelines (a U-Net with `num_class_embeds` = K) are asked for the labels 0, 1, ...,
K - 1, 0, 1, ... in turn, so the N samples are as balanced as the test split; the report then adds
`label_accuracy`, the share of samples the classifier assigns to the label they were drawn for.
Their class coverage is then set by the labels as much as by the model, so the smallest share says
less than for an unconditional pipeline. `guidance_scale` samples them with classifier-free guidance
(those with a "no class" embedding).

This is NOT an FID: the embedding is our classifier, not Inception-v3, so the numbers are on a
different scale and are NOT comparable to published (Inception) FIDs on Fashion-MNIST or elsewhere.
`--features inception` measures the same samples, reference and floor in Inception-v3 features instead:
the Inception FID and KID (inception_measure.py; the [inception] extra; the reference's features cached).

Everything is seeded: the sampling generator (`seed`) and the choice of training images for the
floor (`seed + 1`; and of test images with `num_reference`, `seed`) make two runs with the same
arguments print the same numbers.

Reference data: `data_root` is a folder with the four official IDX files (verified by their
SHA-256, see annotated_pipeline.datasets.fashion_mnist), or a folder holding `test.parquet` and
`train.parquet` as written by `python -m annotated_pipeline.datasets.fashion_mnist --to-parquet`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from annotated_pipeline.evaluation.classifier import ImageClassifier, load_classifier, load_default_classifier
from annotated_pipeline.evaluation.inception_measure import FEATURES, INCEPTION_NOTE, inception_for
from annotated_pipeline.evaluation.measures import embed, measure
from annotated_pipeline.utils.errors import run_reporting
from annotated_pipeline.utils.hardware import (PRECISION_HELP, PRECISIONS, describe_processor, precision_of,
                                              resolve_precision, weights_in)
from annotated_pipeline.utils.outputs import JSON, output_file
from annotated_pipeline.pipelines.pipeline_inputs import check_guidance_scale
from annotated_pipeline.pipelines.pipeline import check_guidance_interval
from annotated_pipeline.pipelines.samplers import (SCHEDULERS, add_sampling_options, check_sampling_options,
                                                   resolve_sampling_options, using_sampler)
from annotated_pipeline.evaluation.reference import DEFAULT_ROOT, reference_images
from annotated_pipeline.evaluation.samples import RESERVED_CALL_ARGUMENTS, conditioning_labels, generate_samples
from annotated_pipeline.checkpoints import load_pipeline

NOT_FID_NOTE = (
    "Frechet distance in the feature space of our Fashion-MNIST classifier (128-d penultimate layer); "
    "NOT an Inception FID and NOT comparable to published FIDs."
)
CUSTOM_NOTE = ("Frechet distance and KID in the feature space of the classifier {} ({}-d penultimate layer); "
               "NOT Inception FID/KID and NOT comparable to published numbers.")


def evaluate(
    pipeline_or_path,
    num_samples: int = 1000,
    scheduler: str = "ddim",
    num_inference_steps: int = 50,
    batch_size: int = 250,
    seed: int = 0,
    data_root: str | os.PathLike = DEFAULT_ROOT,
    classifier: ImageClassifier | None = None,
    eta: float = 0.0,
    guidance_scale: float = 1.0,
    num_reference: int | None = None,
    guidance_interval: tuple[int, int] | None = None,
    reference: str | os.PathLike | None = None,
    image_column: str = "image",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pipeline_kwargs: dict | None = None,
    features: str = "classifier",
    precision: str | None = None,
) -> dict:
    """Sample `num_samples` images and return the report (see the module docstring) as a dict.

    num_reference: None (default) judges the samples against the whole test split; M >= 2 against a
    seeded choice of M test images (M = num_samples is the module's first definition).

    eta: DDIM's stochasticity (scheduler "ddim" only; 0 = deterministic, 1 = as much noise as DDPM).
    guidance_scale: classifier-free guidance of a class-conditional pipeline with a "no class"
    embedding (1 = none; see `AnnotatedDDPMPipeline.__call__`); guidance_interval (t_low, t_high): guide
    only those timesteps (our pipeline's argument).

    classifier: an `ImageClassifier` or the folder of a saved one (default: the shipped Fashion-MNIST
    one); reference: DATA for any labelled image set instead of `data_root` (see the module docstring).
    kid_subsets, kid_subset_size: the KID's subsets (seeded with `seed`).
    pipeline_kwargs: more keyword arguments for every pipeline call, e.g. {"use_clipped_model_output":
    False}; not those evaluate sets itself (RESERVED_CALL_ARGUMENTS).
    features: "classifier" (default) or "inception": the FD/KID and floors in Inception features, i.e. the
    Inception FID and KID (inception_measure.py; the classifier still gives class coverage).
    precision: the U-Net's weights while sampling, "bf16", "fp32" or "auto" (bf16 where the processor runs it
    natively, hardware.py); None (default): as they are. The report says which; the numbers depend on it."""
    _check_arguments(scheduler, num_samples, num_inference_steps, batch_size, eta, guidance_scale, guidance_interval,
                     num_reference, pipeline_kwargs)
    t_start = time.perf_counter()
    inception = inception_for(features)  # a missing [inception] extra fails here, before sampling
    classifier_path = os.fspath(classifier) if isinstance(classifier, (str, os.PathLike)) else None
    classifier = (load_default_classifier() if classifier is None
                  else load_classifier(classifier) if classifier_path is not None else classifier)
    pipeline = load_pipeline(pipeline_or_path)
    check_pipeline_shape(pipeline, classifier)
    # Fail before sampling, not after: the splits must have enough images of the classifier's shape.
    test_images, train_images, reference_split = reference_images(classifier, num_samples, seed, data_root, reference,
                                                                  num_reference, image_column)

    unet_config = getattr(getattr(pipeline, "unet", None), "config", None)
    if guidance_scale != 1.0 and not (unet_config is not None and unet_config.get("null_class_embed", False)):
        raise ValueError(f"guidance_scale={guidance_scale} needs a class-conditional pipeline with a 'no class' "
                         "embedding (null_class_embed=True); this one has none: use guidance_scale=1")
    unet = getattr(pipeline, "unet", None)
    if precision is not None and unet is not None:
        precision = resolve_precision(precision, getattr(pipeline, "device", "cpu"))
    # a pipeline passed in leaves with the scheduler and weights it came with
    with using_sampler(pipeline, scheduler), weights_in(unet, precision) if unet is not None else contextlib.nullcontext():
        precision = precision_of(unet)
        report = _sample_and_measure(pipeline, classifier, test_images, train_images, num_samples,
                                     num_inference_steps, batch_size, seed, eta, guidance_scale, guidance_interval,
                                     kid_subsets, kid_subset_size, pipeline_kwargs, inception)
        scheduler_used = type(pipeline.scheduler).__name__
    settings = dict(num_samples=num_samples, num_reference=num_reference, scheduler=scheduler, scheduler_used=scheduler_used,
                    num_inference_steps=num_inference_steps, eta=eta, guidance_scale=guidance_scale,
                    guidance_interval=guidance_interval, pipeline_kwargs=pipeline_kwargs, seed=seed, precision=precision,
                    data_root=data_root, reference=reference, features=features, classifier_path=classifier_path,
                    processor=describe_processor(getattr(pipeline, "device", "cpu")))
    return _report(report, classifier, test_images, reference_split, inception, t_start, **settings)


def _check_arguments(scheduler, num_samples, num_inference_steps, batch_size, eta, guidance_scale, guidance_interval,
                     num_reference, pipeline_kwargs):
    """ValueError for any argument of `evaluate` that cannot work, before anything is loaded."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {SCHEDULERS}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 to estimate a covariance, got {num_samples}")
    if num_inference_steps < 1 or batch_size < 1:
        raise ValueError(f"num_inference_steps and batch_size must be >= 1, got {num_inference_steps}, {batch_size}")
    if eta != 0.0 and scheduler != "ddim":
        raise ValueError(f"eta is DDIM's parameter: use it with scheduler='ddim', not {scheduler!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0 deterministic DDIM, 1 DDPM-like noise), got {eta}")
    check_guidance_scale(guidance_scale)
    if guidance_interval is not None:
        check_guidance_interval(guidance_interval, guidance_scale=guidance_scale)
    if num_reference is not None and (not isinstance(num_reference, int) or isinstance(num_reference, bool) or num_reference < 2):
        raise ValueError(f"num_reference must be None (the whole test split) or an int >= 2, got {num_reference!r}")
    taken = sorted(set(pipeline_kwargs or {}) & set(RESERVED_CALL_ARGUMENTS))
    if taken:
        raise ValueError(f"pipeline_kwargs may not set {', '.join(taken)}: evaluate passes those itself "
                         f"(reserved: {', '.join(RESERVED_CALL_ARGUMENTS)}); use its own arguments")


def _report(report, classifier, test_images, reference_split, inception, t_start, *, num_samples, num_reference,
            scheduler, scheduler_used, num_inference_steps, eta, guidance_scale, guidance_interval, pipeline_kwargs,
            seed, precision, data_root, reference, features, classifier_path, processor):
    """The report `evaluate` returns: the measurements, and every setting they depend on."""
    return {
        "frechet_distance": report["frechet_distance"],
        "frechet_distance_floor": report["frechet_distance_floor"],
        **{key: report[key] for key in ("kid", "kid_std", "kid_floor", "kid_floor_std", "kid_subset_size",
                                         "kid_num_subsets")},
        "class_coverage": report["class_coverage"],
        "class_names": list(classifier.class_names),
        "num_samples": num_samples,
        "num_reference": len(test_images),
        "reference_is_whole_split": num_reference is None,
        "reference_split": reference_split,
        "scheduler": scheduler if scheduler != "default" else f"default ({scheduler_used})",
        "num_inference_steps": num_inference_steps,
        "eta": eta,
        "guidance_scale": guidance_scale,
        **({"guidance_interval": list(guidance_interval)} if guidance_interval is not None else {}),
        **({"pipeline_kwargs": dict(pipeline_kwargs)} if pipeline_kwargs else {}),
        "seed": seed,
        "precision": precision,
        "sampling_seconds": round(report["sampling_seconds"], 2),
        "seconds_per_sample": round(report["sampling_seconds"] / num_samples, 4),
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "processor": processor,  # what the seconds were measured on
        "reference": os.fspath(data_root if reference is None else reference),
        **({"label_accuracy": report["label_accuracy"]} if "label_accuracy" in report else {}),
        "features": features,
        "note": INCEPTION_NOTE if inception is not None else NOT_FID_NOTE if classifier_path is None and reference is None
        else CUSTOM_NOTE.format(classifier_path or "given", classifier.config.feature_dim),
    }


def check_pipeline_shape(pipeline, classifier) -> None:
    """ValueError unless the pipeline's U-Net makes the (C, S, S) images the classifier reads."""
    expected = classifier.input_shape
    unet_config = getattr(getattr(pipeline, "unet", None), "config", None)
    if unet_config is not None and "sample_size" in unet_config and "in_channels" in unet_config:
        unet_size = unet_config.sample_size
        unet_hw = (unet_size, unet_size) if isinstance(unet_size, int) else tuple(unet_size)
        if (unet_config.in_channels, *unet_hw) != expected:
            raise ValueError(
                f"the classifier reads {expected} images (channels, height, width); the pipeline's unet makes "
                f"{(unet_config.in_channels, *unet_hw)} (in_channels, sample_size)"
            )


def _sample_and_measure(pipeline, classifier, test_images, train_images, num_samples, num_inference_steps, batch_size,
                        seed, eta=0.0, guidance_scale=1.0, guidance_interval=None, kid_subsets=100,
                        kid_subset_size=1000, pipeline_kwargs=None, inception=None) -> dict:
    """Check the image shape, sample, embed: the distance and KID, their floors, class coverage and the sampling
    time. test_images, train_images: (N, C, S, S) in [-1, 1]."""
    expected = classifier.input_shape
    check_pipeline_shape(pipeline, classifier)
    t_sampling = time.perf_counter()
    labels = conditioning_labels(pipeline, num_samples)
    samples = generate_samples(pipeline, num_samples, num_inference_steps, batch_size, seed, eta, labels, guidance_scale,
                               guidance_interval, pipeline_kwargs)
    sampling_seconds = time.perf_counter() - t_sampling
    if tuple(samples.shape[1:]) != expected:
        raise ValueError(f"the classifier reads {expected} images; the pipeline produced {tuple(samples.shape[1:])}")

    sample_features, sample_predictions = embed(classifier, samples * 2.0 - 1.0)  # [0, 1] -> [-1, 1]
    test_features, _ = embed(classifier, test_images)
    train_features, _ = embed(classifier, train_images)
    report = measure(classifier, sample_features, sample_predictions, test_features, train_features, seed,
                     kid_subsets, kid_subset_size)
    if inception is not None:  # the distances in Inception features (inception_measure.py), the reference's cached
        from annotated_pipeline.evaluation.inception_measure import inception_floor, inception_numbers, inception_reference

        reference, floor = inception_reference(inception, test_images, train_images)
        floor = inception_floor(reference, floor, seed, kid_subsets, kid_subset_size)
        report.update(inception_numbers(inception, samples, reference, floor, seed, kid_subsets, kid_subset_size))
    report["sampling_seconds"] = sampling_seconds
    if labels is not None:
        report["label_accuracy"] = (sample_predictions == labels).float().mean().item()
    return report


# ----------------------------------------------------------------------------------------------------
# command line


def format_report(report: dict, class_names=None) -> str:
    """The report as a plain-text table."""
    class_names = class_names or report.get("class_names")
    if class_names is None:
        from annotated_pipeline.datasets.fashion_mnist import FASHION_MNIST_CLASSES as class_names
    coverage = report["class_coverage"]
    lines = [
        f"samples              {report['num_samples']} ({report['scheduler']}, {report['num_inference_steps']} steps"
        f"{', eta ' + format(report['eta'], 'g') if report.get('eta') else ''}"
        f"{', guidance ' + format(report['guidance_scale'], 'g') if report.get('guidance_scale', 1.0) != 1.0 else ''}"
        f"{' at t in {}..{}'.format(*report['guidance_interval']) if report.get('guidance_interval') else ''}"
        f", seed {report['seed']}{', ' + report['precision'] if 'precision' in report else ''})",
        f"{'Inception FID' if report.get('features') == 'inception' else 'Frechet distance':<21}"
        f"{report['frechet_distance']:.4f}",
        *([f"KID                  {report['kid']:.5f} +- {report['kid_std']:.5f}   (mean and std over "
           f"{report['kid_num_subsets']} subsets of {report['kid_subset_size']})"] if "kid" in report else []),
        *([f"reference            {report['num_reference']} {report.get('reference_split', 'test images')}"
           f"{' (the whole split)' if report.get('reference_is_whole_split') else ' (a seeded choice)'}"]
          if "num_reference" in report else []),
        f"floor                {report['frechet_distance_floor']:.4f}   ({report['num_samples']} training images vs the same reference: what real data scores)",
        *([f"KID floor            {report['kid_floor']:.5f} +- {report['kid_floor_std']:.5f}"] if "kid_floor" in report else []),
        f"sampling time        {report['sampling_seconds']:.2f} s ({report['seconds_per_sample']:.4f} s/sample)",
        f"total time           {report['total_seconds']:.2f} s"
        f"{' on ' + report['processor'] if report.get('processor') else ''}",
        f"class coverage       (share of samples per predicted class; balanced data gives {1 / len(coverage['shares']):.3f} each)",
    ]
    for k, (name, share) in enumerate(zip(class_names, coverage["shares"])):
        lines.append(f"  {k} {name:<13} {share:6.3f}  {'#' * round(share * 50)}")
    lines.append(
        f"min share            {coverage['min_share']:.3f} ({class_names[coverage['min_class']]}); "
        f"{coverage['classes_covered']}/{len(coverage['shares'])} classes present"
    )
    if "label_accuracy" in report:
        lines.append(f"label accuracy       {report['label_accuracy']:.3f} (samples classified as the label they were drawn for)")
    lines.append(f"note: {report['note']}")
    return "\n".join(lines)


def main(argv=None, prog="python -m annotated_pipeline.evaluation.evaluate") -> None:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Offline sample quality of a diffusion pipeline: Frechet distance and KID in a small classifier's "
                    "features (NOT Inception FID/KID); the shipped Fashion-MNIST classifier unless --classifier.",
    )
    parser.add_argument("pipeline", help="saved AnnotatedDDPMPipeline folder, Hub repo id, or training checkpoint folder")
    parser.add_argument("--num_samples", type=int, default=1000)
    add_sampling_options(parser, class_labels=False)  # left out: the folder's recommendation, recorded in the report
    parser.add_argument("--eta", type=float, default=0.0,
                        help="DDIM's eta (with --scheduler ddim): 0 deterministic (default), 1 DDPM-like noise")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--num_reference", type=int, default=None,
                        help="judge against a seeded choice of this many test images (default: the whole test split; "
                             "--num_reference N with N = --num_samples is the first definition, N test images)")
    parser.add_argument("--data_root", default=None,
                        help=f"Fashion-MNIST: official IDX folder, or a folder with test/train.parquet (default {DEFAULT_ROOT})")
    parser.add_argument("--classifier", default=None,
                        help="a classifier folder from `annotated-pipeline train-classifier` (default: the shipped one)")
    parser.add_argument("--reference", default=None,
                        help="any labelled image set (image folder, parquet folder, Hub id): its test split is the "
                             "reference, its train split the floor's (instead of --data_root)")
    parser.add_argument("--image_column", default="image", help="the image column of --reference")
    parser.add_argument("--kid_subsets", type=int, default=100, help="KID: number of subsets")
    parser.add_argument("--kid_subset_size", type=int, default=1000, help="KID: features per subset (at most N)")
    parser.add_argument("--features", choices=FEATURES, default="classifier",
                        help="the embedding of FD and KID: our classifier (default), or Inception-v3, the FID's "
                             "(needs pip install 'annotated-pipeline[inception]'; reference features cached)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument("--json", type=output_file(JSON), default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    check_sampling_options(parser, args)
    if args.reference is not None and args.data_root is not None:
        parser.error("--reference and --data_root both name the reference data: give one")
    if args.kid_subsets < 1 or args.kid_subset_size < 2:
        parser.error(f"--kid_subsets must be >= 1 and --kid_subset_size >= 2; got {args.kid_subsets}, {args.kid_subset_size}")
    args.data_root = args.data_root or DEFAULT_ROOT
    return run_reporting(prog, lambda: _run(args))


def _run(args):
    inception_for(args.features)  # a missing [inception] extra fails here, before anything is loaded
    pipeline = load_pipeline(args.pipeline)
    resolve_sampling_options(pipeline, args)  # what was left out: the folder's sampler, steps and guidance
    report = evaluate(
        pipeline,
        num_samples=args.num_samples,
        scheduler=args.scheduler,
        num_inference_steps=args.num_inference_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        data_root=args.data_root,
        eta=args.eta,
        guidance_scale=args.guidance_scale,
        num_reference=args.num_reference,
        guidance_interval=None if args.guidance_interval is None else tuple(args.guidance_interval),
        classifier=args.classifier,
        reference=args.reference,
        image_column=args.image_column,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        features=args.features,
        precision=args.precision,
    )
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
