r"""The DDPM scheduler: the forward process q and one step of the reverse process p_theta.

Ho et al. 2020 in five equations ($\alpha_t = 1 - \beta_t$, $\bar\alpha_t = \prod_{s \le t} \alpha_s$; see schedules.py):

Forward, in one shot (eq. 4):

$$q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big)$$

$$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \qquad \epsilon \sim \mathcal{N}(0, I)$$

The model sees $x_t$ and predicts $\epsilon$ (or $x_0$, or $v$); each gives back $x_0$ (eq. 15 for $\epsilon$;
$v = \sqrt{\bar\alpha_t}\, \epsilon - \sqrt{1 - \bar\alpha_t}\, x_0$, Salimans & Ho 2022, sec. 4):

$$x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\, \epsilon}{\sqrt{\bar\alpha_t}}, \qquad x_0 = \sqrt{\bar\alpha_t}\, x_t - \sqrt{1 - \bar\alpha_t}\, v$$

The forward posterior is Gaussian with a closed form (eq. 6, 7):

$$q(x_{t-1} \mid x_t, x_0) = \mathcal{N}(\tilde\mu_t, \tilde\beta_t I)$$

$$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\, \beta_t}{1 - \bar\alpha_t}\, x_0 + \frac{\sqrt{\alpha_t}\, (1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t$$

$$\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t$$

The reverse step plugs the predicted $\hat x_0$ into it (Algorithm 2, written with $x_0$), with no noise
at the last step:

$$x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sigma_t z, \qquad z \sim \mathcal{N}(0, I)$$

and $\sigma_t^2 = \tilde\beta_t$ ("fixed_small") or $\beta_t$ ("fixed_large"); both are in Ho et al. sec. 3.2.

Sampling with fewer steps (Nichol & Dhariwal 2021, sec. 4) keeps a subsequence of the training steps;
between two kept steps $t > t'$ the single-step beta becomes $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t'}$
and every formula above holds with $t - 1$ replaced by $t'$. With all T steps this is the plain chain.

The class mirrors diffusers' DDPMScheduler API and config (same keys, meanings and defaults), so it
can be swapped with any diffusers scheduler through `from_config`. This file must stay copyable into a
saved pipeline: it imports only torch, numpy, diffusers, the standard library and its siblings `.schedules` and `.config`.
"""

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .config import (MAX_TRAIN_TIMESTEPS, PREDICTION_TYPES, TIMESTEP_SPACINGS, VARIANCE_TYPES,  # noqa: F401
                     PredictionType, TimestepSpacing)
from .config import check_betas, check_scheduler_config, warn_if_signal_remains
from .schedules import make_betas, rescale_zero_terminal_snr

