"""Does the fast path cost quality? bfloat16 against float32, from the same weights and the same data.

    python benchmarks/quality_check.py sampling PIPELINE_PATH [--num_samples 500 --steps 50]
    python benchmarks/quality_check.py training [--steps 120 --batch 32]

sampling  One trained pipeline samples the same N images (one seeded generator, DDIM with eta = 0, so the
          chain is deterministic given x_T) twice: U-Net weights in float32, then in bfloat16 (the
          pipeline keeps x_t in float32 either way). Reported: the mean absolute pixel difference between
          the two sets (pixels in [0, 1]), and each set's Frechet distance to the Fashion-MNIST test split
          in our classifier's feature space (annotated_pipeline.evaluation; NOT an Inception FID), with
          the real-vs-real floor for the same N.
training  The default U-Net, one initialisation, the same batches and noise (data/fashion-mnist-sample),
          trained twice with AdamW: float32, and the forward under bfloat16 autocast (what
          `--mixed_precision bf16` does). Reported: the loss curves' means over windows of steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def check_sampling(path, num_samples, steps, batch_size, seed, data_root):
    from diffusers import DDIMScheduler

    from annotated_pipeline.evaluation.classifier import load_default_classifier
    from annotated_pipeline.evaluation.evaluate import (
        choose, distance_floor, embed, generate_samples, load_reference_images, uint8_to_classifier_input,
    )
    from annotated_pipeline.evaluation.frechet import frechet_distance_between
    from annotated_pipeline.pipeline import AnnotatedDDPMPipeline

    pipe = AnnotatedDDPMPipeline.from_pretrained(path)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    samples, seconds = {}, {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        pipe.unet.to(dtype)
        start = time.perf_counter()
        samples[precision] = generate_samples(pipe, num_samples, steps, batch_size, seed)
        seconds[precision] = time.perf_counter() - start
    diff = (samples["bf16"] - samples["fp32"]).abs()
    print(f"pipeline {path}: {num_samples} samples, DDIM {steps} steps, batch {batch_size}, seed {seed}")
    print(f"mean |bf16 - fp32| per pixel: {diff.mean():.4f}  (99th percentile {diff.flatten().quantile(0.99):.4f}, "
          f"pixels in [0, 1])")

    classifier = load_default_classifier()
    test = choose(load_reference_images(data_root, "test"), num_samples, seed)
    train = choose(load_reference_images(data_root, "train"), num_samples, seed + 1)
    test_features, _ = embed(classifier, uint8_to_classifier_input(test))
    train_features, _ = embed(classifier, uint8_to_classifier_input(train))
    print(f"Frechet distance floor (test vs train, N = {num_samples}): {distance_floor(test_features, train_features):.3f}")
    for precision in ("fp32", "bf16"):
        features, predictions = embed(classifier, samples[precision] * 2 - 1)
        counts = np.bincount(predictions.numpy(), minlength=10) / num_samples
        print(f"{precision}: Frechet distance to test {frechet_distance_between(features, test_features):.3f}, "
              f"smallest class share {counts.min():.3f}, sampling {seconds[precision]:.1f} s")


def check_training(steps, batch, seed, window):
    import pandas as pd
    from PIL import Image
    import io

    from annotated_pipeline.scheduler import AnnotatedDDPMScheduler
    from annotated_pipeline.unet import AnnotatedUNet2DModel

    frame = pd.read_parquet(os.path.join(ROOT, "data", "fashion-mnist-sample", "train.parquet"))
    images = np.stack([np.asarray(Image.open(io.BytesIO(cell["bytes"]))) for cell in frame["image"]])
    data = torch.from_numpy(images).float().div(127.5).sub(1)[:, None]  # (N, 1, 28, 28) in [-1, 1]
    scheduler = AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2")

    torch.manual_seed(seed)
    init = AnnotatedUNet2DModel().state_dict()
    curves = {}
    for precision in ("fp32", "bf16"):
        model = AnnotatedUNet2DModel()
        model.load_state_dict(init)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(seed)  # the same batches, timesteps and noise for both
        losses, start = [], time.perf_counter()
        for _ in range(steps):
            index = torch.randint(0, len(data), (batch,), generator=generator)
            x0 = data[index]
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, 1000, (batch,), generator=generator)
            x_t = scheduler.add_noise(x0, noise, t)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                predicted = model(x_t, t).sample
            loss = F.smooth_l1_loss(predicted.float(), noise)  # the training script's default "huber" loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        curves[precision] = losses
        print(f"{precision}: {steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"huber loss, mean over windows of {window} steps (batch {batch}, lr 1e-3, same init and data):")
    print("steps        fp32     bf16")
    for lo in range(0, steps, window):
        hi = min(lo + window, steps)
        a, b = np.mean(curves["fp32"][lo:hi]), np.mean(curves["bf16"][lo:hi])
        print(f"{lo:4d}-{hi - 1:<4d}  {a:.4f}   {b:.4f}")
    return curves


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sampling")
    s.add_argument("pipeline")
    s.add_argument("--num_samples", type=int, default=500)
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--batch_size", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data_root", default="/usr/share/datasets/fashion-mnist")
    t = sub.add_parser("training")
    t.add_argument("--steps", type=int, default=120)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--window", type=int, default=20)
    args = parser.parse_args(argv)
    if args.what == "sampling":
        check_sampling(args.pipeline, args.num_samples, args.steps, args.batch_size, args.seed, args.data_root)
    else:
        check_training(args.steps, args.batch, args.seed, args.window)


if __name__ == "__main__":
    sys.exit(main())
