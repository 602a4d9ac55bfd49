"""DPM-Solver++ on explicit chains uniform in log-SNR with a cap on the noise end.

    python benchmarks/capped_logsnr.py [PIPELINE] [--num_samples 1000] [--settings 20:-5 20:-3.5 50:-5]

On the capped cosine schedule sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) is about 20,000 at t = 999,
so a chain uniform in lambda_t = log(alpha_t / sigma_t) = -log(sigma_t) over the whole range
(diffusers' `use_lu_lambdas`) spends about half its steps above sigma = 10, where x_0_hat is bounded
and little happens. Each setting "n:cap" builds the chain

    t = 999, then n - 1 steps uniform in lambda from `cap` up to lambda(0), each rounded to the nearest
    integer timestep (repeats dropped, so a chain can come out a step or two shorter than n),

and samples it with `pipe(timesteps=chain)`; the scores are the project's offline Frechet distance
(our classifier's features, NOT an Inception FID; N, seed and x_T as in `evaluate`). Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def capped_logsnr_chain(alphas_cumprod, num_steps: int, lambda_cap: float) -> list[int]:
    """t = T - 1, then num_steps - 1 timesteps nearest to lambda values uniform in [lambda_cap, lambda(0)]."""
    alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
    lambdas = 0.5 * np.log(alphas_cumprod / (1 - alphas_cumprod))  # decreasing in t
    if not lambdas[-1] < lambda_cap < lambdas[0]:
        raise ValueError(f"lambda_cap must lie in ({lambdas[-1]:.2f}, {lambdas[0]:.2f}), got {lambda_cap}")
    targets = np.linspace(lambda_cap, lambdas[0], num_steps - 1)
    steps = {int(np.argmin(np.abs(lambdas - target))) for target in targets}
    return sorted(steps | {len(lambdas) - 1}, reverse=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", nargs="?", default="pretrained/ddpm-fashion-mnist")
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--settings", nargs="+", default=["20:-5", "20:-3.5", "50:-5"], help="n:cap pairs")
    args = parser.parse_args(argv)

    from diffusers import DPMSolverMultistepScheduler

    from annotated_pipeline.evaluation.evaluate import evaluate
    from annotated_pipeline.pipelines.pipeline import AnnotatedDDPMPipeline
    from sampler_settings import _WithCallArguments

    pipeline = AnnotatedDDPMPipeline.from_pretrained(args.pipeline)
    pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config, use_lu_lambdas=False)
    print("| steps asked | cap | chain length | first / last timesteps | Frechet distance | smallest class share |")
    print("|---|---|---|---|---|---|")
    for setting in args.settings:
        num_steps, cap = int(setting.split(":")[0]), float(setting.split(":")[1])
        chain = capped_logsnr_chain(pipeline.scheduler.alphas_cumprod, num_steps, cap)
        report = evaluate(_WithCallArguments(pipeline, timesteps=chain), num_samples=args.num_samples,
                          scheduler="default", num_inference_steps=len(chain))
        print(f"| {num_steps} | {cap:g} | {len(chain)} | {chain[:4]} ... {chain[-4:]} | {report['frechet_distance']:.2f} | "
              f"{report['class_coverage']['min_share']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
