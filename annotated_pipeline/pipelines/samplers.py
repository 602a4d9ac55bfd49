"""The samplers a saved pipeline can be drawn with, by name: the one choice that the sample, evaluate,
train (its sample grids) and visualisation commands share.

    default     the pipeline's own scheduler, as its folder saved it (a training run's: AnnotatedDDPMScheduler,
                Ho et al. 2020, Algorithm 2; the shipped model's: DPM-Solver++, its recommended sampler)
    ddim        Song et al. 2021, eta = 0 unless asked: a deterministic chain of any length
    dpmsolver   DPM-Solver++(2M) (Lu et al. 2022), steps uniform in log-SNR: 20 steps are enough
    ddpm        diffusers' DDPMScheduler: ancestral sampling, as Algorithm 2
"""

import contextlib
from typing import Literal, get_args

Sampler = Literal["default", "ddim", "dpmsolver", "ddpm"]
SCHEDULERS = get_args(Sampler)


def set_scheduler(pipeline, name: Sampler):
    """Swap the pipeline's sampler for one built from the same config (same betas, same timesteps).

    "default" keeps the pipeline's own scheduler; "ddim" (Song et al. 2021, eta = 0), "dpmsolver"
    (Lu et al. 2022, DPM-Solver++(2M) multistep) and "ddpm" (Ho et al. 2020, ancestral) are diffusers'.

    DPM-Solver++ places its steps uniformly in lambda_t = log(alpha_t / sigma_t), half the log-SNR
    (`use_lu_lambdas`, the spacing the DPM-Solver paper recommends), unless the current config already
    says otherwise. On the cosine schedule lambda runs from about -9.9 at t = 999 (-6.5 at t = 998) to about +5 at
    t = 0; steps uniform in t spend few of their number on either end, and with them the same 50 steps score
    worse (benchmarks/RESULTS.md, "Spacing DPM-Solver++'s steps in log-SNR").
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    classes = {"ddim": DDIMScheduler, "dpmsolver": DPMSolverMultistepScheduler, "ddpm": DDPMScheduler}
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")
    if name == "dpmsolver":
        config = pipeline.scheduler.config
        pipeline.scheduler = DPMSolverMultistepScheduler.from_config(
            config, use_lu_lambdas=config.get("use_lu_lambdas", True))
    elif name != "default":
        pipeline.scheduler = classes[name].from_config(pipeline.scheduler.config)
    return pipeline


@contextlib.contextmanager
def using_sampler(pipeline, name: Sampler):
    """Inside the block `pipeline` samples with `name` (as `set_scheduler` builds it); its own scheduler
    comes back afterwards, also when the block raises. The one way a command swaps a sampler for a call:

        with using_sampler(pipe, "dpmsolver"):
            images = pipe(batch_size=16).images
    """
    own = pipeline.scheduler
    set_scheduler(pipeline, name)
    try:
        yield pipeline
    finally:
        pipeline.scheduler = own
