"""How well do the editing pipelines work on the shipped model? Inpainting by class, SDEdit by distance.

    python benchmarks/editing.py [PIPELINE] [--num_images 300] [--json editing.json]

Inpainting (RePaint, annotated_pipeline.pipelines.pipeline_inpaint). A stratified, seeded choice of test images
(the official Fashion-MNIST test split, the same number of each class) keeps its left half (`--keep`)
and the model fills in the right half with the "no class" embedding: it is told nothing about the
class. The project's classifier (annotated_pipeline.evaluation.classifier) then labels

    complete   the whole test images: what the classifier can do at best;
    kept half  the inputs with the unknown half black (-1): what the kept half alone tells it;
    completed  the inpainted images: with the kept half, the label the model's completion supports;
    filled half  the inpainted images with the kept half black: the model's half alone;

and the report is each one's share of the images' true labels (chance: 10%). "completed" above
"kept half" means the completions add evidence of the right class; "filled half" well above chance
means the half the model drew, seen alone, is of the input's kind.

SDEdit (annotated_pipeline.pipelines.pipeline_img2img). The same test images, edited at each `--strengths`
value t_0: the mean absolute distance to the input (pixels in [0, 1]), and the share the classifier
labels as the input's class; t_0 -> 0 keeps the input, t_0 = 1 is a fresh sample (distance of an
unrelated image, label kept at chance).

Not a test. The default settings: 300 images; RePaint on DDIM 20 steps with j = 5 and r = 1 (20 U-Net calls
per image) and r = 3 (50 calls); SDEdit on DPM-Solver++ 20 steps at six strengths. On 2 shared CPU cores
that takes about 15-20 minutes (benchmarks/RESULTS.md, "Editing").
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from annotated_pipeline.evaluation.classifier import load_default_classifier  # noqa: E402
from annotated_pipeline.evaluation.measures import embed  # noqa: E402
from annotated_pipeline.evaluation.reference import DEFAULT_ROOT, load_split  # noqa: E402
from annotated_pipeline.pipelines.samplers import SCHEDULERS, set_scheduler  # noqa: E402
from annotated_pipeline.pipelines.pipeline_img2img import AnnotatedDDPMImg2ImgPipeline  # noqa: E402
from annotated_pipeline.pipelines.pipeline_inpaint import KEEP_SIDES, AnnotatedDDPMInpaintPipeline, half_mask  # noqa: E402
from annotated_pipeline.datasets.fashion_mnist import stratified_sample_indices  # noqa: E402

STRENGTHS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)


def test_images(data_root, num_images, seed):
    """(images (N, 1, 28, 28) in [0, 1], labels (N,)): a stratified seeded choice from the test split."""
    images, labels = load_split(data_root, "test")
    chosen = stratified_sample_indices(labels, num_images, seed)
    return torch.from_numpy(images[chosen]).float().unsqueeze(1) / 255.0, torch.from_numpy(labels[chosen])


def label_rate(classifier, images, labels):
    """Share of `images` (in [0, 1]) that the classifier labels as `labels`."""
    _, predictions = embed(classifier, images * 2.0 - 1.0)
    return (predictions == labels).float().mean().item()


def run_batches(fn, images, batch_size, seed):
    """fn(batch, generator) over batches; one generator seeded once drives them all."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([fn(images[i:i + batch_size], generator) for i in range(0, len(images), batch_size)])


def measure_inpainting(pipe, classifier, images, labels, keep="left", scheduler="ddim", num_inference_steps=20,
                       jump_length=5, jump_n_sample=3, batch_size=100, seed=0):
    """The three label rates of the module docstring, for one RePaint setting."""
    inpaint = AnnotatedDDPMInpaintPipeline.from_pipe(pipe)
    set_scheduler(inpaint, scheduler)
    mask = half_mask(keep, *images.shape[-2:])
    start = time.perf_counter()
    completed = run_batches(
        lambda batch, generator: inpaint(batch, mask, num_inference_steps=num_inference_steps, jump_length=jump_length,
                                         jump_n_sample=jump_n_sample, generator=generator, output_type="pt").images,
        images, batch_size, seed)
    seconds = time.perf_counter() - start
    kept_exactly = bool(torch.equal((completed * 255).round() * mask, (images * 255).round() * mask))
    return {
        "keep": keep, "scheduler": scheduler, "num_inference_steps": num_inference_steps, "jump_length": jump_length,
        "jump_n_sample": jump_n_sample, "num_images": len(images), "seconds": round(seconds, 1),
        "rate_complete": label_rate(classifier, images, labels),
        "rate_kept_half": label_rate(classifier, images * mask, labels),
        "rate_completed": label_rate(classifier, completed, labels),
        "rate_filled_half": label_rate(classifier, completed * (1 - mask), labels),
        "kept_pixels_exact": kept_exactly,
        "mean_abs_change_filled": (completed - images).abs().mul(1 - mask).sum().item() / ((1 - mask).sum().item() * len(images)),
    }


