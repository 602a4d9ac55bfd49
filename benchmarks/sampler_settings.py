"""Which settings make a 50-step (or 20-step) sampler good? One trained pipeline, several sampler settings.

    python benchmarks/sampler_settings.py PIPELINE_PATH [--num_samples 500] [--only NAME ...]

Every setting samples N images from the same pipeline (same seed, so the same x_T) and is scored with the
project's offline Frechet distance (annotated_pipeline.evaluation; our classifier's features, NOT an
Inception FID, with the real-vs-real floor at the same N). The settings differ in three things:

spacing   which timesteps a 50-step chain visits. "leading" (diffusers' DDPMScheduler default) is
          k * (T // n): 980, 960, ..., 0, so it starts from pure noise as if it were x_980. "trailing"
          starts at t = T - 1 = 999 (Lin et al. 2023, Table 2).
bound     whether x_0_hat is clipped to [-1, 1]. At t = 999 the cosine schedule has alphas_cumprod ~ 2.4e-9,
          and x_0_hat = (x_t - sqrt(1 - alphas_cumprod) eps) / sqrt(alphas_cumprod) multiplies the error
          of eps by ~20,000: without a bound, a trailing chain fails. DDPM and DDIM read `clip_sample`;
          DPM-Solver++ reads only `thresholding` (with sample_max_value 1 it is the same clip).
logsnr    for DPM-Solver++: steps uniform in lambda_t = log(alpha_t / sigma_t) (`use_lu_lambdas`, the
          project's default since it beat uniform-in-t steps on the reference model) instead of
          the spacing above.
eps       for DDIM with a bound: keep the model's eps in the direction term (diffusers' DDIMPipeline
          default, use_clipped_model_output=False) or recompute eps from the clipped x_0_hat (True; our
          pipeline's default when the scheduler bounds x_0_hat).

Not a test; it takes ~2.5 minutes per 50-step setting at N = 500 on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# name: (scheduler, config overrides, steps, eta, use_clipped_model_output)
_LEADING_CLIP = dict(timestep_spacing="leading", clip_sample=True, thresholding=False)
_TRAILING_CLIP = dict(timestep_spacing="trailing", clip_sample=True, thresholding=False)
SETTINGS = {
    "ddim-leading-clip": ("ddim", _LEADING_CLIP, 50, 0.0, False),
    "ddim-leading-noclip": ("ddim", dict(_LEADING_CLIP, clip_sample=False), 50, 0.0, False),
    "ddim-leading-clip-eps-from-clipped": ("ddim", _LEADING_CLIP, 50, 0.0, True),
    "ddim-trailing-clip": ("ddim", _TRAILING_CLIP, 50, 0.0, False),
    "ddim-trailing-noclip": ("ddim", dict(_TRAILING_CLIP, clip_sample=False), 50, 0.0, False),
    "ddim-trailing-clip-eps-from-clipped": ("ddim", _TRAILING_CLIP, 50, 0.0, True),
    "ddim-leading-noclip-eta1": ("ddim", dict(_LEADING_CLIP, clip_sample=False), 50, 1.0, False),
    "ddim-trailing-clip-eta1": ("ddim", _TRAILING_CLIP, 50, 1.0, False),
    "ddim-trailing-clip-eps-from-clipped-eta1": ("ddim", _TRAILING_CLIP, 50, 1.0, True),
    "dpmsolver-leading-50": ("dpmsolver", dict(timestep_spacing="leading", thresholding=False, use_lu_lambdas=False),
                             50, 0.0, None),
    "dpmsolver-trailing-bound-20": ("dpmsolver", dict(timestep_spacing="trailing", thresholding=True,
                                                      sample_max_value=1.0, use_lu_lambdas=False), 20, 0.0, None),
    "dpmsolver-trailing-bound-50": ("dpmsolver", dict(timestep_spacing="trailing", thresholding=True,
                                                      sample_max_value=1.0, use_lu_lambdas=False), 50, 0.0, None),
    "dpmsolver-logsnr-bound-20": ("dpmsolver", dict(thresholding=True, sample_max_value=1.0, use_lu_lambdas=True),
                                  20, 0.0, None),
    "dpmsolver-logsnr-bound-50": ("dpmsolver", dict(thresholding=True, sample_max_value=1.0, use_lu_lambdas=True),
                                  50, 0.0, None),
    # other solvers and variants, each with the saved config (trailing, bounded x_0_hat) and one change
    "dpmsolver3-trailing-bound-50": ("dpmsolver", dict(solver_order=3, use_lu_lambdas=False), 50, 0.0, None),
    "dpmsolver-linspace-bound-50": ("dpmsolver", dict(timestep_spacing="linspace", use_lu_lambdas=False), 50, 0.0, None),
    "sde-dpmsolver-trailing-bound-50": ("dpmsolver", dict(algorithm_type="sde-dpmsolver++", use_lu_lambdas=False),
                                        50, 0.0, None),
    "sde-dpmsolver-logsnr-bound-50": ("dpmsolver", dict(algorithm_type="sde-dpmsolver++", use_lu_lambdas=True),
                                      50, 0.0, None),
    "unipc-trailing-bound-50": ("unipc", {}, 50, 0.0, None),
    "deis-trailing-bound-50": ("deis", {}, 50, 0.0, None),
    "ddim-trailing-clip-eps-from-clipped-eta0.3": ("ddim", _TRAILING_CLIP, 50, 0.3, True),
}


# Samplers the project does not offer by name (annotated_pipeline.pipelines.samplers); each is built from the saved config.
OTHER_SCHEDULERS = ("unipc", "deis")


def run_setting(pipeline, name, num_samples, batch_size=250, seed=0, data_root=None, classifier=None):
    """Evaluate `pipeline` (an AnnotatedDDPMPipeline) with one named setting; returns evaluate's report.

    The sampler is the project's (`annotated_pipeline.pipelines.samplers.set_scheduler`) for "ddim" and "dpmsolver", with
    the setting's config changes on top; evaluate() keeps them (it rebuilds the sampler from the current config).
    use_clipped_model_output reaches the pipeline's calls through evaluate's `pipeline_kwargs`."""
    from diffusers import DEISMultistepScheduler, UniPCMultistepScheduler

    from annotated_pipeline.evaluation.evaluate import evaluate
    from annotated_pipeline.evaluation.reference import DEFAULT_ROOT
    from annotated_pipeline.pipelines.samplers import SCHEDULERS, set_scheduler

    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; choose from {sorted(SETTINGS)}")
    kind, overrides, steps, eta, clipped_eps = SETTINGS[name]
    original = pipeline.scheduler
    try:
        if kind in SCHEDULERS:
            set_scheduler(pipeline, kind)
        else:
            other = {"unipc": UniPCMultistepScheduler, "deis": DEISMultistepScheduler}[kind]
            pipeline.scheduler = other.from_config(original.config)
        pipeline.scheduler = type(pipeline.scheduler).from_config(pipeline.scheduler.config, **overrides)
        return evaluate(pipeline, num_samples=num_samples, scheduler=kind if kind in SCHEDULERS else "default",
                        num_inference_steps=steps, batch_size=batch_size, seed=seed, eta=eta,
                        data_root=data_root or DEFAULT_ROOT, classifier=classifier,
                        pipeline_kwargs=None if clipped_eps is None else {"use_clipped_model_output": clipped_eps})
    finally:
        pipeline.scheduler = original


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="a saved AnnotatedDDPMPipeline folder")
    parser.add_argument("--num_samples", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_root", default=None, help="official Fashion-MNIST files (default: the Debian path)")
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), default=None, help="run these settings only")
    parser.add_argument("--json", default=None, help="also write the reports to this JSON file")
    args = parser.parse_args(argv)

    from annotated_pipeline.pipelines.pipeline import AnnotatedDDPMPipeline

    pipeline = AnnotatedDDPMPipeline.from_pretrained(args.pipeline)
    reports = {}
    print("| setting | steps | N | Frechet distance | floor | smallest class share | s / sample |")
    print("|---|---|---|---|---|---|---|")
    for name in args.only or SETTINGS:
        report = run_setting(pipeline, name, args.num_samples, args.batch_size, args.seed, args.data_root)
        reports[name] = report
        print(f"| {name} | {report['num_inference_steps']} | {report['num_samples']} | {report['frechet_distance']:.2f} | "
              f"{report['frechet_distance_floor']:.2f} | {report['class_coverage']['min_share']:.3f} | "
              f"{report['seconds_per_sample']:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=2)


if __name__ == "__main__":
    main()
