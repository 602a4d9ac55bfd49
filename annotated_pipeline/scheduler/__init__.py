"""The forward process q and the reverse DDPM step: noise schedules and the scheduler.

    schedules.py                  beta_1 .. beta_T (linear, scaled_linear/quadratic, cosine, sigmoid), zero-SNR rescale
    scheduling_annotated_ddpm.py  AnnotatedDDPMScheduler, a diffusers-compatible DDPM scheduler
"""

from .scheduling_annotated_ddpm import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    AnnotatedDDPMScheduler,
    AnnotatedDDPMSchedulerOutput,
)
from .schedules import (
    ALLOWED_SCHEDULES,
    cosine_betas,
    linear_betas,
    make_betas,
    rescale_zero_terminal_snr,
    scaled_linear_betas,
    sigmoid_betas,
)

__all__ = [
    "ALLOWED_SCHEDULES",
    "PREDICTION_TYPES",
    "TIMESTEP_SPACINGS",
    "AnnotatedDDPMScheduler",
    "AnnotatedDDPMSchedulerOutput",
    "cosine_betas",
    "linear_betas",
    "make_betas",
    "rescale_zero_terminal_snr",
    "scaled_linear_betas",
    "sigmoid_betas",
]
