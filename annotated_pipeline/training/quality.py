"""Sample quality during training: every --eval_steps the Frechet distance, the KID and class coverage, and the best pipeline.

    annotated-pipeline train ... --eval_steps 200 --eval_num_samples 500 [--eval_classifier FOLDER --eval_reference DATA] --save_best

Every K optimizer steps the main process draws N samples with the EMA weights (the grid's sampler,
--grid_scheduler and --ddpm_num_inference_steps; class-conditional models get the labels 0..K-1 in
turn) and measures them exactly as `annotated-pipeline evaluate` does (evaluation/evaluate.py,
`measure`): FD and KID against the reference, with their floors (N real training images of the
reference data against the same reference), and class coverage. The numbers go to the trackers as
`quality/...` scalars, a grid of the samples as the image `quality_samples`.

What judges the samples: --eval_classifier (a folder from `annotated-pipeline train-classifier`) and
--eval_reference (its test split is the reference, see evaluate.py). For Fashion-MNIST training data
(the embedded sample, or the IDX folder) they default to the shipped classifier and the official
test split (the IDX folder trained on, else /usr/share/datasets/fashion-mnist); for any other data a
run without them is refused before training, as is a classifier whose image shape is not the
model's.

--eval_features inception measures the same samples in Inception-v3 features as well (as `evaluate
--features inception`, evaluation/inception_measure.py): the Inception FID and KID and their floors, logged as
`quality/inception_...`; the reference's and floor's Inception features are computed once (user cache).

--save_best keeps the pipeline of the lowest KID so far (the Inception KID with --eval_features inception) as OUTPUT_DIR/best/ (the pipeline folder,
`samples.png` and `quality.json` with the step and the numbers): written into a hidden
`.best.incomplete` and renamed into place, so best/ is never half written; a resumed run reads the
KID to beat from best/quality.json.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from dataclasses import dataclass, field

import torch
from accelerate.logging import get_logger

from .args import TrainingConfigError

logger = get_logger(__name__)

BEST_DIR = "best"
SCALARS = ("frechet_distance", "frechet_distance_floor", "kid", "kid_std", "kid_floor")
# --eval_features inception: the same numbers in Inception features, logged as quality/inception_<name>
INCEPTION_SCALARS = {"fid": "frechet_distance", "fid_floor": "frechet_distance_floor", "kid": "kid",
                     "kid_std": "kid_std", "kid_floor": "kid_floor"}


def resolve_sources(args) -> tuple[str | None, dict]:
    """(classifier folder or None for the shipped one, the reference as evaluate's keyword arguments)."""
    from ..evaluation.reference import DEFAULT_ROOT
    from ..datasets.loading import IDX_PATTERNS

    folder = args.train_data_dir
    idx_folder = bool(folder) and any(glob.glob(os.path.join(glob.escape(folder), pattern)) for pattern in IDX_PATTERNS)
    fashion_mnist = args.dataset_name is None and (args.train_data_dir is None or idx_folder)
    if args.eval_reference is not None:
        return args.eval_classifier, {"reference": args.eval_reference}
    if not fashion_mnist:
        raise TrainingConfigError(
            "--eval_steps on data other than Fashion-MNIST needs --eval_classifier FOLDER (from `annotated-pipeline "
            "train-classifier DATA`) and --eval_reference DATA (a labelled set with a test split, e.g. the training data)"
        )
    root = args.train_data_dir if idx_folder else DEFAULT_ROOT
    if not os.path.isdir(root):
        raise TrainingConfigError(
            f"--eval_steps on Fashion-MNIST judges against the official test split, which is not in {root}: "
            "`apt-get install dataset-fashion-mnist`, or give --eval_reference DATA"
        )
    return args.eval_classifier, {"data_root": root}


@dataclass
class QualityCheck:
    """The classifier and the reference features, computed once; `run` measures a pipeline's samples."""

    args: object
    classifier: object
    reference_features: torch.Tensor
    floor_features: torch.Tensor
    best_kid: float = float("inf")
    history: list = field(default_factory=list)  # one {"step", "quality/...": value} per measurement
    last_samples: torch.Tensor | None = None     # (N, C, S, S) in [0, 1], the latest measurement's
    inception: object = None                     # --eval_features inception: the network and
    inception_reference: tuple | None = None     # (reference features, the floor's numbers) in Inception features

    @classmethod
    def from_args(cls, args, channels: int):
        """None without --eval_steps; TrainingConfigError when classifier, reference and model disagree."""
        if args.eval_steps is None:
            return None
        from ..evaluation.classifier import load_classifier, load_default_classifier
        from ..evaluation.measures import embed
        from ..evaluation.reference import reference_images
        from ..evaluation.inception_measure import inception_floor, inception_for, inception_reference

        classifier_folder, reference = resolve_sources(args)
        try:
            classifier = load_default_classifier() if classifier_folder is None else load_classifier(classifier_folder)
            model_shape = (channels, args.resolution, args.resolution)
            if classifier.input_shape != model_shape:
                raise ValueError(f"the classifier reads {classifier.input_shape} images (channels, height, width); "
                                 f"the model is trained on {model_shape} (--resolution {args.resolution})")
            test_images, train_images, _ = reference_images(classifier, args.eval_num_samples, args.seed, **reference)
            inception = inception_for(args.eval_features)
        except (ValueError, OSError) as error:
            raise TrainingConfigError(f"--eval_steps: {error}") from None
        check = cls(args, classifier, embed(classifier, test_images)[0], embed(classifier, train_images)[0])
        if inception is not None:
            check.inception = inception
            reference, floor = inception_reference(inception, test_images, train_images)
            check.inception_reference = (reference, inception_floor(reference, floor, args.seed,
                                                                    kid_subset_size=args.eval_num_samples))
        best = os.path.join(args.output_dir, BEST_DIR, "quality.json")
        if args.save_best and os.path.isfile(best):
            with open(best) as f:
                check.best_kid = json.load(f).get("inception_kid" if inception is not None else "kid", float("inf"))
        return check

    def due(self, global_step: int) -> bool:
        return global_step % self.args.eval_steps == 0

    def run(self, pipeline, global_step: int) -> dict:
        """Sample, measure, and return {"quality/<name>": value} (also kept in `history`)."""
        from ..evaluation.measures import embed, measure
        from ..evaluation.samples import conditioning_labels, generate_samples
        from ..pipelines.samplers import using_sampler

        n = self.args.eval_num_samples
        with using_sampler(pipeline, self.args.grid_scheduler):
            labels = conditioning_labels(pipeline, n)
            samples = generate_samples(pipeline, n, self.args.ddpm_num_inference_steps, self.args.eval_batch_size,
                                       self.args.seed, class_labels=labels)
        features, predictions = embed(self.classifier, samples * 2.0 - 1.0)
        report = measure(self.classifier, features, predictions, self.reference_features, self.floor_features,
                         self.args.seed, kid_subset_size=n)
        logs = {f"quality/{name}": report[name] for name in SCALARS}
        logs["quality/min_share"] = report["class_coverage"]["min_share"]
        logs["quality/classes_covered"] = report["class_coverage"]["classes_covered"]
        if self.inception is not None:
            from ..evaluation.inception_measure import inception_numbers

            numbers = inception_numbers(self.inception, samples, *self.inception_reference, self.args.seed,
                                        kid_subset_size=n)
            logs.update({f"quality/inception_{name}": numbers[key] for name, key in INCEPTION_SCALARS.items()})
        if labels is not None:
            logs["quality/label_accuracy"] = (predictions == labels).double().mean().item()
        self.history.append({"step": global_step, **logs})
        self.last_samples = samples
        return logs


def save_best(pipeline, images, output_dir: str, global_step: int, logs: dict) -> str:
    """Write the pipeline, samples.png and quality.json to output_dir/.best.incomplete, then rename it to best/."""
    from .outputs import SAMPLES_FILE, samples_image

    final = os.path.join(output_dir, BEST_DIR)
    temporary, old = os.path.join(output_dir, ".best.incomplete"), os.path.join(output_dir, ".best.old")
    for leftover in (temporary, old):
        shutil.rmtree(leftover, ignore_errors=True)
    pipeline.save_pretrained(temporary)
    samples_image(images).save(os.path.join(temporary, SAMPLES_FILE))
    with open(os.path.join(temporary, "quality.json"), "w") as f:
        json.dump({"step": global_step, **{key.split("/", 1)[1]: value for key, value in logs.items()}}, f, indent=2)
    if os.path.isdir(final):
        os.rename(final, old)
    os.rename(temporary, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def maybe_evaluate(args, accelerator, state, global_step: int) -> None:
    """After an optimizer step: every --eval_steps, measure the EMA pipeline (main process), log, keep the best."""
    quality = state.quality
    if quality is None or not quality.due(global_step):
        return
    from .safeguards import refuse_non_finite_weights
    from .outputs import ema_weights, make_pipeline, sampling_recommended

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unet = accelerator.unwrap_model(state.model)
        unet.eval()
        with ema_weights(unet, state.ema):
            refuse_non_finite_weights(unet, global_step, args.output_dir, "the quality samples")
            pipeline = make_pipeline(unet, state.noise_scheduler)
            logs = quality.run(pipeline, global_step)
            images = quality.last_samples.permute(0, 2, 3, 1).numpy()
            accelerator.log(logs, step=global_step)
            if args.logger == "tensorboard":
                accelerator.get_tracker("tensorboard").log_images({"quality_samples": images[:64]}, step=global_step,
                                                                  dataformats="NHWC")
            logger.info(f"Step {global_step}: FD {logs['quality/frechet_distance']:.3f} (floor "
                        f"{logs['quality/frechet_distance_floor']:.3f}), KID {logs['quality/kid']:.5f} (floor "
                        f"{logs['quality/kid_floor']:.5f}), min class share {logs['quality/min_share']:.3f}"
                        + (f"; Inception FID {logs['quality/inception_fid']:.3f} (floor {logs['quality/inception_fid_floor']:.3f}),"
                           f" KID {logs['quality/inception_kid']:.5f}" if quality.inception is not None else ""))
            kid = logs["quality/inception_kid" if quality.inception is not None else "quality/kid"]
            if args.save_best and kid < quality.best_kid:
                quality.best_kid = kid
                recommended = sampling_recommended(pipeline, args.grid_scheduler, args.ddpm_num_inference_steps)
                path = save_best(recommended, images[:args.eval_batch_size], args.output_dir, global_step, logs)
                logger.info(f"Saved the best pipeline so far (KID {quality.best_kid:.5f}) to {path}")
        unet.train()
    accelerator.wait_for_everyone()