@dataclass
class AnnotatedDDPMSchedulerOutput(BaseOutput):
    """Output of `AnnotatedDDPMScheduler.step`.

    prev_sample:          x_{t-1} (x_{t'} when respaced), the input of the next step.
    pred_original_sample: x_0_hat, the model's estimate of the clean sample (after clipping/thresholding).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class AnnotatedDDPMScheduler(SchedulerMixin, ConfigMixin):
    """DDPM sampling and noising (Ho et al. 2020), written from the paper with diffusers' config.

    Config (same keys, meanings and defaults as diffusers' DDPMScheduler):
        num_train_timesteps: T, the length of the forward process.
        beta_start, beta_end: the range of the "linear", "scaled_linear" and "sigmoid" schedules.
        beta_schedule: one of schedules.ALLOWED_SCHEDULES ("cosine" and "quadratic" are stored under
            diffusers' names "squaredcos_cap_v2" and "scaled_linear").
        trained_betas: explicit betas (length T, each in (0, 1), the last may be 1); overrides beta_schedule.
        variance_type: sigma_t^2 of the reverse step, one of VARIANCE_TYPES; None (what a DPM-Solver++ config
            holds, a folder whose sampler was swapped in) is diffusers' default, "fixed_small".
        clip_sample, clip_sample_range: clamp x_0_hat to [-range, range].
        prediction_type: what the model outputs, one of PREDICTION_TYPES.
        thresholding, dynamic_thresholding_ratio, sample_max_value: Imagen's dynamic thresholding of x_0_hat.
        timestep_spacing, steps_offset: how `set_timesteps` picks a subsequence (one of TIMESTEP_SPACINGS).
        rescale_betas_zero_snr: force alpha_bar_T = 0 (Lin et al. 2023).
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        variance_type: str | None = "fixed_small",
        clip_sample: bool = True,
        prediction_type: PredictionType = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: TimestepSpacing = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ):
        T = num_train_timesteps
        if variance_type is None:  # a DPM-Solver++ config's "no learned variance" (a trained folder's sampler)
            variance_type = "fixed_small"  # diffusers' DDPMScheduler default: sigma_t^2 = beta_tilde_t
            self.register_to_config(variance_type=variance_type)
        schedule = check_scheduler_config(self.config)  # scheduler/config.py: every value, before any work
        if schedule != beta_schedule:
            self.register_to_config(beta_schedule=schedule)  # store diffusers' name so diffusers can load it

        # beta_1 .. beta_T: trained ones, or a named schedule (schedules.py)
        if trained_betas is not None:
            betas = torch.as_tensor(np.asarray(trained_betas, dtype=np.float64), dtype=torch.float32).flatten()
        else:
            betas = make_betas(schedule, T, beta_start, beta_end)
        if rescale_betas_zero_snr:
            betas = rescale_zero_terminal_snr(betas)
        check_betas(betas, schedule)

        # The schedule, all float32, indexed by the training step t = 0 .. T-1.
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # alpha_bar_t
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.one = torch.tensor(1.0)
        self.init_noise_sigma = 1.0  # x_T ~ N(0, I)

        self.terminal_signal_level = warn_if_signal_remains(self.sqrt_alphas_cumprod[-1], schedule, T)

        # Default chain: every training step, T-1 down to 0.
        self.num_inference_steps = None
        self.custom_timesteps = False
        self._set_chain(np.arange(T - 1, -1, -1, dtype=np.int64), device=None)

    # ----------------------------------------------------------------------------------------------
    # The chain of sampling steps and the per-step coefficients.

    def _set_chain(self, timesteps: np.ndarray, device) -> None:
        """Store the descending `timesteps` and precompute every coefficient `step` needs, per step t.

        For consecutive kept steps t > t' (t' = -1 after the last one, where alpha_bar_{-1} = 1):
            alpha_t      = alpha_bar_t / alpha_bar_t',   beta_t = 1 - alpha_t    (respaced beta)
            coef_x0      = sqrt(alpha_bar_t') beta_t / (1 - alpha_bar_t)         (eq. 7)
            coef_xt      = sqrt(alpha_t) (1 - alpha_bar_t') / (1 - alpha_bar_t)  (eq. 7)
            beta_tilde_t = (1 - alpha_bar_t') / (1 - alpha_bar_t) * beta_t       (eq. 7)
        Tables have length T and are filled only at kept steps, so `step` is a few lookups.

        Everything is float32 and computed in the same order as diffusers' DDPMScheduler, which makes the two
        agree bit for bit. The order matters at both ends of a chain:
        - alpha_t is the ratio itself, never 1 - beta_t. Where beta_t ~ 1 (the cosine schedule's first step
          from t = T-1, clipped at beta = 0.999 and respaced, has alpha_t ~ 4e-8), 1 - beta_t in float32 keeps
          almost no digits: sqrt(1 - beta_t) put coef_xt 27% off (T = 1000, 7 steps) and prev_sample 1e-4 off.
          The ratio is within 1e-7 (relative) of float64 eq. (7) there (tests/test_scheduler.py).
        - While beta_t ~ 1e-4, 1 - alpha_bar_t / alpha_bar_t' cancels, and the coefficients of the first
          ~50 steps are off by up to ~1e-4 from exact arithmetic, in diffusers as here.
        """
        T = self.config.num_train_timesteps
        self.timesteps = torch.from_numpy(timesteps.copy()).to(device)
        prev = np.append(timesteps[1:], -1)
        self._prev_timestep = {int(t): int(p) for t, p in zip(timesteps, prev)}

        self._move_tables(torch.device("cpu"))  # build on the CPU; moved to the samples' device once, below or in step
        t_idx, prev_idx = torch.from_numpy(timesteps.copy()), torch.from_numpy(prev)
        alpha_bar_t = self.alphas_cumprod[t_idx]
        alpha_bar_prev = torch.where(prev_idx >= 0, self.alphas_cumprod[prev_idx.clamp(min=0)], self.one)
        alpha_t = alpha_bar_t / alpha_bar_prev  # the ratio, not 1 - beta_t (see above)
        beta_t = 1 - alpha_t
        coef_x0 = alpha_bar_prev**0.5 * beta_t / (1 - alpha_bar_t)
        coef_xt = alpha_t**0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
        beta_tilde = ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t).clamp(min=1e-20)  # log-safe at t' = -1

        # sigma_t, the standard deviation of the noise added at step t.
        variance_type = self.config.variance_type
        if variance_type == "fixed_small":  # sigma^2 = beta_tilde_t, the posterior variance (Ho et al. sec. 3.2)
            sigma = beta_tilde**0.5
        elif variance_type == "fixed_small_log":  # the same, through the log (as in Janner et al. 2022's code)
            sigma = torch.exp(0.5 * torch.log(beta_tilde))
        elif variance_type == "fixed_large":  # sigma^2 = beta_t, the upper bound (Ho et al. sec. 3.2)
            sigma = beta_t**0.5
        else:  # "fixed_large_log": log sigma^2 = log beta_t (GLIDE / improved-diffusion), i.e. sigma = exp(0.5 log beta_t).
            # diffusers 0.42.1 DDPMScheduler returns log(beta_t) from _get_variance and then takes its square
            # root, sqrt(log beta_t) of a negative number: every noisy step is NaN. Here it is exp(0.5 log beta_t).
            sigma = torch.exp(0.5 * torch.log(beta_t))

        def table(values):
            full = torch.zeros(T, dtype=torch.float32)
            full[t_idx] = values.to(torch.float32)
            return full

        self.posterior_beta = table(beta_t)
        self.posterior_mean_coef_x0 = table(coef_x0)
        self.posterior_mean_coef_xt = table(coef_xt)
        self.posterior_variance = table(beta_tilde)
        self.posterior_sigma = table(sigma)
        if device is not None:
            self._move_tables(torch.device(device))

    _TABLES = (
        "betas", "alphas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "posterior_beta", "posterior_mean_coef_x0", "posterior_mean_coef_xt", "posterior_variance", "posterior_sigma",
    )  # fmt: skip

    def _move_tables(self, device: torch.device) -> None:
        """Move the schedule tensors to `device` once (not on every step)."""
        if device == getattr(self, "_tables_device", torch.device("cpu")):
            return
        for name in self._TABLES:
            if name in self.__dict__:
                setattr(self, name, getattr(self, name).to(device))
        self._tables_device = device

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Choose the steps the sampler visits, as a descending subsequence of 0 .. T-1.

        Give either `num_inference_steps` = n, spaced by `config.timestep_spacing` (Lin et al. 2023, Table 2),
        or explicit `timesteps` (strictly descending, each in [0, T)).
            "linspace": round(linspace(0, T-1, n)), reversed; includes both t = T-1 and t = 0.
            "leading":  k * (T // n) + steps_offset for k = n-1 .. 0; starts below T-1 when n does not divide T.
            "trailing": round(T - k * T / n) - 1 for k = 0 .. n-1; always starts at t = T-1.
        ("trailing" is computed from k directly: diffusers' np.arange(T, 0, -T/n) returns n + 1 values for
        some n, e.g. T = 1000, n = 61, the last one being t = -1.)
        """
        T = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("Pass exactly one of num_inference_steps or timesteps to set_timesteps.")

        if timesteps is not None:
            chain = np.asarray([int(t) for t in timesteps], dtype=np.int64)
            if chain.ndim != 1 or chain.size == 0:
                raise ValueError("timesteps must be a non-empty list of integers.")
            if np.any(np.diff(chain) >= 0):
                raise ValueError(f"timesteps must be strictly descending, got {chain.tolist()}.")
            if chain[0] >= T or chain[-1] < 0:
                raise ValueError(f"timesteps must lie in [0, num_train_timesteps = {T}), got {chain.tolist()}.")
            self.custom_timesteps = True
            self.num_inference_steps = len(chain)
        else:
            n = int(num_inference_steps)
            if n < 1 or n > T:
                raise ValueError(
                    f"num_inference_steps must be in [1, num_train_timesteps = {T}] (a model trained on T steps can "
                    f"only be sampled on a subsequence of them), got {num_inference_steps}."
                )
            spacing = self.config.timestep_spacing
            if spacing == "linspace":
                chain = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
            elif spacing == "leading":
                chain = (np.arange(n - 1, -1, -1, dtype=np.int64) * (T // n)) + self.config.steps_offset
            else:  # "trailing"
                chain = np.round(T - np.arange(n) * (T / n)).astype(np.int64) - 1
            if chain[0] >= T:
                raise ValueError(
                    f"steps_offset = {self.config.steps_offset} pushes the first timestep to {chain[0]}, past "
                    f"num_train_timesteps - 1 = {T - 1}; lower steps_offset or num_inference_steps."
                )
            self.custom_timesteps = False
            self.num_inference_steps = n
        self._set_chain(np.ascontiguousarray(chain), device)

    def previous_timestep(self, timestep: int | torch.Tensor) -> int | torch.Tensor:
        """The step after `timestep` in the current chain, t'; -1 after the last step. Like diffusers'
        DDPMScheduler, a tensor timestep gives a tensor (same dtype and device), an int an int."""
        t = int(timestep)
        if t not in self._prev_timestep:
            raise ValueError(
                f"timestep {t} is not in the current chain ({len(self.timesteps)} steps from "
                f"{int(self.timesteps[0])} to {int(self.timesteps[-1])}); step only through scheduler.timesteps."
            )
        if isinstance(timestep, torch.Tensor):
            return torch.tensor(self._prev_timestep[t], dtype=timestep.dtype, device=timestep.device)
        return self._prev_timestep[t]

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """DDPM feeds x_t to the model unscaled (kept for API compatibility with other schedulers)."""
        return sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # ----------------------------------------------------------------------------------------------
    # Forward process.

    def _per_sample(self, table: torch.Tensor, timesteps, like: torch.Tensor) -> torch.Tensor:
        """table[timesteps] shaped (batch, 1, 1, ...) to broadcast over `like`, in like's dtype."""
        T = self.config.num_train_timesteps
        timesteps = torch.as_tensor(timesteps, device=like.device).long()
        if timesteps.numel() > 0 and (int(timesteps.min()) < 0 or int(timesteps.max()) >= T):
            raise ValueError(f"timesteps must lie in [0, num_train_timesteps = {T}), got {timesteps.tolist()}.")
        self._move_tables(like.device)
        values = table[timesteps].flatten().to(like.dtype)
        return values.reshape(values.shape + (1,) * (like.ndim - 1))

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) (Ho et al. 2020, eq. 4): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.

        `timesteps` holds one t per sample (shape (batch,)) or a single t for all.
        """
        if original_samples.shape != noise.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != sample shape {tuple(original_samples.shape)}.")
        sqrt_alpha_bar = self._per_sample(self.sqrt_alphas_cumprod, timesteps, original_samples)
        sqrt_one_minus_alpha_bar = self._per_sample(self.sqrt_one_minus_alphas_cumprod, timesteps, original_samples)
        return sqrt_alpha_bar * original_samples + sqrt_one_minus_alpha_bar * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v-prediction target (Salimans & Ho 2022): v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
        if sample.shape != noise.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != sample shape {tuple(sample.shape)}.")
        sqrt_alpha_bar = self._per_sample(self.sqrt_alphas_cumprod, timesteps, sample)
        sqrt_one_minus_alpha_bar = self._per_sample(self.sqrt_one_minus_alphas_cumprod, timesteps, sample)
        return sqrt_alpha_bar * noise - sqrt_one_minus_alpha_bar * sample

    # ----------------------------------------------------------------------------------------------
    # Reverse process.

    def _threshold_sample(self, x0: torch.Tensor) -> torch.Tensor:
        """Dynamic thresholding (Saharia et al. 2022, Imagen, sec. 2.3).

        Per image, s = the `dynamic_thresholding_ratio` quantile of |x0|, clamped to [1, sample_max_value];
        then x0 <- clamp(x0, -s, s) / s. With s = 1 this is plain clipping to [-1, 1].
        """
        if x0.ndim < 2:
            raise ValueError(f"thresholding needs a batch of samples (batch, ...), got shape {tuple(x0.shape)}.")
        dtype = x0.dtype
        flat = x0.reshape(x0.shape[0], -1)
        if dtype not in (torch.float32, torch.float64):
            flat = flat.float()  # quantile needs float32/64
        s = torch.quantile(flat.abs(), self.config.dynamic_thresholding_ratio, dim=1)
        s = s.clamp(min=1, max=self.config.sample_max_value).unsqueeze(1)
        flat = torch.clamp(flat, -s, s) / s
        return flat.reshape(x0.shape).to(dtype)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> AnnotatedDDPMSchedulerOutput | tuple:
        r"""One reverse step $x_t \to x_{t'}$ (Ho et al. 2020, Algorithm 2 with the posterior of eq. 7).

        1. $\hat x_0$ from the model output (eq. 15 for $\epsilon$; $v$ and $x_0$ predictions likewise),
        2. clip it to [-clip_sample_range, clip_sample_range], or threshold it dynamically,
        3. the mean $\tilde\mu_t = c_0 \hat x_0 + c_t x_t$ (eq. 7; `posterior_mean_coef_x0`, `posterior_mean_coef_xt`),
        4. $x_{t'} = \tilde\mu_t + \sigma_t z$, $z \sim \mathcal{N}(0, I)$, for every $t > 0$ (no noise at $t = 0$).
        The noise is drawn exactly as diffusers' DDPMScheduler draws it, so one generator gives both the
        same numbers.
        """
        if model_output.shape != sample.shape:
            raise ValueError(
                f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(sample.shape)}; "
                f"learned variances are not supported (variance_type must be one of {', '.join(VARIANCE_TYPES)})."
            )
        t = int(timestep)
        self.previous_timestep(t)  # raises if t is not in the current chain
        self._move_tables(sample.device)
        sqrt_alpha_bar_t = self.sqrt_alphas_cumprod[t]
        sqrt_one_minus_alpha_bar_t = self.sqrt_one_minus_alphas_cumprod[t]

        # 1. $\hat x_0$
        prediction_type = self.config.prediction_type
        if prediction_type == "epsilon":  # eq. 15: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
            x0 = (sample - sqrt_one_minus_alpha_bar_t * model_output) / sqrt_alpha_bar_t
        elif prediction_type == "sample":
            x0 = model_output
        else:  # "v_prediction": x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v
            x0 = sqrt_alpha_bar_t * sample - sqrt_one_minus_alpha_bar_t * model_output

        # 2. keep $\hat x_0$ in the data range
        if self.config.thresholding:
            x0 = self._threshold_sample(x0)
        elif self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)

        # 3. the posterior mean $\tilde\mu_t$, eq. 7
        prev_sample = self.posterior_mean_coef_x0[t] * x0 + self.posterior_mean_coef_xt[t] * sample

        # 4. add $\sigma_t z$
        if t > 0:
            z = randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype)
            prev_sample = prev_sample + self.posterior_sigma[t] * z

        if not return_dict:
            return (prev_sample, x0)
        return AnnotatedDDPMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)

