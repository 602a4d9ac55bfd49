"""The GPU check of issue 31, in one call: training and sampling speed against diffusers, and one quality point.

    python benchmarks/gpu_check.py --device cuda --out "$OUT"      # what benchmarks/gpu_check.sh runs
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/g  # the smoke test (tiny models, seconds)

What it measures, each written to OUT/gpu_check.json and OUT/gpu_check.md as soon as it is known (so a
run cut short still leaves what it had):

1. training throughput at 32x32 and 64x64 RGB, bf16 autocast: our U-Net (AnnotatedUNet2DModel's default
   configuration, in_channels 3) against diffusers' UNet2DModel (benchmark.py's reference at the
   annotated-diffusion size, in_channels 3), images/s as the median of alternated repetitions (A B, B A,
   ...), the step's FLOPs counted by torch.utils.flop_counter and its FLOP/s as a share of the device's
   bf16 matmul peak (machine_peak.py);
2. sampling speed at the same sizes: s per denoising step of each pipeline with bf16 weights;
3. a quality point: `annotated-pipeline train` with the shipped recipe (README "Train") for --train_steps
   steps on the device, its last checkpoint judged by time_to_quality.py (the library's evaluate, the
   card's sampler, N = --num_samples). Fashion-MNIST comes from --data (the official IDX files); where
   it is absent, training uses the embedded 2,000-image sample and the reference is cut from the same
   sample, and the summary says the point is NOT comparable with the card's 7.6.

Every number is printed with the device's name (machine_peak.processor).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark  # noqa: E402
import machine_peak  # noqa: E402
import time_to_quality  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "data" / "fashion-mnist-sample" / "train.parquet"
IDX_FILES = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")


class Report:
    """The results so far, rewritten to OUT as JSON and markdown after every stage."""

    def __init__(self, out: Path | None, device: torch.device, tiny: bool):
        self.out, self.name = out, machine_peak.processor(device)
        self.data = {"device": self.name, "torch": torch.__version__, "tiny": tiny, "training": [], "sampling": [],
                     "quality": None, "notes": []}
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

    def add(self, key, value):
        if isinstance(self.data[key], list):
            self.data[key].append(value)
        else:
            self.data[key] = value
        self.write()

    def markdown(self) -> str:
        d = self.data
        lines = [f"# GPU check ({d['device']}, torch {d['torch']}{', tiny smoke mode' if d['tiny'] else ''})", "",
                 "| size | training images/s ours | diffusers | ours / diffusers | ours GFLOP/s (share of bf16 peak) |",
                 "|---|---|---|---|---|"]
        for r in d["training"]:
            lines.append(f"| {r['size']}x{r['size']} RGB, bf16, batch {r['batch']} | {r['ours']:.1f} | "
                         f"{r['diffusers']:.1f} | {r['ratio']:.2f}x | {r['ours_flops_per_s'] / 1e9:.1f} "
                         f"({100 * r['ours_share_of_peak']:.1f}%) |")
        lines += ["", "| size | sampling s/step ours | diffusers | diffusers / ours |", "|---|---|---|---|"]
        for r in d["sampling"]:
            lines.append(f"| {r['size']}x{r['size']} RGB, bf16 weights, batch {r['batch']} | {r['ours']:.4f} | "
                         f"{r['diffusers']:.4f} | {r['ratio']:.2f}x |")
        q = d["quality"]
        if q:
            lines += ["", f"Quality point: {q['steps']} steps of the shipped recipe in {q['wall_seconds']:.0f} s "
                          f"wall; classifier distance {q['frechet_distance']:.3f} (floor {q['frechet_distance_floor']:.3f}) "
                          f"at N = {q['num_samples']}, {q['scheduler']} {q['num_inference_steps']} steps, guidance "
                          f"{q['guidance_scale']}; data: {q['data']}."]
        lines += [""] + [f"- {note}" for note in d["notes"]]
        return "\n".join(lines) + "\n"

    def write(self):
        if self.out is None:
            return
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(self.markdown())


def pair(size: int, tiny: bool):
    """Ours and diffusers' U-Net for RGB images of `size` (benchmark.py's pair, three channels)."""
    ours = benchmark.our_unet(tiny, sample_size=size, in_channels=3)
    theirs = benchmark.diffusers_unet(tiny, sample_size=size, in_channels=3, out_channels=3)
    return {"ours": ours, "diffusers": theirs}


def training_speed(size: int, batch: int, repeats: int, iters: int, device: torch.device, tiny: bool,
                   peak: float) -> dict:
    """images/s of one bf16 training step, medians of alternated repetitions, and our FLOP/s' share of `peak`."""
    steps, flops, speed = {}, {}, {}
    for name, model in pair(size, tiny).items():
        step, _ = benchmark.make_trainer(model.to(device), batch, device, "bf16")
        step()  # warm-up
        flops[name] = machine_peak.count_flops(step)
        steps[name], speed[name] = step, []
    for r in range(repeats):
        for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            speed[name].append(batch / benchmark.time_calls(steps[name], iters, device))
    ours, theirs = statistics.median(speed["ours"]), statistics.median(speed["diffusers"])
    achieved = flops["ours"] / batch * ours
    return {"size": size, "batch": batch, "ours": ours, "diffusers": theirs, "ratio": ours / theirs,
            "ours_flops_per_step": flops["ours"], "diffusers_flops_per_step": flops["diffusers"],
            "ours_flops_per_s": achieved, "ours_share_of_peak": achieved / peak, "bf16_peak_flops_per_s": peak}


def sampling_speed(size: int, batch: int, steps: int, repeats: int, device: torch.device, tiny: bool) -> dict:
    """s per denoising step of each pipeline (bf16 weights), medians of alternated repetitions."""
    models = {name: model.to(device).eval().to(torch.bfloat16) for name, model in pair(size, tiny).items()}
    pipes = dict(zip(("ours", "diffusers"), benchmark.pipelines(models["ours"], models["diffusers"])))
    seconds = {name: [] for name in pipes}
    for name, pipe in pipes.items():
        benchmark.sample_once(pipe.to(device), batch, 2)  # warm-up
    for r in range(repeats):
        for name in (list(pipes) if r % 2 == 0 else list(pipes)[::-1]):
            run = lambda: benchmark.sample_once(pipes[name], batch, steps)  # noqa: E731
            seconds[name].append(benchmark.time_calls(run, 1, device) / steps)
    ours, theirs = statistics.median(seconds["ours"]), statistics.median(seconds["diffusers"])
    return {"size": size, "batch": batch, "steps": steps, "ours": ours, "diffusers": theirs, "ratio": theirs / ours}


def quality_data(data: str | None, workdir: Path, tiny: bool) -> tuple[str, str, str]:
    """(training data, evaluation reference folder, description): the official files where present, else the
    embedded sample and a reference cut from it."""
    if not tiny and data and all((Path(data) / name).is_file() for name in IDX_FILES):
        return data, data, f"Fashion-MNIST ({data}), reference the whole test split"
    import pyarrow.parquet as pq

    reference = workdir / "embedded-reference"
    reference.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(EMBEDDED)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), reference / "test.parquet")
    pq.write_table(table.slice(half), reference / "train.parquet")
    return (str(EMBEDDED.parent), str(reference),
            "the embedded 2,000-image sample (reference: its first half), NOT comparable with the card")


def quality_point(steps: int, num_samples: int, data: str | None, workdir: Path, device: torch.device,
                  tiny: bool) -> dict:
    """The shipped recipe for `steps` steps on the device, its last checkpoint judged with the card's sampler."""
    train_data, reference, described = quality_data(data, workdir, tiny)
    arguments = list(time_to_quality.RECIPES["shipped"])
    arguments[arguments.index("--train_data_dir") + 1] = train_data
    arguments[arguments.index("--max_train_steps") + 1] = str(steps)
    arguments += ["--save_model_epochs", "1000000"]
    if tiny:
        arguments += ["--dim", "8", "--dim_mults", "1,2", "--train_batch_size", "8", "--mixed_precision", "no"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    results = workdir / "quality.jsonl"
    rows = time_to_quality.run_protocol("gpu-check", arguments, 10_000, workdir, results, steps, num_samples,
                                        reference, env=env, device=str(device))
    return {**rows[-1], "steps": steps, "data": described}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (with --tiny: the smoke test)")
    parser.add_argument("--tiny", action="store_true", help="tiny models, batch 2, a few steps: a smoke test")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                        help="folder for gpu_check.json and gpu_check.md (default: $OUT)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--train_batch", type=int, default=128)
    parser.add_argument("--sample_batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train_steps", type=int, default=2000, help="steps of the quality point's training run")
    parser.add_argument("--num_samples", type=int, default=1000, help="N of the quality point (the card's: 1000)")
    parser.add_argument("--data", default=os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"),
                        help="folder of the official Fashion-MNIST IDX files (default: $FASHION_MNIST or the Debian one)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/gpu_check"))
    parser.add_argument("--skip", nargs="*", default=[], choices=("training", "sampling", "quality"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device (torch.cuda.is_available() is False)")
    if device.type == "cpu" and not args.tiny:
        parser.error("on the CPU only the smoke test runs: add --tiny (benchmark.py measures CPUs)")
    if args.tiny:
        args.train_batch, args.sample_batch, args.repeats, args.train_steps = 2, 2, 1, 4
        args.num_samples = min(args.num_samples, 16)
    if args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty: give a new folder")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the "modules that should be kept in float32: []" note on .to(bf16)
    report = Report(args.out, device, args.tiny)
    print(f"device: {report.name}", flush=True)
    start = time.perf_counter()
    if "training" not in args.skip:
        peak = machine_peak.matmul_peak(device, "bf16", 256 if args.tiny else 8192)["flops_per_s"]
        for size in args.sizes:
            row = training_speed(size, args.train_batch, args.repeats, 1 if args.tiny else 10, device, args.tiny, peak)
            report.add("training", row)
            print(f"training {size}x{size}: ours {row['ours']:.1f} img/s, diffusers {row['diffusers']:.1f} "
                  f"({row['ratio']:.2f}x); ours {100 * row['ours_share_of_peak']:.1f}% of bf16 peak  [{report.name}]",
                  flush=True)
    if "sampling" not in args.skip:
        for size in args.sizes:
            row = sampling_speed(size, args.sample_batch, 2 if args.tiny else 20, args.repeats, device, args.tiny)
            report.add("sampling", row)
            print(f"sampling {size}x{size}: ours {row['ours']:.4f} s/step, diffusers {row['diffusers']:.4f} "
                  f"({row['ratio']:.2f}x)  [{report.name}]", flush=True)
    if "quality" not in args.skip:
        row = quality_point(args.train_steps, args.num_samples, args.data, args.workdir, device, args.tiny)
        report.add("quality", row)
        print(f"quality: distance {row['frechet_distance']:.3f} after {row['steps']} steps ({row['data']})  "
              f"[{report.name}]", flush=True)
    report.data["notes"].append(f"the whole check took {time.perf_counter() - start:.0f} s wall")
    report.write()
    print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
