"""What a DDPM scheduler configuration may be, checked before any table is built.

scheduling_annotated_ddpm.py reads like the paper; the rules live here, so that a bad value is one
ValueError that says what was wrong and what is allowed. The allowed values of each option are defined
once, below, and the scheduler's signature, the training command's choices and these checks use them.
Like the scheduler, this file is bundled into saved folders: it imports only torch, numpy, the
standard library and `from .schedules`.
"""

import math
import warnings
from typing import Literal, get_args

import numpy as np
import torch

from .schedules import USES_BETA_RANGE, canonical_schedule_name

PredictionType = Literal["epsilon", "sample", "v_prediction"]
PREDICTION_TYPES = get_args(PredictionType)
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log")
TimestepSpacing = Literal["linspace", "leading", "trailing"]
TIMESTEP_SPACINGS = get_args(TimestepSpacing)

# Above this sqrt(alpha_bar_T), the first sampling step (pure noise) is far from anything seen in training.
TERMINAL_SIGNAL_WARN_LEVEL = 0.05
# T far above any schedule in use (Ho et al.: 1,000), so that a config asking for 10^8 steps is refused
# as a config instead of allocating gigabytes of betas and sampling for hours.
MAX_TRAIN_TIMESTEPS = 100_000


def check_scheduler_config(config) -> str:
    """Raise a ValueError for any value of `config` (an AnnotatedDDPMScheduler config) the scheduler
    cannot use; return the canonical name of its beta schedule (diffusers' spelling)."""
    T = config.num_train_timesteps
    if not isinstance(T, (int, np.integer)) or isinstance(T, bool) or T < 1:
        raise ValueError(f"num_train_timesteps must be an integer >= 1, got {T!r}.")
    if T > MAX_TRAIN_TIMESTEPS:
        raise ValueError(f"num_train_timesteps must be at most {MAX_TRAIN_TIMESTEPS}, got {T!r}.")
    schedule = canonical_schedule_name(config.beta_schedule)  # raises on unknown names
    _check_choice("prediction_type", config.prediction_type, PREDICTION_TYPES)
    _check_choice("variance_type", config.variance_type, VARIANCE_TYPES)
    _check_choice("timestep_spacing", config.timestep_spacing, TIMESTEP_SPACINGS)
    steps_offset = config.steps_offset
    if not isinstance(steps_offset, (int, np.integer)) or isinstance(steps_offset, bool) or steps_offset < 0:
        raise ValueError(f"steps_offset must be an integer >= 0, got {steps_offset!r}.")
    for name in ("clip_sample_range", "sample_max_value"):
        value = config[name]
        if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    if not 0 < config.dynamic_thresholding_ratio <= 1:
        raise ValueError(f"dynamic_thresholding_ratio must be in (0, 1], got {config.dynamic_thresholding_ratio}.")
    if config.trained_betas is not None:
        _check_trained_betas(config.trained_betas, T)
    elif schedule in USES_BETA_RANGE and not 0 < config.beta_start <= config.beta_end < 1:
        raise ValueError(
            f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
            f"got beta_start={config.beta_start}, beta_end={config.beta_end}."
        )
    return schedule


def _check_trained_betas(trained_betas, T: int) -> None:
    betas = torch.as_tensor(np.asarray(trained_betas, dtype=np.float64), dtype=torch.float32).flatten()
    if betas.numel() != T:
        raise ValueError(f"trained_betas has {betas.numel()} values; it needs num_train_timesteps = {T}.")
    if not bool(((betas > 0) & (betas <= 1)).all()):
        raise ValueError("trained_betas must all lie in (0, 1].")
    if bool((betas[:-1] >= 1).any()):
        # beta_t = 1 destroys all signal: alpha_bar is 0 from t on, and eq. (7) divides by it.
        raise ValueError("trained_betas may equal 1 only at the last step (zero terminal SNR); earlier betas must be < 1.")


def check_betas(betas: torch.Tensor, schedule: str) -> None:
    """Refuse betas whose alpha_bar_t = prod_{s <= t} (1 - beta_s) reaches 0 (in float32) before t = T - 1.

    Sampling divides by sqrt(alpha_bar_t) to predict x_0 (Ho et al. 2020, eq. (15)),
    x_0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_bar_t), so an alpha_bar_t of 0
    at any step but the last (where zero terminal SNR puts it on purpose) can only give NaN. Large
    betas do this: beta_start=0.5, beta_end=0.9 with T = 1000 underflow by t ~ 100.
    """
    alphas_cumprod = torch.cumprod(1.0 - betas.to(torch.float32), dim=0)
    zero = torch.nonzero(alphas_cumprod[:-1] <= 0)
    if len(zero):
        t = int(zero[0])
        raise ValueError(
            f"This schedule (beta_schedule={schedule!r}, T = {len(betas)}, betas {float(betas[0]):.3g} .. "
            f"{float(betas[-1]):.3g}) destroys all signal by t = {t}: alpha_bar_t = prod(1 - beta_s) underflows to 0 "
            "there, and predicting x_0 divides by sqrt(alpha_bar_t), so sampling could only give NaN. Use smaller "
            "betas (Ho et al. 2020: 1e-4 .. 0.02 for T = 1000) or beta_schedule='squaredcos_cap_v2'."
        )


def warn_if_signal_remains(sqrt_alpha_bar_T, schedule: str, T: int) -> float:
    """Warn when x_T still holds a visible part of x_0 (sampling starts from pure noise); return sqrt(alpha_bar_T)."""
    level = float(sqrt_alpha_bar_T)
    if level > TERMINAL_SIGNAL_WARN_LEVEL:
        warnings.warn(
            f"This schedule leaves sqrt(alpha_bar_T) = {level:.3f} of the signal at the "
            f"last step (T = {T}, beta_schedule = {schedule!r}), but sampling starts from pure noise. Use "
            "beta_schedule='squaredcos_cap_v2' (cosine), scale the betas by 1000/T (Ho et al.'s linear schedule "
            f"becomes beta_start={1e-4 * 1000 / T:.3g}, beta_end={0.02 * 1000 / T:.3g}), or set "
            "rescale_betas_zero_snr=True.",
            UserWarning,
            stacklevel=4,
        )
    return level


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}; allowed: {', '.join(allowed)}.")
