r"""The training objective of a denoising diffusion model.

Ho et al. 2020 train eps_theta by a reweighted variational bound; the simplified objective they
use in practice is their eq. (14):

$$L_\text{simple}(\theta) = \mathbb{E}_{t, x_0, \epsilon} \Big[ \big\lVert \epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,\ t\big) \big\rVert^2 \Big]$$

with $t \sim \mathrm{Uniform}\{1, \dots, T\}$, $\epsilon \sim \mathcal{N}(0, I)$, and $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$ the
cumulative product of the schedule (`alphas_cumprod` in the code). The argument of $\epsilon_\theta$ is a draw
of $x_t$ from $q(x_t \mid x_0)$, Ho et al. eq. (4), written out by `q_sample`.

Two things may change, and both are options here:

* the distance: the squared error of eq. (14) ("l2"), the absolute error ("l1"), or the Huber /
  smooth-L1 loss ("huber", quadratic below 1 and linear above; the annotated-diffusion blog's
  default, and ours), which is less sensitive to the rare large errors at small t;
* the target, following the scheduler's `prediction_type`: the noise eps ("epsilon", eq. 14), the
  clean sample $x_0$ ("sample"), or the velocity $v = \sqrt{\bar\alpha_t}\, \epsilon - \sqrt{1 - \bar\alpha_t}\, x_0$
  ("v_prediction", Salimans & Ho 2022, sec. 4).

A third is optional: the weight of each timestep. Eq. (14) weights every t alike. Min-SNR-gamma
(Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", sec. 3.4) caps the
weight of the nearly clean timesteps, whose signal-to-noise ratio $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$
is large, so that they stop dominating the gradient. In terms of the $x_0$ error their weight is
$\min(\mathrm{SNR}(t), \gamma)$; each target turns that into its own factor (`min_snr_weights`).
"""

from functools import lru_cache

import torch
import torch.nn.functional as F

from .scheduler import PREDICTION_TYPES, AnnotatedDDPMScheduler  # noqa: F401 (PREDICTION_TYPES: the targets)

LOSS_TYPES = {"l1": F.l1_loss, "l2": F.mse_loss, "huber": F.smooth_l1_loss}


@lru_cache(maxsize=1)
def _default_scheduler():
    # Built once: the schedule tensors are the same for every call.
    return AnnotatedDDPMScheduler()


def q_sample(x_start, t, noise=None, scheduler=None):
    r"""Draw x_t ~ q(x_t | x_0), Ho et al. 2020, eq. (4):

    $$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \qquad \epsilon \sim \mathcal{N}(0, I)$$

    `t` holds one timestep per image (shape (B,)); `noise` defaults to a fresh standard normal
    draw. The schedule comes from `scheduler` (default: `AnnotatedDDPMScheduler()`).
    """
    scheduler = scheduler if scheduler is not None else _default_scheduler()
    if noise is None:
        noise = torch.randn_like(x_start)
    return scheduler.add_noise(x_start, noise, t)


def _prediction(output):
    """A diffusers model returns an output object with `.sample` (or a tuple); take the tensor."""
    if hasattr(output, "sample"):
        return output.sample
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def min_snr_weights(scheduler, t, snr_gamma):
    """Per-sample loss weights of min-SNR-gamma, Hang et al. 2023, eq. (6) and sec. 3.4:

        SNR(t)  = alpha_bar_t / (1 - alpha_bar_t)
        w_x0(t) = min(SNR(t), gamma)                      the weight on || x_0 - x_0_hat ||^2

    An eps error is an x_0 error times sqrt(SNR) (x_0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) /
    sqrt(alpha_bar_t)), and a v error one times sqrt(SNR + 1), so the same weighting of x_0 errors
    reads, per target:

        epsilon:       min(SNR, gamma) / SNR
        sample:        min(SNR, gamma)
        v_prediction:  min(SNR, gamma) / (SNR + 1)

    Returns a float tensor of shape (B,), on the device of `t`. The epsilon weight is computed as
    min(gamma / SNR, 1), the same number, which stays 1 where SNR = 0 (the last timestep of a
    zero-terminal-SNR schedule) instead of 0 / 0.
    """
    alphas_cumprod = scheduler.alphas_cumprod.to(device=t.device, dtype=torch.float32)[t]
    snr = alphas_cumprod / (1.0 - alphas_cumprod)  # SNR(t) = alpha_bar_t / (1 - alpha_bar_t)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return torch.clamp(snr_gamma / snr, max=1.0)
    capped = torch.clamp(snr, max=snr_gamma)
    return capped if prediction_type == "sample" else capped / (snr + 1.0)


def p_losses(model, x_start, t, noise=None, loss_type="huber", scheduler=None, class_labels=None, snr_gamma=None):
    """The denoising loss at timesteps `t`: eq. (14) of Ho et al. 2020 with a choice of distance
    and target (see the module docstring).

        x_t    = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps                    (eq. 4)
        loss   = distance( target, model(x_t, t) ),
        target = eps | x_0 | sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0     (by prediction_type)

    With `snr_gamma`, the distance of each image is weighted by `min_snr_weights` before the mean.

    Args:
        model: the network; called as `model(x_t, t)` or `model(x_t, t, class_labels=...)`.
        x_start: clean images x_0, shape (B, C, H, W), scaled to [-1, 1].
        t: integer timesteps, shape (B,).
        noise: eps; drawn from N(0, I) when None.
        loss_type: "l1", "l2" or "huber".
        scheduler: supplies alpha_bar_t and `prediction_type`; `AnnotatedDDPMScheduler()` when None.
        class_labels: passed to the model for class-conditional training.
        snr_gamma: the gamma of min-SNR-gamma weighting (Hang et al. use 5); None weights all t alike.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown loss_type {loss_type!r}; allowed: {', '.join(LOSS_TYPES)}.")
    if snr_gamma is not None and not snr_gamma > 0:
        raise ValueError(f"snr_gamma must be > 0 (Hang et al. use 5), or None for no weighting; got {snr_gamma}.")
    scheduler = scheduler if scheduler is not None else _default_scheduler()
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"Unknown prediction_type {prediction_type!r}; allowed: {', '.join(PREDICTION_TYPES)}.")
    if noise is None:
        noise = torch.randn_like(x_start)

    x_noisy = q_sample(x_start, t, noise=noise, scheduler=scheduler)  # x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
    if class_labels is None:
        predicted = _prediction(model(x_noisy, t))  # eps_theta(x_t, t)
    else:
        predicted = _prediction(model(x_noisy, t, class_labels=class_labels))  # eps_theta(x_t, t, y)

    if prediction_type == "epsilon":
        target = noise  # eps (eq. 14)
    elif prediction_type == "sample":
        target = x_start  # x_0
    else:
        target = scheduler.get_velocity(x_start, noise, t)  # v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0
    distance = LOSS_TYPES[loss_type]
    if snr_gamma is None:
        return distance(predicted.float(), target.float())  # E || target - prediction ||  (mean over the batch)
    per_image = distance(predicted.float(), target.float(), reduction="none").flatten(1).mean(dim=1)
    return (per_image * min_snr_weights(scheduler, t, snr_gamma)).mean()  # mean_b w(t_b) || target_b - prediction_b ||