def measure_sdedit(pipe, classifier, images, labels, strengths=STRENGTHS, scheduler="dpmsolver", num_inference_steps=20,
                   batch_size=100, seed=0):
    """Per strength: mean |edit - input| (pixels in [0, 1]), and the share labelled as the input's class."""
    img2img = AnnotatedDDPMImg2ImgPipeline.from_pipe(pipe)
    set_scheduler(img2img, scheduler)
    rows = []
    for strength in strengths:
        start = time.perf_counter()
        edited = run_batches(
            lambda batch, generator: img2img(batch, strength=strength, num_inference_steps=num_inference_steps,
                                             generator=generator, output_type="pt").images,
            images, batch_size, seed)
        rows.append({"strength": strength, "mean_abs_distance": (edited - images).abs().mean().item(),
                     "label_rate": label_rate(classifier, edited, labels),
                     "seconds": round(time.perf_counter() - start, 1)})
    return {"scheduler": scheduler, "num_inference_steps": num_inference_steps, "num_images": len(images), "curve": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", nargs="?", default="pretrained/ddpm-fashion-mnist")
    parser.add_argument("--data_root", default=DEFAULT_ROOT, help="official IDX folder, or a folder with test.parquet")
    parser.add_argument("--num_images", type=int, default=300, help="a multiple of 10 (stratified by class)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--keep", choices=KEEP_SIDES, default="left")
    parser.add_argument("--inpaint_scheduler", choices=SCHEDULERS, default="ddim")
    parser.add_argument("--inpaint_steps", type=int, default=20)
    parser.add_argument("--jump_length", type=int, default=5)
    parser.add_argument("--jump_n_sample", type=int, nargs="+", default=[1, 3],
                        help="one RePaint run per value (1 = no resampling)")
    parser.add_argument("--img2img_scheduler", choices=SCHEDULERS, default="dpmsolver")
    parser.add_argument("--img2img_steps", type=int, default=20)
    parser.add_argument("--strengths", type=float, nargs="+", default=list(STRENGTHS))
    parser.add_argument("--skip", choices=("inpaint", "img2img"), nargs="*", default=[])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    pipe = AnnotatedDDPMInpaintPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    classifier = load_default_classifier()
    images, labels = test_images(args.data_root, args.num_images, args.seed)
    report = {"pipeline": args.pipeline, "seed": args.seed, "inpainting": [], "sdedit": None}
    if "inpaint" not in args.skip:
        for r in args.jump_n_sample:
            result = measure_inpainting(pipe, classifier, images, labels, args.keep, args.inpaint_scheduler,
                                        args.inpaint_steps, args.jump_length, r, args.batch_size, args.seed)
            report["inpainting"].append(result)
            print(f"RePaint keep {result['keep']}, {result['scheduler']} {result['num_inference_steps']} steps, "
                  f"j = {result['jump_length']}, r = {r}, N = {result['num_images']} ({result['seconds']} s): "
                  f"true class {result['rate_completed']:.1%} completed, {result['rate_kept_half']:.1%} kept half only, "
                  f"{result['rate_filled_half']:.1%} filled half only, "
                  f"{result['rate_complete']:.1%} complete images; kept pixels exact: {result['kept_pixels_exact']}",
                  flush=True)
    if "img2img" not in args.skip:
        report["sdedit"] = measure_sdedit(pipe, classifier, images, labels, args.strengths, args.img2img_scheduler,
                                          args.img2img_steps, args.batch_size, args.seed)
        print(f"SDEdit, {args.img2img_scheduler} {args.img2img_steps} steps, N = {len(images)}:")
        print("| strength | mean abs distance to the input | labelled as the input's class | seconds |")
        print("|---|---|---|---|")
        for row in report["sdedit"]["curve"]:
            print(f"| {row['strength']:g} | {row['mean_abs_distance']:.4f} | {row['label_rate']:.1%} | {row['seconds']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
