"""How fast are the Inception features on this CPU, and does bf16 move the FID?

    python benchmarks/inception_speed.py speed [--batch_sizes 25 50 100 --threads 1 2 --images 100]
    python benchmarks/inception_speed.py bf16 [--num 500]

speed  images/s of `InceptionFeatures.embed` (resize + network) on real Fashion-MNIST test images, for
       each precision (bf16 only where the CPU has it natively), batch size and thread count; one warm-up
       batch first (TorchScript's profiling executor optimises on the first calls), then `--images`
       images timed.
bf16   the FID and KID between `--num` test and `--num` training images (seeded choices) with fp32 and
       with bf16 features, and their relative difference: bf16 is used only if it moves the FID by less
       than the tolerance stated in benchmarks/RESULTS.md.
Prints one JSON object per measurement; the CPU is named in the first line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from annotated_pipeline.evaluation.inception import InceptionFeatures, grey_to_rgb, native_bf16
from annotated_pipeline.evaluation.reference import DEFAULT_ROOT, choose, load_reference_images


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor()
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}"


def speed(args):
    images = grey_to_rgb(choose(load_reference_images(args.data_root, "test"), args.images + max(args.batch_sizes), 0))
    precisions = ("fp32", "bf16") if native_bf16() else ("fp32",)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for precision in precisions:
            for batch_size in args.batch_sizes:
                inception = InceptionFeatures(precision, batch_size)
                inception.embed(images[:batch_size])  # warm-up
                start = time.perf_counter()
                for i in range(batch_size, batch_size + args.images, batch_size):
                    inception.embed(images[i:i + batch_size])
                seconds = time.perf_counter() - start
                print(json.dumps({"threads": threads, "precision": precision, "batch_size": batch_size,
                                  "images": args.images, "seconds": round(seconds, 2),
                                  "images_per_s": round(args.images / seconds, 2)}), flush=True)


def bf16(args):
    from annotated_pipeline.evaluation.frechet import frechet_distance_between
    from annotated_pipeline.evaluation.kid import kernel_distance

    test = grey_to_rgb(choose(load_reference_images(args.data_root, "test"), args.num, 0))
    train = grey_to_rgb(choose(load_reference_images(args.data_root, "train"), args.num, 1))
    results = {}
    for precision in ("fp32", "bf16"):
        inception = InceptionFeatures(precision)
        start = time.perf_counter()
        a, b = inception.features(test), inception.features(train)
        results[precision] = {"fid": frechet_distance_between(a, b), "kid": kernel_distance(a, b)["kid"],
                              "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps({"precision": precision, "num": args.num, **results[precision]}), flush=True)
    change = abs(results["bf16"]["fid"] - results["fp32"]["fid"]) / results["fp32"]["fid"]
    print(json.dumps({"fid_relative_change_bf16": change}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("speed", "bf16"))
    parser.add_argument("--data_root", default=DEFAULT_ROOT)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[50])
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--num", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps({"cpu": cpu_name(), "torch": torch.__version__}), flush=True)
    speed(args) if args.what == "speed" else bf16(args)


if __name__ == "__main__":
    main()
