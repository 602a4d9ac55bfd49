"""What the network's output means at one step: the clean image it predicts, and guidance.

Imported by pipeline.py (and bundled with it into saved folders): torch and the standard library only.
"""

import inspect


def classifier_free_guidance(conditional, unconditional, guidance_scale):
    r"""Classifier-free guidance, Ho & Salimans 2022, eq. (6), written with $s = 1 + w$:

    $$\tilde\epsilon(x_t, t, y) = \epsilon(x_t, t, \varnothing) + s\, \big(\epsilon(x_t, t, y) - \epsilon(x_t, t, \varnothing)\big)$$

    The difference $\epsilon(x_t, t, y) - \epsilon(x_t, t, \varnothing)$ is proportional to $-\nabla \log p(y \mid x_t)$ of an
    implicit classifier, so $s > 1$ samples from $p(x_t)\, p(y \mid x_t)^s$: images more typical of their
    class, less varied. The combination is linear in the network's output, so it applies the same
    way to epsilon, v or x_0 predictions.
    """
    return unconditional + guidance_scale * (conditional - unconditional)


class NonFiniteSampleError(FloatingPointError):
    """Sampling produced NaN or inf: the weights or the scheduler's settings are broken. Raised instead
    of returning images in which NaN has silently become black."""


def predicted_original_sample(scheduler, model_output, timestep, sample):
    """x_0_hat, the clean image the model predicts from x_t (Ho et al. 2020, eq. (15) for eps):

        epsilon:       x_0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)
        sample:        x_0_hat = the model output
        v_prediction:  x_0_hat = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v_theta      (Salimans & Ho 2022)

    then bounded as the scheduler itself bounds it (its own `thresholding`, else `clip_sample`; a key merely carried
    over in the config from another scheduler is not applied). For schedulers whose `step` does not return it
    (DPM-Solver++, PNDM): the model's own estimate at the timestep t it was given. That is DPM-Solver++'s data
    prediction (`convert_model_output`) when its chain's timesteps are exact; with log-SNR steps
    (`use_lu_lambdas`) the solver uses its chain's unrounded sigma, slightly off alpha_bar at the rounded t.
    Needs a scheduler whose latents are x_t itself (init_noise_sigma = 1), not Euler's scaled ones.
    """
    config = scheduler.config
    if float(scheduler.init_noise_sigma) != 1.0:
        raise ValueError(f"{type(scheduler).__name__} scales its latents (init_noise_sigma = {float(scheduler.init_noise_sigma):g}), "
                         "so x_0_hat cannot be read from alpha_bar_t; its step output should carry pred_original_sample.")
    alpha_bar_t = scheduler.alphas_cumprod[int(timestep)].to(device=sample.device, dtype=sample.dtype)
    if config.prediction_type == "epsilon":
        x0 = (sample - (1 - alpha_bar_t).sqrt() * model_output) / alpha_bar_t.sqrt()
    elif config.prediction_type == "sample":
        x0 = model_output
    elif config.prediction_type == "v_prediction":
        x0 = alpha_bar_t.sqrt() * sample - (1 - alpha_bar_t).sqrt() * model_output
    else:
        raise ValueError(f"unknown prediction_type {config.prediction_type!r}; allowed: epsilon, sample, v_prediction")
    own = inspect.signature(type(scheduler).__init__).parameters  # a bound the scheduler applies itself, not a carried key
    if "thresholding" in own and config.thresholding:
        return scheduler._threshold_sample(x0)
    if "clip_sample" in own and config.clip_sample:
        return x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    return x0
