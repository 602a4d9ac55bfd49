"""Does the fast path cost quality? bfloat16 against float32, from the same weights and the same data.

    python benchmarks/quality_check.py sampling PIPELINE_PATH [--num_samples 500 --steps 50]
    python benchmarks/quality_check.py training [--steps 120 --batch 32]

sampling  One trained pipeline is evaluated twice with `annotated_pipeline.evaluation.evaluate` (DDIM with
          eta = 0, one seed, so the same x_T and a deterministic chain): U-Net weights in float32, then in
          bfloat16 (the pipeline keeps x_t in float32 either way). Reported: each run's Frechet distance to
          the Fashion-MNIST test split in our classifier's feature space (NOT an Inception FID; the whole
          split, evaluate's reference) with its real-vs-real floor, and the mean absolute pixel difference
          between the first `--compare_samples` samples of the two (pixels in [0, 1]; drawn again with
          evaluate's `generate_samples`, the same settings).
training  The default U-Net, one initialisation, the same batches (the embedded Fashion-MNIST sample, read
          and batched as the training command does) and the same t and eps, trained twice with AdamW by
          `annotated_pipeline.training.step.training_step` (Ho et al. 2020, Algorithm 1; Huber loss, the
          training default): float32, and the forward under bfloat16 autocast (what accelerate's
          `--mixed_precision bf16` does to the model). Reported: the loss curves' means over windows of steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

LOSS_TYPE = "huber"  # the training command's default --loss_type


def check_sampling(pipeline, num_samples, steps, batch_size, seed, data_root, classifier=None, compare_samples=100):
    """Evaluate `pipeline` (an object, a folder or a Hub id) in float32 and bfloat16; returns both reports."""
    from annotated_pipeline.checkpoints import load_pipeline
    from annotated_pipeline.evaluation.evaluate import evaluate
    from annotated_pipeline.evaluation.samples import conditioning_labels, generate_samples
    from annotated_pipeline.pipelines.samplers import set_scheduler

    pipe = load_pipeline(pipeline)
    compare_samples = min(compare_samples, num_samples)
    original_scheduler, original_dtype = pipe.scheduler, pipe.unet.dtype
    original_weights = {name: value.clone() for name, value in pipe.unet.state_dict().items()}  # bf16 rounds them
    reports, first = {}, {}
    try:
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            pipe.unet.to(dtype)
            reports[precision] = evaluate(pipe, num_samples=num_samples, scheduler="ddim", num_inference_steps=steps,
                                          batch_size=batch_size, seed=seed, data_root=data_root, classifier=classifier)
            set_scheduler(pipe, "ddim")
            first[precision] = generate_samples(pipe, compare_samples, steps, batch_size, seed,
                                                class_labels=conditioning_labels(pipe, compare_samples))
            pipe.scheduler = original_scheduler
    finally:
        pipe.unet.to(original_dtype)
        pipe.unet.load_state_dict(original_weights)
        pipe.scheduler = original_scheduler
    diff = (first["bf16"] - first["fp32"]).abs()
    print(f"pipeline {pipeline if isinstance(pipeline, str) else type(pipeline).__name__}: {num_samples} samples, "
          f"DDIM {steps} steps, batch {batch_size}, seed {seed}")
    print(f"mean |bf16 - fp32| per pixel over the first {compare_samples} samples: {diff.mean():.4f}  "
          f"(99th percentile {diff.flatten().quantile(0.99):.4f}, pixels in [0, 1])")
    print(f"Frechet distance floor (N = {num_samples} training images vs {reports['fp32']['num_reference']} test images): "
          f"{reports['fp32']['frechet_distance_floor']:.3f}")
    for precision, report in reports.items():
        print(f"{precision}: Frechet distance to test {report['frechet_distance']:.3f}, smallest class share "
              f"{report['class_coverage']['min_share']:.3f}, sampling {report['sampling_seconds']:.1f} s")
    return {**reports, "mean_pixel_difference": diff.mean().item()}


def forward_in_bfloat16(model):
    """The model's forward under torch.autocast(bfloat16), outputs in float32: how accelerate's prepare() wraps
    it for --mixed_precision bf16 (the loss is then computed in float32)."""
    from accelerate.utils import convert_outputs_to_fp32

    model.forward = convert_outputs_to_fp32(torch.autocast("cpu", dtype=torch.bfloat16)(model.forward))
    return model


def batches(dataset, batch, seed):
    """Endless shuffled batches of the training command's loader (make_dataloader), in a seeded order."""
    from annotated_pipeline.datasets.loading import make_dataloader

    loader = make_dataloader(dataset, batch, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


def check_training(steps, batch, seed, window, model_config=None):
    """Train the same U-Net twice (float32, bfloat16 forward) on the same data; returns the loss curves."""
    from annotated_pipeline.resources import embedded_sample
    from annotated_pipeline.scheduler import AnnotatedDDPMScheduler
    from annotated_pipeline.datasets.loading import load_training_dataset, make_transform
    from annotated_pipeline.training.step import training_step
    from annotated_pipeline.unet import AnnotatedUNet2DModel

    dataset = load_training_dataset(train_data_dir=embedded_sample())
    model_config = model_config or {}
    resolution = model_config.get("sample_size", 28)
    dataset.set_transform(make_transform(resolution, channels=1))
    if len(dataset) < batch:
        raise ValueError(f"--batch {batch} is larger than the {len(dataset)} images of the embedded sample")
    scheduler = AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2")

    torch.manual_seed(seed)
    init = AnnotatedUNet2DModel(**model_config).state_dict()
    curves = {}
    for precision in ("fp32", "bf16"):
        model = AnnotatedUNet2DModel(**model_config)
        model.load_state_dict(init)
        model.train()
        if precision == "bf16":
            forward_in_bfloat16(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(seed)  # the same t and eps for both
        data = batches(dataset, batch, seed)  # the same batches for both
        losses, start = [], time.perf_counter()
        for _ in range(steps):
            loss = training_step(model, next(data), scheduler, LOSS_TYPE, generator)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        curves[precision] = losses
        print(f"{precision}: {steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{LOSS_TYPE} loss, mean over windows of {window} steps (batch {batch}, lr 1e-3, same init and data):")
    print("steps        fp32     bf16")
    for lo in range(0, steps, window):
        hi = min(lo + window, steps)
        a, b = np.mean(curves["fp32"][lo:hi]), np.mean(curves["bf16"][lo:hi])
        print(f"{lo:4d}-{hi - 1:<4d}  {a:.4f}   {b:.4f}")
    return curves


def main(argv=None):
    from annotated_pipeline.evaluation.reference import DEFAULT_ROOT

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sampling")
    s.add_argument("pipeline")
    s.add_argument("--num_samples", type=int, default=500)
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--batch_size", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--compare_samples", type=int, default=100, help="samples whose pixels are compared (default 100)")
    s.add_argument("--data_root", default=DEFAULT_ROOT)
    t = sub.add_parser("training")
    t.add_argument("--steps", type=int, default=120)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--window", type=int, default=20)
    t.add_argument("--model_config", type=json.loads, default={},
                   help="AnnotatedUNet2DModel keyword arguments as JSON (default: the default U-Net)")
    args = parser.parse_args(argv)
    for name in ("num_samples", "steps", "batch_size", "compare_samples", "batch", "window"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.what == "sampling":
        check_sampling(args.pipeline, args.num_samples, args.steps, args.batch_size, args.seed, args.data_root,
                       compare_samples=args.compare_samples)
    else:
        check_training(args.steps, args.batch, args.seed, args.window, args.model_config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
