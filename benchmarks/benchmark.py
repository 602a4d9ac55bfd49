"""Our U-Net and pipeline against diffusers' own, measured in one process, A/B alternated.

    python benchmarks/benchmark.py                 # the issue's settings (a few minutes on 2 CPU cores)
    python benchmarks/benchmark.py --quick         # tiny models, batch 2, one repetition (a smoke test)

What is compared (issue 6):

    ours       AnnotatedUNet2DModel() (the default configuration) in AnnotatedDDPMPipeline with
               AnnotatedDDPMScheduler
    diffusers  UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=2,
               block_out_channels=(32, 64, 128), DownBlock2D/AttnDownBlock2D x2, AttnUpBlock2D x2/UpBlock2D,
               norm_num_groups=8, attention_head_dim=32) in DDPMPipeline with DDPMScheduler

What is measured, each a median over `--repeats` repetitions in which the two models alternate (A B, then
B A, ...), so that machine noise hits both:

    training images/s      one step = forward, loss (MSE on eps, Ho et al. 2020 eq. (14)), backward,
                           AdamW step, at batch `--train_batch`; "bf16" runs the forward under
                           torch.autocast(bfloat16), which is what `accelerate --mixed_precision bf16` does
    sampling s/step        wall time of `pipeline(batch_size=--sample_batch, num_inference_steps=n)` / n;
                           "bf16" holds the U-Net's weights in bfloat16 (pipeline.unet.to(torch.bfloat16))
    FLOPs per image        torch.utils.flop_counter.FlopCounterMode over one forward (and one training step)
    achieved GFLOP/s       training FLOPs per image x images/s
    peak memory            CUDA: torch.cuda.max_memory_allocated; CPU: the highest sum of live allocations
                           that torch.profiler(profile_memory=True) sees during one training step, on top
                           of what existed before it (parameters, gradients, optimizer state are listed apart)

Ratios are ours / diffusers for throughput (images/s: higher is better) and diffusers / ours for time
per step (so > 1 means ours is faster in both). Fast sampling (DDIM, DPM-Solver++ via the scheduler swap)
is timed on our pipeline at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

from annotated_pipeline.utils.hardware import bf16_is_native, default_device, describe_processor, resolve_precision


# ----------------------------------------------------------------------------------------------------
# the two contestants


def diffusers_unet(quick=False, **overrides):
    """The issue's reference: diffusers' UNet2DModel at the annotated-diffusion size (4.0M parameters).
    overrides: e.g. sample_size=32, in_channels=3, out_channels=3 (gpu_check.py's RGB sizes)."""
    from diffusers import UNet2DModel

    if quick:
        return UNet2DModel(**{**dict(
            sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4, attention_head_dim=8,
        ), **overrides})
    return UNet2DModel(**{**dict(
        sample_size=28, in_channels=1, out_channels=1, layers_per_block=2, block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=32,
    ), **overrides})


OUR_CONFIG = {}  # --ours_config: overrides of our configuration, e.g. {"linear_attention_levels": "all"}


def our_unet(quick=False, **overrides):
    """Our default configuration, AnnotatedUNet2DModel(): the blog's Unet(channels=1, dim_mults=(1, 2, 4)) at
    dim 16 with one linear attention per direction at 14x14 (--ours_config '{"dim": 28, "linear_attention_levels":
    "all"}' builds the blog's Unet(dim=28, ...))."""
    from annotated_pipeline.unet import AnnotatedUNet2DModel

    if quick:
        return AnnotatedUNet2DModel(**{**dict(sample_size=8, dim=8, dim_mults=(1, 2), attention_heads=1,
                                              attention_head_dim=8), **OUR_CONFIG, **overrides})
    return AnnotatedUNet2DModel(**{**OUR_CONFIG, **overrides})


def schedulers():
    """The same cosine schedule (Nichol & Dhariwal 2021) for both pipelines."""
    from diffusers import DDPMScheduler

    from annotated_pipeline.scheduler import AnnotatedDDPMScheduler

    config = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    return AnnotatedDDPMScheduler(**config), DDPMScheduler(**config)


def pipelines(ours, theirs):
    from diffusers import DDPMPipeline

    from annotated_pipeline.pipelines.pipeline import AnnotatedDDPMPipeline

    ours_scheduler, their_scheduler = schedulers()
    a = AnnotatedDDPMPipeline(unet=ours, scheduler=ours_scheduler)
    b = DDPMPipeline(unet=theirs, scheduler=their_scheduler)
    for pipe in (a, b):
        pipe.set_progress_bar_config(disable=True)
    return a, b


# ----------------------------------------------------------------------------------------------------
# one training step, one sampling run


def autocast(device, precision):
    """bf16: torch.autocast(bfloat16) around the forward, as accelerate's --mixed_precision bf16 does."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def make_trainer(model, batch, device, precision, seed=0):
    """A closure running one training step on a fixed random batch: returns the loss (a tensor)."""
    config = model.config
    size = config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0]
    generator = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(batch, config.in_channels, size, size, generator=generator) * 2 - 1).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    t = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    alpha_bar = torch.cos((t.float() / 1000 + 0.008) / 1.008 * torch.pi / 2) ** 2  # any fixed weights will do
    x_t = alpha_bar.sqrt()[:, None, None, None] * x0 + (1 - alpha_bar).sqrt()[:, None, None, None] * noise
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        with autocast(device, precision):
            predicted = model(x_t, t).sample
        loss = F.mse_loss(predicted.float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step, optimizer


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_calls(fn, n, device):
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - start) / n


def sample_once(pipe, batch, steps, seed=0):
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return pipe(batch_size=batch, num_inference_steps=steps, generator=generator, output_type="pt").images


# ----------------------------------------------------------------------------------------------------
# FLOPs and memory


from machine_peak import count_flops, processor  # noqa: E402 (benchmarks/ is on sys.path)


from memory_profile import peak_memory, state_bytes  # noqa: E402,F401 (benchmarks/ is on sys.path)
from benchmark_report import report  # noqa: E402


# ----------------------------------------------------------------------------------------------------
# the run


def describe_machine(device):
    lines = [f"python {platform.python_version()}, torch {torch.__version__}"]
    try:
        import diffusers

        lines[0] += f", diffusers {diffusers.__version__}"
    except ImportError:
        pass
    lines.append(f"device: {processor(device)}"
                 + (f", {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}" if device.type == "cpu" else ""))
    if device.type == "cpu":
        lines.append(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}; {describe_processor('cpu')}")
    try:
        lines.append("load average (1, 5, 15 min) at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    except OSError:
        pass
    return lines


def run(args):
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the "modules that should be kept in float32: []" note on .to(bf16)
    models = {"ours": our_unet(args.quick).to(device), "diffusers": diffusers_unet(args.quick).to(device)}
    out = {"machine": describe_machine(device), "settings": vars(args).copy(), "rows": {}}
    for line in out["machine"]:
        print(line, flush=True)
    print(f"ours: AnnotatedUNet2DModel({', '.join(f'{k}={v!r}' for k, v in OUR_CONFIG.items())})", flush=True)
    static = measure_static(models, device)
    train, train_flops, memory = measure_training(models, args, device)
    sample, pipes = measure_sampling(models, args, device)
    fast = measure_fast_sampling(pipes, args, device) if args.fast_sampling else []
    report(out, args, device, static, train, train_flops, memory, sample, fast)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
    return out


def copy_of(models, name, quick, device):
    """A fresh copy of one contestant with the same weights, so that no measurement depends on the order of runs."""
    model = our_unet(quick) if name == "ours" else diffusers_unet(quick)
    model.load_state_dict(models[name].state_dict())
    return model.to(device)


def measure_static(models, device):
    """Parameters and forward FLOPs of one image at t = 500."""
    size = models["ours"].config.sample_size
    static = {}
    for name, model in models.items():
        x = torch.randn(1, 1, size, size, device=device)
        t = torch.tensor([500], device=device)
        model.eval()
        with torch.no_grad():
            fwd = count_flops(lambda: model(x, t))
        static[name] = {"params": sum(p.numel() for p in model.parameters()), "fwd_flops": fwd}
    return static


def measure_training(models, args, device):
    """Training images/s per repetition, FLOPs per image and memory, per (contestant, precision)."""
    names, precisions = list(models), args.precisions
    train = {(n, p): [] for n in names for p in precisions}
    train_flops, memory, trainers = {}, {}, {}
    for p in precisions:
        for name in names:
            model = copy_of(models, name, args.quick, device)
            step, optimizer = make_trainer(model, args.train_batch, device, p)
            for _ in range(args.warmup):
                step()
            train_flops[name, p] = count_flops(step) / args.train_batch
            memory[name, p] = peak_memory(step, device)
            params_b, moments_b = state_bytes(model, optimizer)
            memory[name, p, "state"] = params_b * 2 + moments_b  # parameters, gradients, AdamW moments
            trainers[name, p] = step
    for r in range(args.repeats):
        order = names if r % 2 == 0 else names[::-1]
        for p in precisions:
            for name in order:
                seconds = time_calls(trainers[name, p], args.train_iters, device)
                train[name, p].append(args.train_batch / seconds)
        print(f"training repetition {r + 1}/{args.repeats} done", flush=True)
    return train, train_flops, memory


def measure_sampling(models, args, device):
    """Seconds per denoising step through each pipeline, per repetition; and the pipelines."""
    names, precisions = list(models), args.precisions
    sample = {(n, p): [] for n in names for p in precisions}
    pipes = {}
    for p in precisions:
        copies = {}
        for name in names:
            model = copy_of(models, name, args.quick, device).eval()
            if p == "bf16":
                model.to(torch.bfloat16)
            copies[name] = model
        pipes["ours", p], pipes["diffusers", p] = pipelines(copies["ours"], copies["diffusers"])
        for name in names:
            sample_once(pipes[name, p], args.sample_batch, max(2, args.sample_steps // 4))
    for r in range(args.repeats):
        order = names if r % 2 == 0 else names[::-1]
        for p in precisions:
            for name in order:
                pipe = pipes[name, p]
                seconds = time_calls(lambda: sample_once(pipe, args.sample_batch, args.sample_steps), 1, device)
                sample[name, p].append(seconds / args.sample_steps)
        print(f"sampling repetition {r + 1}/{args.repeats} done", flush=True)
    return sample, pipes


def measure_fast_sampling(pipes, args, device):
    """The scheduler swap on our pipeline: DDIM 50 and DPM-Solver++ 25 steps, seconds per batch."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    best = "bf16" if "bf16" in args.precisions else args.precisions[0]
    pipe, fast = pipes["ours", best], []
    default_scheduler = pipe.scheduler
    for cls, steps in ((DDIMScheduler, 50), (DPMSolverMultistepScheduler, 25)):
        steps = min(steps, args.sample_steps * 5)
        pipe.scheduler = cls.from_config(default_scheduler.config)
        seconds = time_calls(lambda: sample_once(pipe, args.sample_batch, steps), 1, device)
        fast.append((cls.__name__, steps, best, seconds))
    pipe.scheduler = default_scheduler
    return fast


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny models (8x8 images), batch 2, 1 repetition, 2 steps")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--precisions", type=lambda s: s.split(","), default=None,
                        help="comma-separated subset of fp32,bf16 (default: both where bf16 is native, else fp32 only: "
                             "emulated bf16 is ~100x slower, see annotated_pipeline/utils/hardware.py)")
    parser.add_argument("--repeats", type=int, default=5, help="alternated repetitions (medians are reported)")
    parser.add_argument("--train_batch", type=int, default=64)
    parser.add_argument("--train_iters", type=int, default=3, help="training steps timed per repetition")
    parser.add_argument("--sample_batch", type=int, default=16)
    parser.add_argument("--sample_steps", type=int, default=10, help="denoising steps timed per repetition")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps before measuring")
    parser.add_argument("--no_fast_sampling", dest="fast_sampling", action="store_false",
                        help="skip the DDIM / DPM-Solver++ timing")
    parser.add_argument("--ours_config", type=json.loads, default={},
                        help='JSON overrides of our U-Net config, e.g. \'{"linear_attention_levels": "all"}\' (the seed\'s attention on every level)')
    parser.add_argument("--peak_size", type=int, default=2048, help="n of the n^3 matmul that measures the peak")
    parser.add_argument("--peak_repeats", type=int, default=5, help="timed peak matmuls (the fastest counts)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    OUR_CONFIG.clear()
    OUR_CONFIG.update(args.ours_config)
    if args.precisions is None:
        args.precisions = ["fp32", "bf16"] if bf16_is_native(default_device()) else ["fp32"]
    for p in args.precisions:
        if p not in ("fp32", "bf16"):
            raise SystemExit(f"--precisions: unknown precision {p!r}; allowed: fp32, bf16")
        if p == "bf16":
            resolve_precision("bf16")  # warns once, with the measured cost, where bf16 is emulated
    if args.quick:
        args.repeats, args.train_batch, args.sample_batch = 1, 2, 2
        args.train_iters, args.sample_steps, args.warmup = 1, 2, 1
        args.peak_size, args.peak_repeats = 256, 2
    return args


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
