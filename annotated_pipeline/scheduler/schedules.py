r"""Noise schedules: the variances beta_1 .. beta_T of the forward process.

The forward process of a DDPM (Ho et al. 2020, eq. 2) adds a little Gaussian noise at each step:

$$q(x_t \mid x_{t-1}) = \mathcal{N}\big(x_t;\ \sqrt{1 - \beta_t}\, x_{t-1},\ \beta_t I\big), \qquad t = 1, \dots, T$$

Everything else follows from the betas. With $\alpha_t = 1 - \beta_t$ and their running product
$\bar\alpha_t = \prod_{s \le t} \alpha_s$ (`alphas_cumprod` in code), a noisy sample can be drawn in
one shot from the clean one (Ho et al. 2020, eq. 4):

$$q(x_t \mid x_0) = \mathcal{N}\big(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big)$$

so $\sqrt{\bar\alpha_t}$ is how much signal is left at step $t$, and $\sqrt{\bar\alpha_T}$ is the signal the model
still sees at the very start of sampling, where it is handed pure noise. A good schedule drives
$\bar\alpha_T$ to (almost) zero and does not destroy the signal faster than it has to.

Code indexes steps from 0, so `betas[i]` is $\beta_{i+1}$; each function returns a float32 tensor of
length T. Names are diffusers' config names, so a config written here loads in diffusers and back.
"""

import math

import torch

# Extra names accepted for a schedule, mapped to the name stored in the config (diffusers' name).
SCHEDULE_ALIASES = {
    "cosine": "squaredcos_cap_v2",
    "quadratic": "scaled_linear",
}


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    r"""Linear schedule (Ho et al. 2020, sec. 4): beta_t rises linearly from beta_start to beta_end.

    $$\beta_t = \beta_\text{start} + \frac{t - 1}{T - 1} (\beta_\text{end} - \beta_\text{start})$$

    Ho et al. use beta_start = 1e-4, beta_end = 0.02 with T = 1000. These constants are tuned for
    T = 1000: with fewer steps the same range leaves signal at t = T (see `terminal_signal_level`).
    """
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)


def scaled_linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    r"""Scaled-linear schedule (Rombach et al. 2022, latent diffusion): linear in sqrt(beta).

    $$\beta_t = \Big(\sqrt{\beta_\text{start}} + \frac{t - 1}{T - 1} \big(\sqrt{\beta_\text{end}} - \sqrt{\beta_\text{start}}\big)\Big)^2$$

    This is exactly the "quadratic" schedule of The Annotated Diffusion Model blog
    (linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2): the two names are the same schedule, and
    "quadratic" is accepted as an alias.
    """
    sqrt_betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32)
    return sqrt_betas**2


def cosine_betas(num_train_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    r"""Cosine schedule (Nichol & Dhariwal 2021, eq. 17), diffusers' "squaredcos_cap_v2".

    The schedule is defined through alpha_bar rather than beta:

    $$\bar\alpha_t = \frac{f(t)}{f(0)}, \qquad f(t) = \cos^2\Big(\frac{t / T + s}{1 + s} \cdot \frac{\pi}{2}\Big), \qquad s = 0.008$$

    $$\beta_t = 1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}}, \quad \text{clipped to at most } \beta_\text{max} = 0.999$$

    alpha_bar falls like a cosine: slowly at both ends, linearly in the middle, and f(T) = 0 exactly.
    The clip stops beta_T = 1 (a singularity at the very end of the chain); it touches only the last
    step(s). The small offset s keeps beta_1 from being too small near t = 0. Computed in float64 and
    stored as float32.
    """
    t = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - f[1:] / f[:-1]  # 1 - alpha_bar_t / alpha_bar_{t-1}; f(0) cancels in the ratio
    return betas.clamp(max=max_beta).to(torch.float32)


def sigmoid_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    r"""Sigmoid schedule (Xu et al. 2022, GeoDiff; also in The Annotated Diffusion Model blog).

    $$\beta_t = \sigma(u_t)\, (\beta_\text{end} - \beta_\text{start}) + \beta_\text{start}, \qquad u = \mathrm{linspace}(-6, 6, T)$$

    Flat near beta_start and beta_end, with a smooth rise in the middle of the chain.
    """
    u = torch.linspace(-6, 6, num_train_timesteps, dtype=torch.float32)
    return torch.sigmoid(u) * (beta_end - beta_start) + beta_start


BETA_SCHEDULES = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "squaredcos_cap_v2": lambda T, beta_start, beta_end: cosine_betas(T),
    "sigmoid": sigmoid_betas,
}

# Schedules whose shape depends on beta_start / beta_end (the cosine one does not).
USES_BETA_RANGE = {"linear", "scaled_linear", "sigmoid"}

ALLOWED_SCHEDULES = sorted(set(BETA_SCHEDULES) | set(SCHEDULE_ALIASES))


def canonical_schedule_name(name: str) -> str:
    """Map a schedule name or alias to diffusers' name; unknown names raise ValueError."""
    canonical = SCHEDULE_ALIASES.get(name, name)
    if canonical not in BETA_SCHEDULES:
        raise ValueError(f"Unknown beta_schedule {name!r}; allowed: {', '.join(ALLOWED_SCHEDULES)}.")
    return canonical


def make_betas(name: str, num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """The betas of schedule `name` (a name in ALLOWED_SCHEDULES) over T = num_train_timesteps steps."""
    return BETA_SCHEDULES[canonical_schedule_name(name)](num_train_timesteps, beta_start, beta_end)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    r"""Rescale betas so that the last step has zero signal (Lin et al. 2023, Algorithm 1).

    Most schedules leave a little signal at $t = T$ ($\sqrt{\bar\alpha_T} > 0$), yet sampling starts from
    pure noise, so the model is never trained on what it is given first. Lin et al. shift and scale
    $\sqrt{\bar\alpha}$ so that it keeps its first value and ends exactly at zero:

    $$\big(\sqrt{\bar\alpha_t}\big)' = \big(\sqrt{\bar\alpha_t} - \sqrt{\bar\alpha_T}\big) \frac{\sqrt{\bar\alpha_1}}{\sqrt{\bar\alpha_1} - \sqrt{\bar\alpha_T}}$$

    then recover the betas: $\alpha_t = \bar\alpha_t / \bar\alpha_{t-1}$ ($\alpha_1 = \bar\alpha_1$), $\beta_t = 1 - \alpha_t$.
    The result has beta_T = 1, so a model predicting eps cannot recover x_0 at t = T; use
    prediction_type "v_prediction" (or "sample") with it, as Lin et al. do.
    """
    sqrt_alpha_bar = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = sqrt_alpha_bar[0].clone(), sqrt_alpha_bar[-1].clone()
    sqrt_alpha_bar = (sqrt_alpha_bar - last) * (first / (first - last))
    alpha_bar = sqrt_alpha_bar**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas
